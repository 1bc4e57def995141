//! File copy over the exec channel (`evoctl cp`): the arguments (`ENV:PATH` on one side), the
//! node program that reads or writes the files in the container, and the records it answers
//! with.
//!
//! The program (`program.js`) needs nothing but `node` in the image. It travels over the data
//! channel like every program, with the copy (`C`: paths, and for an upload each file's size,
//! mode and SHA-256) defined before it; the file bytes of an upload follow as its input (the
//! run's stdin stream, [`crate::exec::envelope::Stdin::Files`]). What the program says comes
//! back on its stdout as records, `<kind: 1 byte><length: u32 BE><payload>`, parsed here by the
//! sans-IO [`Records`]; the runner carries that stdout as base64 marker lines, so the records
//! survive the pty. Nothing here does I/O: `commands::cp` drives it.

use serde::Deserialize;
use std::path::{Path, PathBuf};

const PROGRAM: &str = include_str!("program.js");

/// The largest record evoctl accepts (file data comes in records of at most 64 KiB).
pub const MAX_RECORD: usize = 1024 * 1024;

/// One side of a copy as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A path on this machine.
    Local(PathBuf),
    /// `ENV:PATH`: a path in the environment's container (relative: from its working directory;
    /// empty: the working directory itself).
    Remote { env: String, path: String },
}

impl Endpoint {
    /// `ENV:PATH` when the text before the first `:` is a plain name (letters, digits, `-`, `_`,
    /// `.`; no `/`), as scp reads it; anything else is a local path (write `./a:b` for a local
    /// file whose name has a colon).
    pub fn parse(arg: &str) -> Endpoint {
        match arg.split_once(':') {
            Some((env, path))
                if !env.is_empty()
                    && env.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    && !env.starts_with('.') =>
            {
                Endpoint::Remote { env: env.to_owned(), path: path.to_owned() }
            }
            _ => Endpoint::Local(PathBuf::from(arg)),
        }
    }
}

/// The last component of a path as written (`a/b/` is `b`), or `None` for `/`, `.`, `..` or
/// nothing.
pub fn base_name(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    let name = trimmed.rsplit('/').next().unwrap_or(trimmed);
    (!name.is_empty() && name != "." && name != "..").then_some(name)
}

/// One file of an upload, as the program checks it.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct PutFile {
    /// Relative to the destination root (`""`: the destination itself).
    pub path: String,
    pub mode: u32,
    pub size: u64,
    pub sha256: String,
    /// Where it is read from here (not sent).
    #[serde(skip)]
    pub local: PathBuf,
}

/// One directory of an upload tree, relative to the destination root (`""`: the root).
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct PutDir {
    pub path: String,
    pub mode: u32,
}

/// The program that sends `src` (a file, or a tree with `recursive`) here; `again` is the same
/// copy with `-r` (the fix when `src` is a directory).
pub fn get_program(env: &str, src: &str, recursive: bool, again: &str) -> String {
    let copy =
        serde_json::json!({ "op": "get", "env": env, "src": remote_path(src), "recursive": recursive, "again": again });
    format!("const C = {copy};\n{PROGRAM}")
}

/// The program that writes `files` (and creates `dirs`) at `dst`, `name` being the source's own
/// name (used when `dst` is a directory).
pub fn put_program(env: &str, dst: &str, name: &str, recursive: bool, dirs: &[PutDir], files: &[PutFile]) -> String {
    let copy = serde_json::json!({
        "op": "put", "env": env, "dst": remote_path(dst), "name": name, "recursive": recursive,
        "dirs": dirs, "files": files,
    });
    format!("const C = {copy};\n{PROGRAM}")
}

/// An empty remote path is the container's working directory.
fn remote_path(path: &str) -> &str {
    if path.is_empty() { "." } else { path }
}

/// What the program said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// What a download brings, before its first byte.
    Summary { files: u64, bytes: u64 },
    /// A directory of a downloaded tree.
    Dir { path: String, mode: u32 },
    /// A downloaded file begins.
    Header { path: String, mode: u32, size: u64 },
    /// The next bytes of the current file.
    Data(Vec<u8>),
    /// A file is whole (an upload's: verified and in place in the container).
    Trailer { path: String, bytes: u64, sha256: String },
    /// Bytes an upload has written so far.
    Progress { bytes: u64 },
    /// A note (an entry skipped).
    Note { message: String },
    /// The copy failed in the container; it left nothing behind.
    Failed { message: String, fix: Option<String>, kind: String },
}

