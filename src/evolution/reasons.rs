//! Why an instance's last connection ended, and whether its two states agree. 2.3.7 keeps two:
//! the process's memory (`connectionState`) and the database row (`fetchInstances`'
//! `connectionStatus`). It writes the row's `disconnectionReasonCode`/`disconnectionAt` only on
//! a close it does not reconnect (401, 403, 402, 406) and never clears them; every other close
//! (440 replaced, 515, 408, 428, 500…) reconnects at once and leaves the row as it was, so a
//! 440 is known only from Baileys' `stream errored out` line in the task's log. This module
//! names the codes (Baileys `DisconnectReason` at 7.0.0-rc.9, the version 2.3.7 pins), says how
//! old the last one is, and flags a row that says `open` under a process that says otherwise.

use serde::Serialize;

/// A Baileys `DisconnectReason` code: its name and what it means for an operator.
pub fn reason(code: i64) -> (&'static str, &'static str) {
    match code {
        401 => ("loggedOut", "logged out: the linked device was removed (from the phone) or the session ended"),
        403 => ("forbidden", "forbidden: WhatsApp refused this session (a banned or restricted number)"),
        408 => ("timedOut", "timed out: the connection was lost, or the QR codes ran out before a scan"),
        411 => ("multideviceMismatch", "multi-device mismatch: the phone's WhatsApp does not allow this linked device"),
        428 => ("connectionClosed", "connection closed by WhatsApp or the network"),
        440 => ("connectionReplaced", "replaced: another connection took this session (two sockets on one number)"),
        500 => ("badSession", "bad session: the stored session could not be used"),
        503 => ("unavailableService", "WhatsApp's service was unavailable"),
        515 => ("restartRequired", "restart required: WhatsApp asked for a reconnect (normal right after a link)"),
        402 | 406 => ("unknown", "a code 2.3.7 treats as final (it does not reconnect)"),
        _ => ("unknown", "a code Baileys does not name"),
    }
}

/// A 440 younger than this points at `evoctl conflicts`.
pub const RECENT_REPLACED_SECONDS: i64 = 15 * 60;

/// The last disconnect evoctl could find.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disconnect {
    pub code: i64,
    pub name: &'static str,
    pub meaning: &'static str,
    /// When it happened (RFC 3339), as the source says it.
    pub at: Option<String>,
    pub age_seconds: Option<i64>,
    /// `database` (the row's disconnection columns) or `log` (Baileys' line in the task's log).
    pub source: &'static str,
}

impl Disconnect {
    pub fn new(code: i64, at: Option<String>, at_ms: Option<i64>, now_ms: i64, source: &'static str) -> Disconnect {
        let (name, meaning) = reason(code);
        Disconnect { code, name, meaning, at, age_seconds: at_ms.map(|at| ((now_ms - at) / 1000).max(0)), source }
    }

    /// `401 loggedOut (logged out: …), 3 min ago, from the database row`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} ({}){}, from the {}",
            self.code,
            self.name,
            self.meaning,
            self.age_seconds.map(|s| format!(", {} ago", age(s))).unwrap_or_default(),
            if self.source == "log" { "task's log" } else { "database row" }
        )
    }
}

/// An age in words: `42 s`, `5 min`, `3 h`, `2 d`.
pub fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// An RFC 3339 time (Prisma's `disconnectionAt`) in ms since the Unix epoch.
pub fn parse_ms(at: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(at.trim_end_matches('Z')).ok()?;
    time.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as i64)
}

/// The code of a Baileys `stream errored out` line as Baileys derives it
/// (`getErrorCodeFromStreamError`): the node's `code` attribute, else 440 for a `conflict`
/// child, else 500. Both shapes are read: rc.9's `reasonNode`/`fullErrorNode` and older
/// Baileys' `node`. `None` for a line that is not one.
pub fn stream_error_code(message: &str) -> Option<i64> {
    if !message.contains("stream errored out") {
        return None;
    }
    let line: serde_json::Value = serde_json::from_str(&message[message.find('{')?..]).ok()?;
    let node = if line["fullErrorNode"].is_object() { &line["fullErrorNode"] } else { &line["node"] };
    if let Some(code) = node["attrs"]["code"].as_str().and_then(|c| c.parse().ok()) {
        return Some(code);
    }
    let reason = line["reasonNode"]["tag"].as_str().or_else(|| node["content"][0]["tag"].as_str());
    Some(if reason == Some("conflict") { 440 } else { 500 })
}

