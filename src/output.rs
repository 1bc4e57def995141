//! The one printer: data on stdout, everything else on stderr.
//!
//! Commands hand their results to [`Printer`] either as a table (for people) or as a typed,
//! serialisable value (for `--output json`). Notes, warnings and errors always go to stderr so
//! that stdout can be piped into `jq` or a script. `-q` silences notes; errors are never
//! silenced. This module is the only place in the crate allowed to write to stdout/stderr.
//!
//! It is also the only sanitiser ([`sanitize`]): every text, table, note, warning, error, JSON
//! document and log line it writes is cleaned of control sequences and redacted of every secret
//! the process holds or saw, so a command cannot forget to. The one exception is the raw output of
//! a remote command (`exec`, `node`, `shell`: [`Printer::stdout_bytes`]), passed through byte for
//! byte by contract. Colours and the QR's black-on-white are painted here, on evoctl's own
//! [`Style`]s and [`Drawing`]s, never taken from the text.
//!
//! A code someone must act on (a QR, a pairing code) is a prompt, not data: it goes to the
//! terminal ([`prompt`]: stderr, or the controlling terminal), never to stdout, so that
//! `--output json` and redirected output still show it.
//!
//! Stdout is written by a thread of its own, fed through a queue of at most
//! [`STDOUT_QUEUE_BYTES`]: a paused pager (`| less`) or a slow disk holds back only whoever waits
//! on [`Printer::stdout_room`] (an exec session then stops reading its socket), never the
//! runtime. A closed pipe (`| head`) ends quietly, as ripgrep does; any other write error (a
//! full disk) is kept and turned into an error and a non-zero exit by [`Printer::finish`].
//! A reader that goes away while nothing is being written is noticed too: a thread waits in
//! poll(2) for stdout's error/hang-up event, so a command that follows something
//! ([`Printer::stdout_closed`]) ends when its reader has gone, not at its next write.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod prompt;
pub mod sanitize;

pub use prompt::TerminalSize;

use crate::error::Error;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes that may wait for stdout before producers that care are held back.
pub const STDOUT_QUEUE_BYTES: usize = 1024 * 1024;

/// How results are rendered on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document, stable and versioned by a `schema` field.
    Json,
}

/// Writes data to stdout and diagnostics to stderr.
#[derive(Debug, Clone)]
pub struct Printer {
    format: OutputFormat,
    quiet: bool,
    stdout: Arc<StdoutWriter>,
}

/// The stdout thread's queue and what happened to its writes.
#[derive(Debug)]
struct StdoutWriter {
    sender: Mutex<Option<std::sync::mpsc::Sender<Vec<u8>>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    queued: AtomicUsize,
    room: tokio::sync::Notify,
    error: Mutex<Option<std::io::Error>>,
    /// The error was already handed to someone who reports it.
    reported: std::sync::atomic::AtomicBool,
}

impl StdoutWriter {
    fn start() -> Arc<StdoutWriter> {
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<u8>>();
        let writer = Arc::new(StdoutWriter {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(None),
            queued: AtomicUsize::new(0),
            room: tokio::sync::Notify::new(),
            error: Mutex::new(None),
            reported: std::sync::atomic::AtomicBool::new(false),
        });
        let shared = Arc::clone(&writer);
        let thread = std::thread::Builder::new().name("evoctl-stdout".into()).spawn(move || {
            let mut out = std::io::stdout();
            while let Ok(chunk) = receiver.recv() {
                let failed = shared.error.lock().expect("stdout state").is_some();
                if !failed && let Err(err) = out.write_all(&chunk).and_then(|()| out.flush()) {
                    shared.error.lock().expect("stdout state").get_or_insert(err);
                }
                let left = shared.queued.fetch_sub(chunk.len(), Ordering::AcqRel) - chunk.len();
                if left < STDOUT_QUEUE_BYTES || shared.error.lock().expect("stdout state").is_some() {
                    shared.room.notify_waiters();
                }
            }
        });
        match thread {
            Ok(handle) => *writer.thread.lock().expect("stdout state") = Some(handle),
            Err(err) => *writer.error.lock().expect("stdout state") = Some(err),
        }
        let shared = Arc::clone(&writer);
        // Without the watcher a closed reader is still noticed at the next write.
        let _ = std::thread::Builder::new().name("evoctl-stdout-reader".into()).spawn(move || {
            if reader_gone() {
                shared
                    .error
                    .lock()
                    .expect("stdout state")
                    .get_or_insert_with(|| std::io::Error::from(std::io::ErrorKind::BrokenPipe));
                shared.room.notify_waiters();
            }
        });
        writer
    }

