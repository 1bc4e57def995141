//! `evoctl cp SRC DST`: copy a file (or a tree with `-r`) between this machine and the
//! environment's container over one exec session, using only `node` there ([`crate::copy`]).
//!
//! Both sides verify: an upload's files are hashed here first and the container renames each
//! into place only once what arrived has that SHA-256; a download is hashed in the container as
//! it is read and here as it is written, and renamed into place here only when both agree. Each
//! file is written under a temporary name beside its destination and renamed at the end, so a
//! copy cut short leaves no partial file: here the temporary file is removed when the copy
//! fails, there by the program (or, when ending the session killed it, by its janitor). A
//! destination that is a symbolic link is refused on both sides. Bad input is exit 2.

use super::Context;
use crate::cli::{CpArgs, ExecTargetArgs};
use crate::copy::{self, Endpoint, PutDir, PutFile, Record, Records};
use crate::error::{Error, ExecKind, Result};
use crate::exec::envelope::{RunSpec, Stdin};
use crate::exec::run::OutputSink;
use crate::exit;
use crate::output::Printer;
use futures::future::BoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Progress is said at most this often on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How much of the program's stderr is kept for an error message.
const MAX_STDERR: usize = 16 * 1024;

/// `evoctl.cp/v1`: what was copied.
#[derive(Debug, Serialize)]
struct CpDocument {
    schema: &'static str,
    direction: &'static str,
    environment: String,
    source: String,
    destination: String,
    /// Files copied.
    files: usize,
    bytes: u64,
    /// The file's SHA-256 for one file; null for a tree (each entry has its own).
    sha256: Option<String>,
    seconds: f64,
    entries: Vec<Copied>,
}

#[derive(Debug, Clone, Serialize)]
struct Copied {
    /// Relative to the destination root (empty for a single file).
    path: String,
    bytes: u64,
    sha256: String,
}

pub async fn run(context: &Context, args: &CpArgs) -> Result<u8> {
    let started = Instant::now();
    let config = context.config();
    let first_env = config.as_ref().ok().and_then(|c| c.environments.first()).map(|e| e.name.clone());
    let (env, direction) = direction(args, first_env.as_deref())?;
    config?.environment(&env)?;
    let target = ExecTargetArgs {
        env: env.clone(),
        container: args.container.clone(),
        backend: args.backend,
        watchdog_ms: args.watchdog_ms,
    };
    let (document_direction, entries) = match &direction {
        Direction::Up { local, remote } => ("upload", upload(context, &target, args, local, remote).await?),
        Direction::Down { remote, local } => ("download", download(context, &target, args, remote, local).await?),
    };
    let bytes = entries.iter().map(|e| e.bytes).sum();
    let single = match entries.as_slice() {
        [only] if only.path.is_empty() => Some(only.sha256.clone()),
        _ => None,
    };
    let document = CpDocument {
        schema: "evoctl.cp/v1",
        direction: document_direction,
        environment: env,
        source: args.source.clone(),
        destination: args.destination.clone(),
        files: entries.len(),
        bytes,
        sha256: single,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        entries,
    };
    context.printer.data(&document, || {
        let (from, to, seconds) = (&document.source, &document.destination, document.seconds);
        match &document.sha256 {
            Some(sha256) => format!("copied {} from {from} to {to} in {seconds:.1} s (sha256 {sha256})", size(bytes)),
            None => {
                format!("copied {} file(s), {}, from {from} to {to} in {seconds:.1} s", document.files, size(bytes))
            }
        }
    });
    Ok(exit::OK)
}

enum Direction {
    Up { local: PathBuf, remote: String },
    Down { remote: String, local: PathBuf },
}

