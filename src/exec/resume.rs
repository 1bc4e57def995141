//! Whether, and after how long, a dropped data channel is resumed.
//!
//! Resuming keeps the session and the command: `ssm:ResumeSession` for the same session id
//! answers with a new token (and the stream URL), the client opens a new websocket to it and
//! sends the open-data-channel frame with that token, and both sides carry on with their
//! sequence numbers; frames sent while no socket was attached are resent by whoever sent them
//! (ssm-data-channel.md §3.8, §9 row 1). The official plugin resumes after 5 failed reads in a
//! row, with 5 attempts and a back-off starting at 100–199 ms that doubles and wraps at 5 s.
//!
//! evoctl counts the same way, per drop and not per session: [`Resumes`] counts failures *in a
//! row* (a ResumeSession refused, a websocket that does not open, a resumed socket that dies
//! before it delivers anything) and starts over, back-off included, once a resumed socket
//! delivers a frame: a network that cuts the socket every few seconds does not use the budget
//! up, while a path that stays down ends the session after [`MAX_FAILURES_IN_A_ROW`]. A lifetime
//! budget ([`RUN_BUDGET`], [`SHELL_BUDGET`]) bounds the total, so a path that breaks the socket
//! moments after every resume is reported instead of resumed forever. Neither bound replaces
//! the deadline (`--timeout`, a shell's set-up limit), Ctrl-C or the idle limit: those are raced
//! against every attempt.

use std::time::Duration;

/// Attempts that may fail in a row before the session is given up: the plugin's 5.
pub const MAX_FAILURES_IN_A_ROW: u32 = 5;
/// The wait before the first attempt after a drop (the plugin waits 100–199 ms), doubled after
/// each failure in a row: 0.1, 0.2, 0.4, 0.8 and 1.6 s, so a path that stays down is given up
/// about 3 s (plus the attempts themselves) after it went, under the plugin's 5 s wrap.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Resumes in the life of one run (`exec`, `node`, a driver call). A run is bounded by its
/// `--timeout` anyway (5 minutes by default); 50 resumes carry it through a socket cut every 6 s
/// for the whole default timeout, or every 2 s for well over a minute and a half, and stop a
/// run whose socket breaks at once after every resume before it spends its deadline redialling.
pub const RUN_BUDGET: u32 = 50;
/// Resumes in the life of a shell, which has no deadline: MGS itself closes a data channel's
/// socket about once an hour (session-manager-plugin#135), laptops sleep and change networks,
/// and a mobile link may cut every few seconds for a while. 500 covers a working day of those,
/// or a cut every 2 s for a quarter of an hour, before the shell says the path is unusable.
pub const SHELL_BUDGET: u32 = 500;

/// Why the data channel is not resumed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveUp {
    /// [`MAX_FAILURES_IN_A_ROW`] attempts failed in a row.
    FailedInARow(u32),
    /// The lifetime budget is spent (resumes so far).
    BudgetSpent(u32),
}

/// The resume count of one session.
#[derive(Debug, Clone)]
pub struct Resumes {
    in_a_row: u32,
    total: u32,
    budget: u32,
}

impl Resumes {
    /// A session that may be resumed `budget` times in its life.
    pub fn new(budget: u32) -> Resumes {
        Resumes { in_a_row: 0, total: 0, budget }
    }

    /// The socket dropped, or the last attempt failed: how long to wait before the next attempt,
    /// or why there is none.
    pub fn next_attempt(&mut self) -> Result<Duration, GiveUp> {
        if self.in_a_row >= MAX_FAILURES_IN_A_ROW {
            return Err(GiveUp::FailedInARow(self.in_a_row));
        }
        if self.total >= self.budget {
            return Err(GiveUp::BudgetSpent(self.total));
        }
        let wait = FIRST_BACKOFF.saturating_mul(1 << self.in_a_row);
        self.in_a_row += 1;
        self.total += 1;
        Ok(wait)
    }

    /// A resumed socket delivered a frame: the failures in a row, and the back-off, start over.
    pub fn delivered(&mut self) {
        self.in_a_row = 0;
    }

    /// Resumes attempted so far.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Attempts since the last socket that delivered.
    pub fn in_a_row(&self) -> u32 {
        self.in_a_row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn failures_in_a_row_back_off_and_give_up_after_five() {
        let mut resumes = Resumes::new(RUN_BUDGET);
        let waits: Vec<Duration> = (0..5).map(|_| resumes.next_attempt().unwrap()).collect();
        assert_eq!(waits, vec![ms(100), ms(200), ms(400), ms(800), ms(1600)]);
        assert_eq!(resumes.next_attempt(), Err(GiveUp::FailedInARow(5)));
    }

    #[test]
    fn a_socket_that_delivers_starts_the_count_and_the_back_off_over() {
        let mut resumes = Resumes::new(RUN_BUDGET);
        // A socket cut every 2 s for a 30 s command: 16 drops, each resumed at the first try.
        for _ in 0..16 {
            assert_eq!(resumes.next_attempt(), Ok(ms(100)));
            resumes.delivered();
        }
        assert_eq!(resumes.total(), 16);
        // Then four failures and a success, twice: never five in a row.
        for _ in 0..2 {
            for expected in [100, 200, 400, 800] {
                assert_eq!(resumes.next_attempt(), Ok(ms(expected)));
            }
            resumes.delivered();
            assert_eq!(resumes.in_a_row(), 0);
        }
    }

    #[test]
    fn the_lifetime_budget_bounds_resumes_that_each_deliver() {
        let mut resumes = Resumes::new(3);
        for _ in 0..3 {
            resumes.next_attempt().unwrap();
            resumes.delivered();
        }
        assert_eq!(resumes.next_attempt(), Err(GiveUp::BudgetSpent(3)));
    }
}
