//! Showing a linking code to the person who links (`connect`, `instance connect`): a code is a
//! prompt, not data. Each QR is drawn on the terminal (the printer's prompt terminal: stderr,
//! or the controlling terminal when stderr is redirected) in every output mode, replacing the
//! last one in place; a pairing code is shown there as text. A QR the terminal cannot hold whole
//! is not drawn at all: the person is told the size it needs and where the PNG is (`--png`, or
//! a temporary file kept for them, mode 0600, rewritten at each new QR). With no terminal at all
//! the code itself goes to stderr as text. With `--output json` each code is also one
//! `evoctl.connect.event/v1` line on stderr, so a wrapper can show it elsewhere while stdout
//! waits for the final document.

use crate::error::{Error, Result};
use crate::output::{OutputFormat, Printer, TerminalSize};
use crate::qr;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Schema of the JSON lines on stderr.
pub const EVENT_SCHEMA: &str = "evoctl.connect.event/v1";

/// One code as the watch reported it.
#[derive(Debug, Clone, Copy)]
pub struct Code<'a> {
    /// The QR's text (Evolution's `code`).
    pub qr: &'a str,
    /// The pairing code, in a pairing flow.
    pub pairing: Option<&'a str>,
    /// Codes so far in this flow (Evolution's count).
    pub count: u64,
    /// QRCODE_LIMIT: after this many codes Evolution gives the flow up.
    pub limit: u64,
}

impl Code<'_> {
    /// "QR 2 of 30", "pairing code 1 of 30".
    fn label(&self) -> String {
        let noun = if self.pairing.is_some() { "pairing code" } else { "QR" };
        format!("{noun} {} of {}", self.count, self.limit)
    }
}

/// `evoctl.connect.event/v1`: one code, as a JSON line on stderr.
#[derive(Debug, Serialize)]
struct CodeEvent<'a> {
    schema: &'static str,
    /// `qr` or `pairing_code`.
    kind: &'static str,
    env: &'a str,
    instance: &'a str,
    /// What to show: the QR's text, or the pairing code to type.
    code: &'a str,
    count: u64,
    limit: u64,
    /// The PNG holding this QR (`--png`, or the file written because the terminal is too small).
    png: Option<&'a Path>,
}

/// Shows the codes of one link flow.
#[derive(Debug)]
pub struct CodeView<'a> {
    printer: &'a Printer,
    env: &'a str,
    instance: &'a str,
    /// `--png`: every QR is written there.
    png: Option<&'a Path>,
    /// The temporary PNG written for a QR the terminal cannot hold (kept for the person).
    spare_png: Option<PathBuf>,
    /// Codes shown so far.
    pub shown: u64,
    /// A pairing flow (it speaks of codes, not QRs).
    pairing: bool,
}

impl<'a> CodeView<'a> {
    /// The view of a flow on `env`'s `instance`; `pairing` when a pairing code was asked for.
    pub fn new(printer: &'a Printer, env: &'a str, instance: &'a str, png: Option<&'a Path>, pairing: bool) -> Self {
        CodeView { printer, env, instance, png, spare_png: None, shown: 0, pairing }
    }

    /// "QR(s)" or "pairing code(s)", for messages about this flow.
    pub fn noun(&self) -> &'static str {
        if self.pairing { "pairing code(s)" } else { "QR(s)" }
    }

    /// Show one code. An error only when `--png` could not be written (the code was shown).
    pub fn show(&mut self, code: Code<'_>) -> Result<()> {
        self.shown += 1;
        self.pairing |= code.pairing.is_some();
        let png_error = self.png.and_then(|path| qr::write_png(code.qr, path).err());
        let png = self.png.filter(|_| png_error.is_none());
        match code.pairing {
            Some(pairing) => {
                self.event(&code, "pairing_code", pairing, png);
                let caption = format!(
                    "pairing code: {pairing}  (WhatsApp > Linked devices > Link with phone number instead; {})",
                    code.label()
                );
                if !self.printer.prompt(None, &caption) {
                    self.printer.prompt_text(&caption);
                }
            }
            None => self.show_qr(&code, png),
        }
        png_error.map_or(Ok(()), Err)
    }

    fn show_qr(&mut self, code: &Code<'_>, png: Option<&Path>) {
        let label = code.label();
        let Some(size) = self.printer.prompt_terminal() else {
            self.event(code, "qr", code.qr, png);
            let where_ = match png {
                Some(path) => format!("scan {}", path.display()),
                None => "pass --png FILE for an image to scan, or draw it with `evoctl qr CODE`".into(),
            };
            self.printer.prompt_text(&format!("{label}: no terminal to draw it on; {where_}. Its code: {}", code.qr));
            return;
        };
        let drawing = match qr::to_terminal(code.qr) {
            Ok(drawing) => drawing,
            Err(err) => {
                self.event(code, "qr", code.qr, png);
                self.printer.prompt_text(&format!("{label} cannot be drawn ({err}); its code: {}", code.qr));
                return;
            }
        };
        let caption = format!("scan with WhatsApp > Linked devices > Link a device ({label})");
        let needed = match size.room_for(&drawing, &caption) {
            Ok(()) => {
                self.event(code, "qr", code.qr, png);
                self.printer.prompt(Some(&drawing), &caption);
                return;
            }
            Err(needed) => needed,
        };
        let file = match png {
            Some(path) => Ok(path.to_path_buf()),
            None => self.spare(code.qr),
        };
        self.event(code, "qr", code.qr, file.as_deref().ok());
        let said = match file {
            Ok(path) => format!(
                "{label} needs a terminal of {} characters and this one is {}: not drawn here; scan {} instead, or enlarge the terminal",
                cells(needed),
                cells(size),
                path.display()
            ),
            Err(err) => format!(
                "{label} needs a terminal of {} characters and this one is {}, and no image could be written ({err}); its code: {}",
                cells(needed),
                cells(size),
                code.qr
            ),
        };
        self.printer.prompt(None, &said);
    }

    /// The temporary PNG for a QR the terminal cannot hold, rewritten with `text`: created once
    /// (mode 0600, in the temporary directory) and kept after evoctl ends, for the person to open.
    fn spare(&mut self, text: &str) -> Result<PathBuf> {
        let path = match &self.spare_png {
            Some(path) => path.clone(),
            None => {
                let io = |source| Error::Io { path: std::env::temp_dir(), source };
                let file = tempfile::Builder::new().prefix("evoctl-qr-").suffix(".png").tempfile().map_err(io)?;
                let (_, path) = file.keep().map_err(|e| io(e.error))?;
                self.spare_png = Some(path.clone());
                path
            }
        };
        qr::write_png(text, &path)?;
        Ok(path)
    }

    /// The code as a JSON line on stderr, with `--output json`.
    fn event(&self, code: &Code<'_>, kind: &'static str, shown: &str, png: Option<&Path>) {
        if self.printer.format() == OutputFormat::Json {
            self.printer.event(&CodeEvent {
                schema: EVENT_SCHEMA,
                kind,
                env: self.env,
                instance: self.instance,
                code: shown,
                count: code.count,
                limit: code.limit,
                png,
            });
        }
    }
}

/// "69×37".
fn cells(size: TerminalSize) -> String {
    format!("{}×{}", size.columns, size.rows)
}