/// What the row of an instance says about its connection (the `fetchInstances` fields).
#[derive(Debug, Clone, Default)]
pub struct RowFacts<'a> {
    pub status: Option<&'a str>,
    pub code: Option<i64>,
    pub at: Option<&'a str>,
}

impl<'a> From<&'a super::api::InstanceInfo> for RowFacts<'a> {
    fn from(row: &'a super::api::InstanceInfo) -> RowFacts<'a> {
        RowFacts {
            status: row.connection_status.as_deref(),
            code: row.disconnection_reason_code,
            at: row.disconnection_at.as_deref(),
        }
    }
}

/// Both states of an instance, its last disconnect, and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connection {
    /// The process's memory (`connectionState`); null when the process does not hold it.
    pub state: Option<String>,
    /// The database row's `connectionStatus`; null when the row was not read.
    pub database: Option<String>,
    /// The row says `open` while the process says otherwise (the words say which).
    pub disagreement: Option<String>,
    /// The row's disconnect (2.3.7 writes it only for codes it does not reconnect on).
    pub row_disconnect: Option<Disconnect>,
    /// The newest close Baileys logged (`stream errored out`: 440 replaced, 515, 500, a 401
    /// device removal…) in the task's log over the window read; the only place a close 2.3.7
    /// reconnects on is recorded.
    pub logged_disconnect: Option<Disconnect>,
    /// What to run about it, when anything.
    pub fix: Option<String>,
}

impl Connection {
    /// `subject`: how a command line names the environment and instance (`production`).
    pub fn new(
        state: Option<&str>,
        row: Option<RowFacts<'_>>,
        logged: Option<(i64, i64)>,
        now_ms: i64,
        env: &str,
        subject: &str,
    ) -> Connection {
        let row = row.unwrap_or_default();
        let row_disconnect = row.code.map(|code| {
            let at_ms = row.at.and_then(parse_ms);
            Disconnect::new(code, row.at.map(str::to_owned), at_ms, now_ms, "database")
        });
        let logged_disconnect =
            logged.map(|(code, at)| Disconnect::new(code, crate::timestamp::to_second(at), Some(at), now_ms, "log"));
        let disagreement = match (row.status, state) {
            (Some("open"), Some("close")) => Some(
                "the database says open, the process says close: a dead socket (2.3.7 reconnects without writing the row, and this reconnect did not come up)"
                    .to_owned(),
            ),
            (Some("open"), Some("connecting")) => Some(
                "the database says open, the process says connecting: the socket closed and is reconnecting (the row keeps its last open)"
                    .to_owned(),
            ),
            (Some("open"), None) => {
                Some("the database says open, but this process does not hold the instance".to_owned())
            }
            _ => None,
        };
        let recent_replaced = logged_disconnect
            .as_ref()
            .is_some_and(|d| d.code == 440 && d.age_seconds.is_some_and(|s| s <= RECENT_REPLACED_SECONDS));
        let removed = row_disconnect.as_ref().is_some_and(|d| d.code == 401) && state != Some("open");
        let fix = if recent_replaced && state != Some("close") {
            Some(format!("another connection replaces this one (440): `evoctl conflicts {env}` says which"))
        } else if removed {
            Some(format!("the device was removed and the number needs a new link: `evoctl connect {subject}`"))
        } else if disagreement.is_some() && state == Some("close") {
            Some(format!(
                "restart its socket: `evoctl instance connect {subject}` (a paired session comes back open without a scan)"
            ))
        } else if recent_replaced {
            Some(format!("another connection replaced this one (440): `evoctl conflicts {env}` says which"))
        } else {
            None
        };
        Connection {
            state: state.map(str::to_owned),
            database: row.status.map(str::to_owned),
            disagreement,
            row_disconnect,
            logged_disconnect,
            fix,
        }
    }

    /// The lines after the state: the row's status, the disconnects, the disagreement.
    pub fn detail_lines(&self) -> Vec<String> {
        let mut lines = vec![format!("database: {}", self.database.as_deref().unwrap_or("no row read"))];
        match &self.row_disconnect {
            Some(d) => lines.push(format!("last disconnect: {}", d.describe())),
            None => lines.push("last disconnect: none recorded in the row".into()),
        }
        if let Some(d) = &self.logged_disconnect {
            lines.push(format!("last stream error: {}", d.describe()));
        }
        if let Some(disagreement) = &self.disagreement {
            lines.push(disagreement.clone());
        }
        if self.row_disconnect.as_ref().is_some_and(|d| d.code == 401) && self.state.as_deref() != Some("open") {
            lines.push("the device was removed: it needs a new link".into());
        }
        lines
    }