/// Which side is the container's; exactly one must be. The fixes are the commands to run, with
/// the configured environment (`first_env`) where the arguments name none.
fn direction(args: &CpArgs, first_env: Option<&str>) -> Result<(String, Direction)> {
    let (source, destination) = (&args.source, &args.destination);
    match (Endpoint::parse(source), Endpoint::parse(destination)) {
        (Endpoint::Local(local), Endpoint::Remote { env, path }) => Ok((env, Direction::Up { local, remote: path })),
        (Endpoint::Remote { env, path }, Endpoint::Local(local)) => Ok((env, Direction::Down { remote: path, local })),
        (Endpoint::Remote { path, .. }, Endpoint::Remote { .. }) => {
            let name = copy::base_name(&path).unwrap_or("copy");
            Err(Error::usage(
                format!("both {source} and {destination} are in a container; one side must be a local path"),
                format!(
                    "copy through this machine in two steps: `evoctl cp {source} ./{name}`, then `evoctl cp ./{name} {destination}`"
                ),
            ))
        }
        (Endpoint::Local(_), Endpoint::Local(_)) => {
            let env = first_env.unwrap_or("ENV");
            Err(Error::usage(
                format!("neither {source} nor {destination} is ENV:PATH (a path in a container)"),
                format!(
                    "name the container's side, e.g. `evoctl cp {source} {env}:{destination}` to upload (a relative PATH starts at the container's working directory); a local name with a colon is written ./a:b"
                ),
            ))
        }
    }
}

/// The same copy with `-r`: the fix for a directory copied without it.
fn again_recursive(args: &CpArgs) -> String {
    format!("evoctl cp -r {} {}", args.source, args.destination)
}

/// Refuse a destination that is a symbolic link: a careful cp does not write through it into
/// another directory.
fn refuse_link(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let to = std::fs::read_link(path).map(|to| format!(" (it points to {})", to.display())).unwrap_or_default();
            Err(Error::usage(
                format!(
                    "{} is a symbolic link{to}; evoctl cp does not write through a link into another place",
                    path.display()
                ),
                "copy to the path it points to, or remove the link first",
            ))
        }
        _ => Ok(()),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// An exec failure of a copy, said as such: nothing partial was kept.
fn cut_short(err: Error) -> Error {
    match err {
        Error::Exec { kind, message, fix } => {
            Error::Exec { kind, message: format!("the copy did not finish: {message}; no partial file was kept"), fix }
        }
        other => other,
    }
}

/// The program's own refusal or failure as an error (its refusals are bad input: exit 2).
/// What ended a copy before its exit status counts, in either direction: an error on this side
/// first, then a failure the container's program reported (message, fix, kind).
fn ended_early(env: &str, error: Option<Error>, failed: Option<(String, Option<String>, String)>) -> Result<()> {
    if let Some(err) = error {
        return Err(err);
    }
    match failed {
        Some((message, fix, kind)) => Err(remote_failure(env, message, fix, &kind)),
        None => Ok(()),
    }
}

fn remote_failure(env: &str, message: String, fix: Option<String>, kind: &str) -> Error {
    let message = format!("{env}: {message}");
    match kind {
        "usage" => Error::Usage { message, fix },
        _ => Error::Exec {
            kind: ExecKind::Container,
            message,
            fix: Some(fix.unwrap_or_else(|| {
                format!("copy it again; if it repeats, check the container (`evoctl doctor {env}`)")
            })),
        },
    }
}

/// A program that ended without saying why: its status and what it wrote on stderr.
fn remote_crash(env: &str, status: i32, stderr: &[u8]) -> Error {
    let stderr = String::from_utf8_lossy(stderr);
    let detail = if stderr.trim().is_empty() { String::new() } else { format!(": {}", stderr.trim()) };
    Error::exec(
        ExecKind::Container,
        format!(
            "the copy program in {env}'s container ended with status {status} before the copy was complete{detail}"
        ),
        format!("check that the container's `node` works (`evoctl doctor {env}`)"),
    )
}

fn size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / MIB),
    }
}

