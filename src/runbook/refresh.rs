//! Pairing that cannot succeed: WhatsApp's `companion_reg_refresh`. Since 2026-07-28 WhatsApp
//! answers a QR scan with `<notification type="companion_reg_refresh">`, retiring the pairing
//! (ADV) secret the code carries (WhiskeySockets/Baileys#2737). No released Baileys handles it
//! (7.0.0-rc.9, which Evolution 2.3.7 and 2.4.0-rc2 pin, acks and drops it and keeps showing
//! the retired secret), so the phone says "Couldn't link device" for that scan and every later
//! one; a patched Baileys (PR #2765) shows a new code. The server says nothing of it but the
//! ack, which its Baileys logger writes at `debug` (`sent ack`, with the notification's type)
//! and the frame at `trace` (`recv xml`): [`first_refresh`] reads the environment's log for it
//! while the connect watch runs, so a failed scan is said when it happens, not at the timeout.

use crate::aws::Aws;
use crate::aws::discovery::ServiceRef;
use crate::aws::logs::{self, LogLine, Window};
use crate::config::Environment;
use crate::error::{Error, Result};
use crate::output::sanitize::quote_line;
use std::time::Duration;

/// The CloudWatch filter pattern of the notification's log lines (either level).
const PATTERN: &str = "\"companion_reg_refresh\"";
/// Time between two reads of the log (the awslogs driver sends every 5 s by default).
const EVERY: Duration = Duration::from_secs(1);

/// Whether a Baileys logger at `LOG_BAILEYS` = `level` writes the notification's ack (pino:
/// `debug` and `trace` do; `error`, 2.3.7's default, and the rest do not).
pub fn logs_refresh(level: &str) -> bool {
    matches!(level, "debug" | "trace")
}

/// What an image whose Baileys ignores the notification means for linking, said before the
/// first code (connect) and in doctor's evolution layer.
pub fn ignored(version: &str) -> String {
    format!(
        "Baileys {} ignores companion_reg_refresh, WhatsApp's answer to scans since 2026-07-28 (Baileys #2737; fix: PR #2765), so scans may fail (\"Couldn't link device\")",
        quote_line(version, 40)
    )
}

/// What connect says of the log after [`ignored`] (short: the whole warning fits two lines of
/// 120 columns): whether it can see a failed scan.
pub fn seen_or_not(level: &str) -> String {
    if logs_refresh(level) {
        format!("evoctl reads the log (LOG_BAILEYS={level}) to stop when one does")
    } else {
        "evoctl sees one only at LOG_BAILEYS=debug".to_owned()
    }
}

/// The first log line of `env` since `since_ms` that holds the notification, read every second.
pub async fn first_refresh(aws: &Aws, env: &Environment, since_ms: i64) -> Result<LogLine> {
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    let source = logs::log_source(&aws.ecs(), target, &env.container).await?;
    let client = aws.logs();
    loop {
        let window = Window { source: &source, pattern: PATTERN, start_ms: since_ms, limit: 10 };
        if let Some(line) = logs::read(&client, window).await?.lines.into_iter().next() {
            return Ok(line);
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// The error connect ends with when the log shows the notification on an image that ignores it.
pub fn failed_scan(name: &str, again: &str, line: &LogLine, version: &str) -> Error {
    let at = crate::timestamp::to_second(line.timestamp_ms).unwrap_or_else(|| "-".into());
    Error::Unavailable {
        message: format!(
            "{name} was not linked: a scan failed at {at} (the phone says \"Couldn't link device\"): WhatsApp answered it with companion_reg_refresh, retiring the pairing secret, and the image's Baileys {} ignores that, so every code it shows fails the same way; the watch was ended",
            quote_line(version, 40)
        ),
        fix: format!(
            "run an image whose Baileys handles companion_reg_refresh (Baileys PR #2765; see the README's \"A scan fails on the phone\"), deployed with `evoctl redeploy` and a new task definition revision; then `evoctl connect {again}`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_debug_and_trace_write_the_ack() {
        let writes: Vec<&str> = ["trace", "debug", "info", "warn", "error", "fatal", "silent", "DEBUG", ""]
            .into_iter()
            .filter(|l| logs_refresh(l))
            .collect();
        assert_eq!(writes, ["trace", "debug"]);
    }
}