    /// Resolves once stdout can take nothing more: `Ok` when its reader has gone, the error of
    /// any other failed write.
    async fn closed(&self) -> Result<(), std::io::Error> {
        loop {
            let notified = self.room.notified();
            if let Some(error) = self.take_error() {
                return match error.kind() {
                    std::io::ErrorKind::BrokenPipe => Ok(()),
                    _ => Err(error),
                };
            }
            notified.await;
        }
    }

    fn push(&self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len();
        let sender = self.sender.lock().expect("stdout state");
        if let Some(sender) = sender.as_ref() {
            self.queued.fetch_add(len, Ordering::AcqRel);
            if sender.send(bytes).is_err() {
                self.queued.fetch_sub(len, Ordering::AcqRel);
            }
        }
    }

    /// The write error, once (a copy: the writer keeps the original to stop writing).
    fn take_error(&self) -> Option<std::io::Error> {
        let error = self.error.lock().expect("stdout state");
        let error = error.as_ref()?;
        self.reported.store(true, Ordering::Release);
        Some(std::io::Error::new(error.kind(), error.to_string()))
    }

    /// Resolves once less than `limit` bytes wait to be written, or with the error of a failed
    /// write: [`STDOUT_QUEUE_BYTES`] for room to queue more, 1 for everything written.
    async fn queued_below(&self, limit: usize) -> Result<(), std::io::Error> {
        loop {
            let notified = self.room.notified();
            if let Some(error) = self.take_error() {
                return Err(error);
            }
            if self.queued.load(Ordering::Acquire) < limit {
                return Ok(());
            }
            notified.await;
        }
    }

    /// Wait until everything queued is written; the first write error, if any.
    fn finish(&self) -> Option<std::io::Error> {
        self.sender.lock().expect("stdout state").take();
        if let Some(thread) = self.thread.lock().expect("stdout state").take() {
            let _ = thread.join();
        }
        let error = self.error.lock().expect("stdout state").take();
        error.filter(|_| !self.reported.load(Ordering::Acquire))
    }
}

