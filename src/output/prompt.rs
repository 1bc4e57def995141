//! The prompt terminal: a code the person at the keyboard must act on (a QR to scan, a pairing
//! code to type) is shown on their terminal whatever stdout is, so `--output json` or `> file`
//! never hides it. That terminal is stderr when stderr is one, otherwise the controlling
//! terminal (`/dev/tty`, where ssh asks for a password too); a process with neither has no
//! prompt terminal, and says the code as text instead (the caller decides how).
//!
//! A new prompt replaces the last one in place: the cursor goes back over the rows the last
//! prompt took and over the lines written to stderr below it since (notes, warnings, log
//! lines), clears down, writes those lines again and then the new prompt. Nothing said is lost
//! and the newest code is the one on the screen. When those rows no longer fit on the screen
//! (some scrolled away) the new prompt follows the old one instead of overwriting the wrong
//! rows. Stdout is not followed: nothing writes data while a code is being shown.

use super::{Drawing, painted};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// A terminal's size in character cells; 0 when the terminal does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub columns: usize,
    pub rows: usize,
}

impl TerminalSize {
    /// Whether `drawing` with `caption` under it fits whole on a screen of this size (with the
    /// cursor's row below it); otherwise the size it would need. An unknown size fits.
    pub fn room_for(&self, drawing: &Drawing, caption: &str) -> Result<(), TerminalSize> {
        let (art, caption) = painted(Some(drawing), caption, false);
        let columns = art.iter().map(|line| width(line)).max().unwrap_or(0);
        let rows = art.len() + caption.iter().map(|line| rows_of(line, columns)).sum::<usize>() + 1;
        let known = self.columns > 0 && self.rows > 0;
        match known && (columns > self.columns || rows > self.rows) {
            true => Err(TerminalSize { columns, rows }),
            false => Ok(()),
        }
    }
}

/// Where prompts go.
#[derive(Debug)]
enum Target {
    Stderr,
    Tty(std::fs::File),
}

impl Target {
    fn find() -> Option<Target> {
        if std::io::stderr().is_terminal() {
            return Some(Target::Stderr);
        }
        // Fails (ENXIO) when the process has no controlling terminal.
        let tty = std::fs::OpenOptions::new().write(true).open("/dev/tty").ok()?;
        tty.is_terminal().then_some(Target::Tty(tty))
    }

    fn size(&self) -> TerminalSize {
        let size = match self {
            Target::Stderr => rustix::termios::tcgetwinsize(std::io::stderr()),
            Target::Tty(tty) => rustix::termios::tcgetwinsize(tty),
        };
        size.map(|s| TerminalSize { columns: usize::from(s.ws_col), rows: usize::from(s.ws_row) })
            .unwrap_or(TerminalSize { columns: 0, rows: 0 })
    }

    fn write(&mut self, text: &str) {
        let _ = match self {
            Target::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(text.as_bytes()).and_then(|()| err.flush())
            }
            Target::Tty(tty) => tty.write_all(text.as_bytes()).and_then(|()| tty.flush()),
        };
    }
}

/// The prompt terminal and what the last prompt left on it.
#[derive(Debug)]
struct Screen {
    /// `None` until looked for; then the terminal, if any.
    target: Option<Option<Target>>,
    /// Rows the last prompt took (0: none shown).
    rows: usize,
    /// Lines written to stderr below the last prompt (when stderr is the prompt terminal).
    since: Vec<String>,
    /// More lines than [`SINCE_KEPT`] came: the next prompt follows instead of replacing.
    overflowed: bool,
}

/// Lines kept to be written again above the next prompt; a screen holds fewer.
const SINCE_KEPT: usize = 256;

static SCREEN: Mutex<Screen> = Mutex::new(Screen { target: None, rows: 0, since: Vec::new(), overflowed: false });

fn screen() -> std::sync::MutexGuard<'static, Screen> {
    SCREEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Screen {
    fn target(&mut self) -> Option<&mut Target> {
        self.target.get_or_insert_with(Target::find).as_mut()
    }
}

/// The prompt terminal's size; `None` when the process has no terminal at all.
pub fn terminal() -> Option<TerminalSize> {
    screen().target().map(|target| target.size())
}

/// Show `drawing` (painted black on white) and `caption` on the prompt terminal in place of the
/// last prompt; `false` (nothing written) when there is no terminal.
pub fn show(drawing: Option<&Drawing>, caption: &str) -> bool {
    let mut screen = screen();
    let Some(size) = screen.target().map(|target| target.size()) else { return false };
    let mut out = String::new();
    let since = std::mem::take(&mut screen.since);
    let overflowed = std::mem::replace(&mut screen.overflowed, false);
    if screen.rows > 0 {
        let back = screen.rows + since.iter().map(|line| rows_of(line, size.columns)).sum::<usize>();
        if !overflowed && (size.rows == 0 || back < size.rows) {
            out.push_str(&format!("\x1b[{back}F\x1b[J"));
            for line in &since {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let (art, caption) = painted(drawing, caption, false);
    let (art_painted, _) = painted(drawing, "", true);
    screen.rows = art.iter().chain(&caption).map(|line| rows_of(line, size.columns)).sum();
    for line in art_painted.into_iter().chain(caption) {
        out.push_str(&line);
        out.push('\n');
    }
    if let Some(target) = screen.target() {
        target.write(&out);
    }
    true
}

/// Write `text` (cleaned, whole lines) to stderr; when stderr is the prompt terminal and a
/// prompt is on it, the lines are kept to be written again above the next prompt.
pub fn stderr(text: &str) {
    let mut screen = screen();
    if screen.rows > 0 && matches!(screen.target, Some(Some(Target::Stderr))) {
        for line in text.lines() {
            match screen.since.len() < SINCE_KEPT {
                true => screen.since.push(line.to_owned()),
                false => screen.overflowed = true,
            }
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// Display columns of a line without control sequences.
fn width(line: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(line)
}

/// Terminal rows a line takes on a screen `columns` wide (it wraps; 0 columns: unknown, one row).
fn rows_of(line: &str, columns: usize) -> usize {
    match columns {
        0 => 1,
        _ => width(line).div_ceil(columns).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_line_takes_every_row_it_wraps_onto() {
        assert_eq!(rows_of("", 80), 1);
        assert_eq!(rows_of(&"x".repeat(80), 80), 1);
        assert_eq!(rows_of(&"x".repeat(81), 80), 2);
        assert_eq!(rows_of(&"x".repeat(81), 0), 1);
    }

    #[test]
    fn a_drawing_fits_with_its_caption_and_the_cursor_row() {
        let drawing = Drawing::new(vec!["█".repeat(30); 10]);
        let size = |columns, rows| TerminalSize { columns, rows };
        assert_eq!(size(30, 12).room_for(&drawing, "caption"), Ok(()));
        assert_eq!(size(30, 11).room_for(&drawing, "caption"), Err(size(30, 12)));
        assert_eq!(size(29, 40).room_for(&drawing, "caption"), Err(size(30, 12)));
        // A caption wider than the drawing wraps at the drawing's width.
        assert_eq!(size(20, 10).room_for(&drawing, &"c".repeat(31)), Err(size(30, 13)));
        assert_eq!(size(0, 0).room_for(&drawing, "caption"), Ok(()));
    }
}