/// Progress notes for a long copy, at most every [`PROGRESS_EVERY`].
struct Progress {
    start: Instant,
    last: Instant,
    total: u64,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress { start: now, last: now, total: 0 }
    }

    fn tick(&mut self, printer: &Printer, done: u64) {
        if self.last.elapsed() < PROGRESS_EVERY || self.total == 0 {
            return;
        }
        self.last = Instant::now();
        let rate = done as f64 / self.start.elapsed().as_secs_f64().max(0.001);
        printer.note(&format!(
            "copied {} of {} ({}%), {}/s",
            size(done),
            size(self.total),
            done * 100 / self.total,
            size(rate as u64)
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Upload.

async fn upload(
    context: &Context,
    target: &ExecTargetArgs,
    args: &CpArgs,
    local: &Path,
    remote: &str,
) -> Result<Vec<Copied>> {
    let plan = {
        let owned = local.to_owned();
        let recursive = args.recursive;
        let again = again_recursive(args);
        tokio::task::spawn_blocking(move || plan_upload(&owned, recursive, &again))
            .await
            .map_err(|err| Error::Io { path: local.to_owned(), source: std::io::Error::other(err.to_string()) })??
    };
    for skipped in &plan.skipped {
        context.printer.warn(&format!("skipped {skipped}: not a regular file or directory"));
    }
    let program = copy::put_program(&target.env, remote, &plan.name, plan.tree, &plan.dirs, &plan.files);
    let stream = plan.files.iter().map(|f| (f.local.clone(), f.size)).collect();
    let spec = RunSpec::node(program, Some(Stdin::Files(stream)));
    let mut sink = PutSink {
        printer: &context.printer,
        env: &target.env,
        records: Records::new(),
        progress: Progress { total: plan.files.iter().map(|f| f.size).sum(), ..Progress::new() },
        done: Vec::new(),
        failed: None,
        error: None,
        stderr: Vec::new(),
    };
    let status = super::exec::run(context, target, args.timeout, spec, &mut sink).await;
    ended_early(&target.env, sink.error.take(), sink.failed.take())?;
    let status = status.map_err(cut_short)?;
    if status != 0 || sink.done.len() != plan.files.len() {
        return Err(remote_crash(&target.env, status, &sink.stderr));
    }
    for (sent, arrived) in plan.files.iter().zip(&sink.done) {
        if sent.path != arrived.path || sent.sha256 != arrived.sha256 || sent.size != arrived.bytes {
            return Err(Error::exec(
                ExecKind::Container,
                format!(
                    "{}: the container reports {} bytes with SHA-256 {} for {:?}, not the {} bytes with {} sent",
                    target.env, arrived.bytes, arrived.sha256, arrived.path, sent.size, sent.sha256
                ),
                "copy it again",
            ));
        }
    }
    Ok(sink.done)
}

struct UploadPlan {
    /// The source's own name (the name it gets inside a destination directory).
    name: String,
    tree: bool,
    dirs: Vec<PutDir>,
    files: Vec<PutFile>,
    skipped: Vec<String>,
}

/// What an upload sends: the file, or with `recursive` the tree (directories first, files in
/// name order), each file hashed now. Links inside a tree and special files are skipped.
fn plan_upload(local: &Path, recursive: bool, again: &str) -> Result<UploadPlan> {
    let meta = std::fs::metadata(local).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::usage(format!("{} does not exist", local.display()), "check the path"),
        _ => Error::Io { path: local.to_owned(), source },
    })?;
    let name = match copy::base_name(&local.to_string_lossy()) {
        Some(name) => name.to_owned(),
        None => std::fs::canonicalize(local)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .ok_or_else(|| {
                Error::usage(format!("{} has no name to copy it under", local.display()), "name the source by its path")
            })?,
    };
    let mut plan = UploadPlan { name, tree: false, dirs: Vec::new(), files: Vec::new(), skipped: Vec::new() };
    if meta.is_dir() {
        if !recursive {
            return Err(Error::usage(
                format!("{} is a directory", local.display()),
                format!("to copy it and everything in it: `{again}`"),
            ));
        }
        plan.tree = true;
        plan.dirs.push(PutDir { path: String::new(), mode: meta.permissions().mode() & 0o777 });
        walk(local, "", &mut plan)?;
    } else if meta.is_file() {
        plan.files.push(hashed(local, String::new())?);
    } else {
        return Err(Error::usage(
            format!("{} is not a regular file or a directory", local.display()),
            "copy a file, or a directory with -r",
        ));
    }
    Ok(plan)
}

fn walk(root: &Path, rel: &str, plan: &mut UploadPlan) -> Result<()> {
    let dir = if rel.is_empty() { root.to_owned() } else { root.join(rel) };
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(io(&dir))?;
    names.sort();
    for name in names {
        let name = name.to_str().ok_or_else(|| {
            Error::usage(
                format!("{} has a name that is not UTF-8", dir.join(&name).display()),
                "rename it, or copy the files one by one",
            )
        })?;
        let child_rel = if rel.is_empty() { name.to_owned() } else { format!("{rel}/{name}") };
        let path = root.join(&child_rel);
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            plan.dirs.push(PutDir { path: child_rel.clone(), mode: meta.permissions().mode() & 0o777 });
            walk(root, &child_rel, plan)?;
        } else if meta.is_file() {
            plan.files.push(hashed(&path, child_rel)?);
        } else {
            plan.skipped.push(path.display().to_string());
        }
    }
    Ok(())
}