/// Block until stdout's reader has gone: poll(2) reports POLLERR on a pipe whose read end is
/// closed and POLLHUP on a socket or terminal that hung up; a file or a live reader never wakes
/// it. `false` when it cannot tell (stdout is not open).
fn reader_gone() -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;
    let stdout = std::io::stdout();
    let fd = stdout.as_fd();
    loop {
        // No events asked for: only the error, hang-up and invalid-descriptor ones come back.
        let mut fds = [PollFd::new(&fd, PollFlags::empty())];
        match poll(&mut fds, None) {
            Ok(_) => return fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP),
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

impl Printer {
    /// A printer for the given format; `quiet` hides notes (not errors or data).
    pub fn new(format: OutputFormat, quiet: bool) -> Self {
        Printer { format, quiet, stdout: StdoutWriter::start() }
    }

    /// Resolves when stdout can take more (its queue is below [`STDOUT_QUEUE_BYTES`]); an error
    /// once a write to stdout failed (a closed pipe: [`std::io::ErrorKind::BrokenPipe`]).
    pub async fn stdout_room(&self) -> Result<(), Error> {
        self.stdout.queued_below(STDOUT_QUEUE_BYTES).await.map_err(|source| Error::Io { path: "stdout".into(), source })
    }

    /// Resolves once everything printed so far has reached stdout; a failed write (a closed
    /// pipe included: see [`Error::is_broken_pipe`]) is the error.
    pub async fn stdout_written(&self) -> Result<(), Error> {
        self.stdout.queued_below(1).await.map_err(|source| Error::Io { path: "stdout".into(), source })
    }

    /// Resolves once stdout can take nothing more: `Ok` when its reader has gone (a closed
    /// pipe: the command may end quietly), an error when a write to it failed otherwise.
    pub async fn stdout_closed(&self) -> Result<(), Error> {
        self.stdout.closed().await.map_err(|source| Error::Io { path: "stdout".into(), source })
    }

    /// Everything printed has reached stdout; a failed write (other than a closed pipe, which
    /// ends quietly) becomes the error to report. Call once, at the end.
    pub fn finish(&self) -> Result<(), Error> {
        match self.stdout.finish() {
            Some(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(Error::Io { path: "stdout".into(), source: err })
            }
            _ => Ok(()),
        }
    }

    /// The chosen output format.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Whether stderr is an interactive terminal (progress bars and redraws only then).
    pub fn stderr_is_tty(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }

    /// Whether stdout is an interactive terminal.
    pub fn stdout_is_tty(&self) -> bool {
        std::io::stdout().is_terminal()
    }

    /// Whether stdout may be coloured: a terminal, and `NO_COLOR` unset.
    pub fn colour(&self) -> bool {
        self.stdout_is_tty() && std::env::var_os(crate::env_vars::EnvVars::NO_COLOR).is_none()
    }

    /// Print `drawing` (a QR), then `caption`, on stdout.
    pub fn drawing(&self, drawing: &Drawing, caption: &str) {
        let text = self.drawn(Some(drawing), caption);
        self.stdout.push(text.into_bytes());
    }

    /// A drawing painted black on white on a terminal (under `NO_COLOR` too: a QR's colours are
    /// its function, not decoration), then the caption, all cleaned.
    fn drawn(&self, drawing: Option<&Drawing>, caption: &str) -> String {
        let (drawing, caption) = painted(drawing, caption, self.stdout_is_tty());
        drawing.into_iter().chain(caption).map(|line| line + "\n").collect()
    }

    /// The terminal prompts are shown on (stderr when it is one, else the controlling terminal)
    /// and its size; `None` when the process has no terminal at all.
    pub fn prompt_terminal(&self) -> Option<TerminalSize> {
        prompt::terminal()
    }

    /// Show `drawing` (painted black on white, also under `NO_COLOR`) and `caption` on the
    /// prompt terminal, in place of the last prompt; `false` when there is no terminal. Not
    /// hidden by `-q`: a code to act on is not a note.
    pub fn prompt(&self, drawing: Option<&Drawing>, caption: &str) -> bool {
        prompt::show(drawing, caption)
    }

    /// A prompt as text on stderr (the code, when no terminal can show it); not hidden by `-q`.
    pub fn prompt_text(&self, text: &str) {
        prompt::stderr(&format!("{}\n", sanitize::clean(text).trim_end_matches('\n')));
    }

    /// One JSON document on one line of stderr (an event a wrapper can act on while stdout
    /// waits for the final document); not hidden by `-q`.
    pub fn event<T: Serialize>(&self, value: &T) {
        let value = sanitize::clean_json(serde_json::to_value(value).expect("output types serialise"));
        prompt::stderr(&format!("{}\n", serde_json::to_string(&value).expect("JSON values serialise")));
    }

    /// Print lines made of styled spans on stdout: each span cleaned, then coloured by its style
    /// where colour is allowed.
    pub fn styled(&self, lines: &[Vec<(Style, String)>]) {
        let paint = self.colour();
        let mut out = String::new();
        for line in lines {
            for (style, text) in line {
                let text = sanitize::clean(text).replace('\n', " ");
                match style.code().filter(|_| paint) {
                    Some(code) => out.push_str(&format!("{code}{text}\x1b[0m")),
                    None => out.push_str(&text),
                }
            }
            out.push('\n');
        }
        self.stdout.push(out.into_bytes());
    }

    /// Print data: the JSON form when `--output json`, otherwise the table text.
    pub fn data<T: Serialize>(&self, value: &T, table: impl FnOnce() -> String) {
        match self.format {
            OutputFormat::Json => self.json(value),
            OutputFormat::Table => self.text(&table()),
        }
    }

    /// Print a JSON document on stdout (every string in it cleaned).
    pub fn json<T: Serialize>(&self, value: &T) {
        let value = sanitize::clean_json(serde_json::to_value(value).expect("output types serialise"));
        let text = serde_json::to_string_pretty(&value).expect("JSON values serialise");
        self.line(text);
    }

    /// Print one JSON document on one line (JSON Lines: a stream of records).
    pub fn json_line<T: Serialize>(&self, value: &T) {
        let value = sanitize::clean_json(serde_json::to_value(value).expect("output types serialise"));
        self.line(serde_json::to_string(&value).expect("JSON values serialise"));
    }

    /// Print text on stdout, cleaned (a newline is added when missing).
    pub fn text(&self, text: &str) {
        self.line(sanitize::clean(text));
    }

    fn line(&self, mut text: String) {
        if !text.ends_with('\n') {
            text.push('\n');
        }
        self.stdout.push(text.into_bytes());
    }

    /// Raw bytes on stdout, unchanged: the remote command's own output (`exec`, `node`, `shell`).
    pub fn stdout_bytes(&self, bytes: &[u8]) {
        self.stdout.push(bytes.to_vec());
    }

    /// Raw bytes on stderr, unchanged: the remote command's own diagnostics (`exec`, `node`).
    pub fn stderr_bytes(&self, bytes: &[u8]) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(bytes);
        let _ = err.flush();
    }

    /// A progress or context note on stderr (hidden by `-q`).
    pub fn note(&self, message: &str) {
        if !self.quiet {
            prompt::stderr(&format!("{}\n", sanitize::clean(message)));
        }
    }

    /// A warning on stderr (hidden by `-q`).
    pub fn warn(&self, message: &str) {
        if !self.quiet {
            prompt::stderr(&format!("warning: {}\n", sanitize::clean(message)));
        }
    }

    /// An error with its fix, on stderr; with `--output json` also as JSON on stdout so that
    /// scripts always get one parseable document.
    pub fn error(&self, error: &Error) {
        let message = sanitize::clean(&error.to_string());
        match error {
            // An interruption is the user's own doing: said plainly, not as an error.
            Error::Interrupted { .. } => prompt::stderr(&format!("{message}\n")),
            _ => prompt::stderr(&format!("error: {message}\n")),
        }
        if let Some(fix) = error.fix() {
            prompt::stderr(&format!("  fix: {}\n", sanitize::clean(fix)));
        }
        if self.format == OutputFormat::Json {
            self.error_json(error);
        }
    }

    /// The error as an `evoctl.error/v1` JSON document on stdout (also for commands whose own
    /// format flag asked for JSON).
    pub fn error_json(&self, error: &Error) {
        self.json(&ErrorDocument {
            schema: "evoctl.error/v1",
            error: ErrorBody {
                kind: error.kind(),
                message: error.to_string(),
                fix: error.fix(),
                exit_code: error.exit_code(),
            },
        });
    }
}

