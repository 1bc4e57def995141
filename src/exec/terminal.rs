//! The local terminal during `evoctl shell`: raw mode (so Ctrl-C, Ctrl-D and arrow keys go to
//! the remote shell) restored on every exit path by a guard, and the window size.

use super::ssm::messages::TerminalSize;
use rustix::termios::{OptionalActions, Termios, isatty, tcgetattr, tcgetwinsize, tcsetattr};

/// Puts stdin's terminal in raw mode; restores the saved settings when dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin, or `None` when stdin is not a terminal.
    pub fn enable() -> std::io::Result<Option<RawMode>> {
        let stdin = rustix::stdio::stdin();
        if !isatty(stdin) {
            return Ok(None);
        }
        let saved = tcgetattr(stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(stdin, OptionalActions::Now, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(rustix::stdio::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// The terminal's size (from stdout, else stdin), or a roomy default when there is none.
pub fn size() -> TerminalSize {
    [rustix::stdio::stdout(), rustix::stdio::stdin()]
        .into_iter()
        .filter(|fd| isatty(fd))
        .find_map(|fd| tcgetwinsize(fd).ok())
        .filter(|w| w.ws_col > 0 && w.ws_row > 0)
        .map(|w| TerminalSize { cols: u32::from(w.ws_col), rows: u32::from(w.ws_row) })
        .unwrap_or(TerminalSize { cols: 300, rows: 100 })
}