/// One file's size, mode and SHA-256, read now.
fn hashed(path: &Path, rel: String) -> Result<PutFile> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(io(path))?;
    Ok(PutFile {
        path: rel,
        mode: meta.permissions().mode() & 0o777,
        size,
        sha256: hex::encode(hasher.finalize()),
        local: path.to_owned(),
    })
}

/// Takes an upload's records: progress, each file in place, a refusal.
struct PutSink<'a> {
    printer: &'a Printer,
    env: &'a str,
    records: Records,
    progress: Progress,
    done: Vec<Copied>,
    failed: Option<(String, Option<String>, String)>,
    error: Option<Error>,
    stderr: Vec<u8>,
}

impl OutputSink for PutSink<'_> {
    fn stdout(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        match self.records.feed(bytes) {
            Ok(records) => {
                for record in records {
                    match record {
                        Record::Progress { bytes } => self.progress.tick(self.printer, bytes),
                        Record::Trailer { path, bytes, sha256 } => self.done.push(Copied { path, bytes, sha256 }),
                        Record::Note { message } => self.printer.warn(&format!("{}: {message}", self.env)),
                        Record::Failed { message, fix, kind } => self.failed = Some((message, fix, kind)),
                        other => self.error = Some(protocol(self.env, &format!("an unexpected record {other:?}"))),
                    }
                }
            }
            Err(err) => self.error = Some(protocol(self.env, &err.to_string())),
        }
    }
    fn stderr(&mut self, bytes: &[u8]) {
        keep_stderr(&mut self.stderr, bytes);
    }
    /// A failure on either side ends the run at once (and with it the session, so the input
    /// still being typed stops).
    fn room(&self) -> BoxFuture<'_, Result<()>> {
        let failed = self.error.is_some() || self.failed.is_some();
        Box::pin(async move { if failed { Err(stopped()) } else { Ok(()) } })
    }
}