/// How a span of [`Printer::styled`] text is coloured on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    /// Red: a failure, a conflict, a refused delivery.
    Alert,
    /// Yellow: something to act on (a QR shown).
    Notice,
}

impl Style {
    fn code(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Alert => Some("\x1b[31m"),
            Style::Notice => Some("\x1b[33m"),
        }
    }
}

/// A picture made of text (the QR's half blocks), painted by the printer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drawing {
    lines: Vec<String>,
}

impl Drawing {
    pub fn new(lines: Vec<String>) -> Drawing {
        Drawing { lines }
    }

    /// The drawing's rows, unpainted.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// A drawing's rows and a caption's lines, cleaned; the rows painted black on white (bright
/// white background, black foreground, so a QR scans on dark and light themes) when `paint`.
fn painted(drawing: Option<&Drawing>, caption: &str, paint: bool) -> (Vec<String>, Vec<String>) {
    let rows = drawing.map(|d| d.lines.as_slice()).unwrap_or_default().iter().map(|line| {
        let line = sanitize::clean(line);
        match paint {
            true => format!("\x1b[30;107m{line}\x1b[0m"),
            false => line,
        }
    });
    let caption = sanitize::clean(caption);
    (rows.collect(), caption.lines().map(str::to_owned).collect())
}

/// Log lines (`-v`) on stderr, each cleaned as everything else the printer writes (so the log
/// formatter writes them without colours).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One log event, written (cleaned) to stderr when it is complete.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        prompt::stderr(&sanitize::clean(&String::from_utf8_lossy(&self.0)));
    }
}

#[derive(Serialize)]
struct ErrorDocument<'a> {
    schema: &'static str,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    kind: &'static str,
    message: String,
    fix: Option<&'a str>,
    exit_code: u8,
}

/// A duration in seconds, to the tenth (what reports show as `seconds`).
pub fn seconds(d: std::time::Duration) -> f64 {
    (d.as_millis() as f64 / 100.0).round() / 10.0
}

/// Render rows as left-aligned columns separated by two spaces, header first.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(header.to_vec());
    for row in rows {
        push_row(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_rounded_to_the_tenth() {
        use std::time::Duration;
        assert_eq!(seconds(Duration::ZERO), 0.0);
        assert_eq!(seconds(Duration::from_millis(49)), 0.0);
        assert_eq!(seconds(Duration::from_millis(50)), 0.1);
        assert_eq!(seconds(Duration::from_millis(2_049)), 2.0);
        assert_eq!(seconds(Duration::from_millis(2_050)), 2.1);
        assert_eq!(seconds(Duration::from_micros(1_999_999)), 2.0);
        assert_eq!(seconds(Duration::from_secs(61)), 61.0);
    }

    #[test]
    fn table_aligns_columns_and_trims_trailing_space() {
        let text = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()], vec!["".into(), "".into()]]);
        assert_eq!(text, "A    LONGER\nxyz  1\n\n");
    }
}