/// Why the program's output is not records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a record of {0} bytes (at most {MAX_RECORD})")]
    TooLong(usize),
    #[error("an unknown record kind {0:#04x}")]
    UnknownKind(u8),
    #[error("a `{kind}` record that is not what it should be: {message}")]
    Malformed { kind: char, message: String },
}

/// Streaming parser of the program's stdout.
#[derive(Debug, Default)]
pub struct Records {
    buffer: Vec<u8>,
}

#[derive(Deserialize)]
struct SummaryBody {
    files: u64,
    bytes: u64,
}
#[derive(Deserialize)]
struct DirBody {
    path: String,
    mode: u32,
}
#[derive(Deserialize)]
struct HeaderBody {
    path: String,
    mode: u32,
    size: u64,
}
#[derive(Deserialize)]
struct TrailerBody {
    path: String,
    bytes: u64,
    sha256: String,
}
#[derive(Deserialize)]
struct ProgressBody {
    bytes: u64,
}
#[derive(Deserialize)]
struct NoteBody {
    message: String,
}
#[derive(Deserialize)]
struct FailedBody {
    message: String,
    fix: Option<String>,
    kind: String,
}

impl Records {
    pub fn new() -> Records {
        Records::default()
    }

    /// Whether bytes of an unfinished record are held (the output stopped mid-record).
    pub fn is_mid_record(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Feed stdout bytes; the records they complete, in order. Holds at most one record.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Record>, RecordError> {
        self.buffer.extend_from_slice(bytes);
        let mut records = Vec::new();
        let mut at = 0;
        while let Some(head) = self.buffer.get(at..at + 5) {
            let kind = head[0];
            let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if length > MAX_RECORD {
                return Err(RecordError::TooLong(length));
            }
            let Some(body) = self.buffer.get(at + 5..at + 5 + length) else { break };
            records.push(decode(kind, body)?);
            at += 5 + length;
        }
        self.buffer.drain(..at);
        Ok(records)
    }
}

fn decode(kind: u8, body: &[u8]) -> Result<Record, RecordError> {
    fn json<T: serde::de::DeserializeOwned>(kind: u8, body: &[u8]) -> Result<T, RecordError> {
        serde_json::from_slice(body)
            .map_err(|err| RecordError::Malformed { kind: kind as char, message: err.to_string() })
    }
    Ok(match kind {
        b'S' => {
            let SummaryBody { files, bytes } = json(kind, body)?;
            Record::Summary { files, bytes }
        }
        b'K' => {
            let DirBody { path, mode } = json(kind, body)?;
            Record::Dir { path: checked_relative(kind, path)?, mode }
        }
        b'H' => {
            let HeaderBody { path, mode, size } = json(kind, body)?;
            Record::Header { path: checked_relative(kind, path)?, mode, size }
        }
        b'D' => Record::Data(body.to_vec()),
        b'T' => {
            let TrailerBody { path, bytes, sha256 } = json(kind, body)?;
            Record::Trailer { path, bytes, sha256 }
        }
        b'P' => {
            let ProgressBody { bytes } = json(kind, body)?;
            Record::Progress { bytes }
        }
        b'W' => {
            let NoteBody { message } = json(kind, body)?;
            Record::Note { message }
        }
        b'F' => {
            let FailedBody { message, fix, kind } = json(kind, body)?;
            Record::Failed { message, fix, kind }
        }
        other => return Err(RecordError::UnknownKind(other)),
    })
}

/// A path the container names for a file of a tree: relative, and never out of it (no `..`, no
/// root), so what arrives stays under the destination.
fn checked_relative(kind: u8, path: String) -> Result<String, RecordError> {
    let escapes = Path::new(&path)
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
    if escapes {
        return Err(RecordError::Malformed {
            kind: kind as char,
            message: format!("the path {path:?} leaves the tree"),
        });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend((body.len() as u32).to_be_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn endpoints_are_env_colon_path_only_for_plain_names() {
        let remote = |env: &str, path: &str| Endpoint::Remote { env: env.into(), path: path.into() };
        assert_eq!(Endpoint::parse("production:/tmp/a.bin"), remote("production", "/tmp/a.bin"));
        assert_eq!(Endpoint::parse("staging:data/x"), remote("staging", "data/x"));
        assert_eq!(Endpoint::parse("production:"), remote("production", ""));
        assert_eq!(Endpoint::parse("./a:b"), Endpoint::Local("./a:b".into()));
        assert_eq!(Endpoint::parse("/tmp/a:b"), Endpoint::Local("/tmp/a:b".into()));
        assert_eq!(Endpoint::parse(":x"), Endpoint::Local(":x".into()));
        assert_eq!(Endpoint::parse("a.bin"), Endpoint::Local("a.bin".into()));
    }

    #[test]
    fn base_names_as_cp_takes_them() {
        assert_eq!(base_name("/tmp/a.bin"), Some("a.bin"));
        assert_eq!(base_name("dir/sub/"), Some("sub"));
        assert_eq!(base_name("x"), Some("x"));
        assert_eq!(base_name("/"), None);
        assert_eq!(base_name(""), None);
        assert_eq!(base_name("a/.."), None);
    }

    #[test]
    fn records_parse_under_any_split() {
        let mut stream = record(b'S', br#"{"files":1,"bytes":3}"#);
        stream.extend(record(b'H', br#"{"path":"","mode":420,"size":3}"#));
        stream.extend(record(b'D', b"abc"));
        stream.extend(record(b'T', br#"{"path":"","bytes":3,"sha256":"ff"}"#));
        stream.extend(record(b'F', br#"{"message":"m","fix":null,"kind":"usage"}"#));
        let expected = vec![
            Record::Summary { files: 1, bytes: 3 },
            Record::Header { path: String::new(), mode: 0o644, size: 3 },
            Record::Data(b"abc".to_vec()),
            Record::Trailer { path: String::new(), bytes: 3, sha256: "ff".into() },
            Record::Failed { message: "m".into(), fix: None, kind: "usage".into() },
        ];
        for split in [1, 2, 5, 7, 1000] {
            let mut records = Records::new();
            let got: Vec<Record> = stream.chunks(split).flat_map(|c| records.feed(c).unwrap()).collect();
            assert_eq!(got, expected, "split {split}");
            assert!(!records.is_mid_record());
        }
    }

    #[test]
    fn bad_records_are_errors() {
        let mut records = Records::new();
        assert_eq!(records.feed(&record(b'Z', b"")), Err(RecordError::UnknownKind(b'Z')));
        let mut records = Records::new();
        let mut huge = vec![b'D'];
        huge.extend(((MAX_RECORD + 1) as u32).to_be_bytes());
        assert_eq!(records.feed(&huge), Err(RecordError::TooLong(MAX_RECORD + 1)));
        for path in ["../x", "/etc/passwd", "a/../../b"] {
            let mut records = Records::new();
            let body = format!(r#"{{"path":"{path}","mode":420,"size":0}}"#);
            assert!(
                matches!(records.feed(&record(b'H', body.as_bytes())), Err(RecordError::Malformed { kind: 'H', .. })),
                "{path}"
            );
        }
        let mut records = Records::new();
        assert_eq!(records.feed(&record(b'D', b"ab")[..4]), Ok(vec![]));
        assert!(records.is_mid_record());
    }

    /// Both programs parse as JavaScript (node --check), so a slip fails here, not in a container.
    #[test]
    fn the_programs_are_valid_javascript() {
        let dir = tempfile::tempdir().unwrap();
        let file = PutFile { path: String::new(), mode: 0o644, size: 1, sha256: "00".into(), local: PathBuf::new() };
        for (name, source) in [
            ("get", get_program("production", "/tmp/a", false, "evoctl cp -r production:/tmp/a ./a")),
            ("put", put_program("production", "/tmp/a", "a", false, &[], &[file])),
        ] {
            let path = dir.path().join(format!("{name}.js"));
            std::fs::write(&path, source).unwrap();
            let output = std::process::Command::new("node").arg("--check").arg(&path).output().unwrap();
            assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
}