fn keep_stderr(kept: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_STDERR.saturating_sub(kept.len());
    kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn protocol(env: &str, what: &str) -> Error {
    Error::exec(
        ExecKind::Protocol,
        format!("the copy program in {env}'s container answered out of protocol: {what}"),
        "copy it again; if it repeats, run with -vv and report it",
    )
}

/// Ends a run whose sink has failed; the sink's own error is the one reported.
fn stopped() -> Error {
    Error::exec(ExecKind::Container, "the copy stopped", "see the error above")
}

// ---------------------------------------------------------------------------------------------
// Download.

async fn download(
    context: &Context,
    target: &ExecTargetArgs,
    args: &CpArgs,
    remote: &str,
    local: &Path,
) -> Result<Vec<Copied>> {
    let top = plan_download(local, remote)?;
    let program = copy::get_program(&target.env, remote, args.recursive, &again_recursive(args));
    let spec = RunSpec::node(program, None);
    let mut sink = GetSink {
        printer: &context.printer,
        env: &target.env,
        top,
        records: Records::new(),
        progress: Progress::new(),
        summary: None,
        current: None,
        received: 0,
        dirs: Vec::new(),
        done: Vec::new(),
        failed: None,
        error: None,
        stderr: Vec::new(),
    };
    let status = super::exec::run(context, target, args.timeout, spec, &mut sink).await;
    ended_early(&target.env, sink.error.take(), sink.failed.take())?;
    let status = status.map_err(cut_short)?;
    let complete = sink.summary.is_some_and(|(files, _)| files == sink.done.len() as u64)
        && sink.current.is_none()
        && !sink.records.is_mid_record();
    if status != 0 || !complete {
        return Err(remote_crash(&target.env, status, &sink.stderr));
    }
    // Directory modes last: a read-only directory would have refused its own files.
    for (dir, mode) in sink.dirs.iter().rev() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(*mode)).map_err(io(dir))?;
    }
    Ok(sink.done)
}

/// Where a download's top entry goes: `local` itself, or `local/NAME` when `local` is a
/// directory; checked before the session starts (and again before each rename).
fn plan_download(local: &Path, remote: &str) -> Result<PathBuf> {
    refuse_link(local)?;
    let written = local.to_string_lossy();
    match std::fs::metadata(local) {
        Ok(meta) if meta.is_dir() => {
            let name = copy::base_name(remote).ok_or_else(|| {
                Error::usage(
                    format!("the container path {remote:?} has no name to copy it under in {}", local.display()),
                    "name the destination itself (e.g. ./copy) instead of a directory",
                )
            })?;
            let top = local.join(name);
            refuse_link(&top)?;
            Ok(top)
        }
        Ok(_) => Ok(local.to_owned()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if written.ends_with('/') {
                return Err(Error::usage(
                    format!("there is no directory {}", local.display()),
                    "create it first, or leave out the trailing /",
                ));
            }
            let parent = match local.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            };
            if !parent.is_dir() {
                return Err(Error::usage(
                    format!("there is no directory {} to copy into", parent.display()),
                    format!("create it first (mkdir -p {})", parent.display()),
                ));
            }
            Ok(local.to_owned())
        }
        Err(source) => Err(Error::Io { path: local.to_owned(), source }),
    }
}

/// A downloaded file being written under its temporary name.
struct Incoming {
    temp: tempfile::NamedTempFile,
    hasher: Sha256,
    target: PathBuf,
    path: String,
    mode: u32,
    written: u64,
}

/// Writes a download as its records arrive.
struct GetSink<'a> {
    printer: &'a Printer,
    env: &'a str,
    /// Where the top entry goes.
    top: PathBuf,
    records: Records,
    progress: Progress,
    summary: Option<(u64, u64)>,
    current: Option<Incoming>,
    received: u64,
    /// Directories created, with the mode they get at the end.
    dirs: Vec<(PathBuf, u32)>,
    done: Vec<Copied>,
    failed: Option<(String, Option<String>, String)>,
    error: Option<Error>,
    stderr: Vec<u8>,
}