    /// [`Connection::detail_lines`] and the fix, each indented on a line of its own.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for line in self.detail_lines() {
            out.push_str(&format!("  {line}\n"));
        }
        if let Some(fix) = &self.fix {
            out.push_str(&format!("  fix: {fix}\n"));
        }
        out
    }

    /// One short cell: `open`, `close (db open)`, `connecting, 440 2 min ago`.
    pub fn cell(&self) -> String {
        let mut out = self.state.clone().unwrap_or_else(|| "-".into());
        if self.database.is_some() && self.database != self.state {
            out.push_str(&format!(" (db {})", self.database.as_deref().unwrap_or("-")));
        }
        let last = match (&self.logged_disconnect, &self.row_disconnect) {
            (Some(log), Some(row)) if row.age_seconds < log.age_seconds => Some(row),
            (Some(log), _) => Some(log),
            (None, row) => row.as_ref(),
        };
        if let Some(d) = last {
            out.push_str(&format!(", {} {}", d.code, d.name));
            if let Some(s) = d.age_seconds {
                out.push_str(&format!(" {} ago", age(s)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn codes_are_named_as_baileys_names_them() {
        assert_eq!(reason(440).0, "connectionReplaced");
        assert_eq!(reason(401).0, "loggedOut");
        assert_eq!(reason(515).0, "restartRequired");
        assert_eq!(reason(999).0, "unknown");
        assert_eq!(parse_ms("1970-01-01T00:01:00.000Z"), Some(60_000));
        assert_eq!(parse_ms("1970-01-01T00:01:00Z"), Some(60_000));
        let older = r#"{"level":50,"time":1,"node":{"tag":"stream:error","attrs":{"code":"440"},"content":[{"tag":"conflict","attrs":{"type":"replaced"}}]},"msg":"stream errored out"}"#;
        assert_eq!(stream_error_code(older), Some(440));
        let rc9 = r#"{"level":50,"reasonNode":{"tag":"conflict","attrs":{"type":"device_removed"}},"fullErrorNode":{"tag":"stream:error","attrs":{"code":"401"},"content":[]},"msg":"stream errored out"}"#;
        assert_eq!(stream_error_code(rc9), Some(401));
        let replaced = r#"{"level":50,"reasonNode":{"tag":"conflict","attrs":{"type":"replaced"}},"fullErrorNode":{"tag":"stream:error","attrs":{}},"msg":"stream errored out"}"#;
        assert_eq!(stream_error_code(replaced), Some(440));
        let restart = r#"{"level":50,"reasonNode":null,"fullErrorNode":{"tag":"stream:error","attrs":{"code":"515"}},"msg":"stream errored out"}"#;
        assert_eq!(stream_error_code(restart), Some(515));
        assert_eq!(stream_error_code("INFO Browser: x"), None);
    }

    #[test]
    fn a_row_open_under_a_closed_process_is_a_dead_socket() {
        let row = RowFacts { status: Some("open"), code: None, at: None };
        let c = Connection::new(Some("close"), Some(row), None, NOW, "production", "production");
        assert!(
            c.disagreement
                .as_deref()
                .unwrap()
                .starts_with("the database says open, the process says close: a dead socket")
        );
        assert_eq!(c.cell(), "close (db open)");
        assert!(c.fix.unwrap().contains("evoctl instance connect production"));
    }

    #[test]
    fn a_recent_440_points_at_conflicts_and_a_401_at_a_new_link() {
        let row = RowFacts { status: Some("open"), code: None, at: None };
        let c = Connection::new(Some("open"), Some(row), Some((440, NOW - 20_000)), NOW, "production", "production");
        assert_eq!(
            c.fix.as_deref(),
            Some("another connection replaces this one (440): `evoctl conflicts production` says which")
        );
        assert_eq!(c.cell(), "open, 440 connectionReplaced 20 s ago");
        let row = RowFacts { status: Some("close"), code: Some(401), at: Some("2027-01-15T08:00:00.000Z") };
        let c = Connection::new(Some("close"), Some(row), None, NOW, "production", "production named1");
        assert_eq!(
            c.fix.as_deref(),
            Some("the device was removed and the number needs a new link: `evoctl connect production named1`")
        );
        assert!(c.detail_lines().contains(&"the device was removed: it needs a new link".to_owned()));
    }
}