impl GetSink<'_> {
    fn place(&self, path: &str) -> PathBuf {
        if path.is_empty() { self.top.clone() } else { self.top.join(path) }
    }

    fn apply(&mut self, record: Record) -> Result<()> {
        match record {
            Record::Summary { files, bytes } => {
                self.summary = Some((files, bytes));
                self.progress.total = bytes;
            }
            Record::Note { message } => self.printer.warn(&format!("{}: {message}", self.env)),
            Record::Failed { message, fix, kind } => self.failed = Some((message, fix, kind)),
            Record::Dir { path, mode } => {
                let dir = self.place(&path);
                refuse_link(&dir)?;
                match std::fs::metadata(&dir) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        return Err(Error::usage(
                            format!("{} exists and is not a directory", dir.display()),
                            "move it away, or copy to another place",
                        ));
                    }
                    Err(_) => {
                        std::fs::create_dir(&dir).map_err(io(&dir))?;
                        self.dirs.push((dir, mode & 0o777));
                    }
                }
            }
            Record::Header { path, mode, size: _ } => {
                if self.current.is_some() {
                    return Err(protocol(self.env, "a file began before the last one ended"));
                }
                let target = self.place(&path);
                refuse_link(&target)?;
                if target.is_dir() {
                    return Err(Error::usage(
                        format!("{} is a directory", target.display()),
                        "give a file name as the destination, or the directory to copy into",
                    ));
                }
                let parent = match target.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                    _ => PathBuf::from("."),
                };
                let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let temp = tempfile::Builder::new()
                    .prefix(&format!(".{name}."))
                    .suffix(".evoctl.tmp")
                    .tempfile_in(&parent)
                    .map_err(io(&parent))?;
                self.current = Some(Incoming { temp, hasher: Sha256::new(), target, path, mode, written: 0 });
            }
            Record::Data(bytes) => {
                let Some(file) = self.current.as_mut() else {
                    return Err(protocol(self.env, "file data outside a file"));
                };
                file.temp.write_all(&bytes).map_err(io(file.temp.path()))?;
                file.hasher.update(&bytes);
                file.written += bytes.len() as u64;
                self.received += bytes.len() as u64;
                self.progress.tick(self.printer, self.received);
            }
            Record::Trailer { path, bytes, sha256 } => {
                let Some(file) = self.current.take() else {
                    return Err(protocol(self.env, "a file ended that had not begun"));
                };
                if path != file.path {
                    return Err(protocol(self.env, "a file ended that was not the current one"));
                }
                let here = hex::encode(file.hasher.finalize());
                if here != sha256 || bytes != file.written {
                    return Err(Error::exec(
                        ExecKind::Container,
                        format!(
                            "{}: {} arrived as {} bytes with SHA-256 {here}, but the container read {bytes} bytes with {sha256}; nothing was written",
                            self.env,
                            file.target.display(),
                            file.written
                        ),
                        "copy it again",
                    ));
                }
                let temp_path = file.temp.path().to_owned();
                file.temp.as_file().sync_all().map_err(io(&temp_path))?;
                std::fs::set_permissions(&temp_path, std::fs::Permissions::from_mode(file.mode & 0o777))
                    .map_err(io(&temp_path))?;
                refuse_link(&file.target)?;
                file.temp
                    .persist(&file.target)
                    .map_err(|err| Error::Io { path: file.target.clone(), source: err.error })?;
                self.done.push(Copied { path, bytes, sha256 });
            }
            Record::Progress { .. } => return Err(protocol(self.env, "an upload's progress in a download")),
        }
        Ok(())
    }
}

impl OutputSink for GetSink<'_> {
    fn stdout(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let records = match self.records.feed(bytes) {
            Ok(records) => records,
            Err(err) => {
                self.error = Some(protocol(self.env, &err.to_string()));
                return;
            }
        };
        for record in records {
            if let Err(err) = self.apply(record) {
                // The file being written is removed with its temporary name.
                self.current = None;
                self.error = Some(err);
                return;
            }
        }
    }
    fn stderr(&mut self, bytes: &[u8]) {
        keep_stderr(&mut self.stderr, bytes);
    }
    /// A failure on either side ends the run at once (and with it the session, so the input
    /// still being typed stops).
    fn room(&self) -> BoxFuture<'_, Result<()>> {
        let failed = self.error.is_some() || self.failed.is_some();
        Box::pin(async move { if failed { Err(stopped()) } else { Ok(()) } })
    }
}
