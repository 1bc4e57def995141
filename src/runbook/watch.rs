//! The event streams of the programs in the container, one JSON object per line: the link watch
//! (`created`, `taken`, `foreign`, `qr`, `pairing_ignored`, `state`, `reach`, `linked`, `flap`,
//! `timeout`, `error`) and the delete wait (`webhook`, `deleted`, `pending`, `gone`, `timeout`,
//! `error`). [`EventLines`] turns the streamed stdout into [`WatchEvent`]s as they arrive, so a
//! QR is shown the moment it exists.

use crate::exec::run::OutputSink;
use serde::Deserialize;

/// One event from the container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "e", rename_all = "lowercase")]
pub enum WatchEvent {
    /// The Baileys the image ships (its `node_modules/baileys/package.json`), and whether its
    /// socket code handles WhatsApp's `companion_reg_refresh` (names it at all; no released
    /// Baileys does); said first, before any code. `None`: the package was not found.
    /// `log_baileys`: the process's `LOG_BAILEYS` (`error` when unset, as 2.3.7 reads it).
    Baileys {
        #[serde(default)]
        version: Option<String>,
        #[serde(default)]
        handles_refresh: Option<bool>,
        #[serde(default)]
        log_baileys: Option<String>,
    },
    /// The instance was missing and has been created.
    Created,
    /// The name is taken in the database but not loaded here (another environment shares it).
    Taken,
    /// The row is in this deployment's database but another Evolution process holds it.
    Foreign,
    /// A pairing code was asked for an instance already waiting for a QR scan: 2.3.7 ignores
    /// `?number=` until that flow ends.
    PairingIgnored,
    /// A new QR (or pairing code); `count` QRs so far, `limit` = QRCODE_LIMIT.
    Qr { code: String, pairing: Option<String>, count: u64, limit: u64 },
    /// QRCODE_LIMIT was reached after `count` codes: Evolution refused the instance and closed
    /// it (2.3.7 resets its count then, which is how the watch sees it).
    Refused { count: u64, limit: u64 },
    /// The live state changed.
    State { state: String },
    /// No QR yet after a while: whether the task reaches WhatsApp (the watch ends when not).
    Reach(crate::evolution::probe::Reach),
    /// Open, and it stayed open for the stability window; the number the instance now holds.
    Linked {
        #[serde(default)]
        number: Option<String>,
        /// The row's `connectionStatus`, `disconnectionReasonCode` and `disconnectionAt` as
        /// read with the number (absent when the row was not read).
        #[serde(default)]
        row_status: Option<String>,
        #[serde(default)]
        row_code: Option<i64>,
        #[serde(default)]
        row_at: Option<String>,
    },
    /// It dropped from `open` during the stability window.
    Flap { state: String },
    /// No link before the deadline.
    Timeout,
    /// The API answered with an error (status 0: it did not answer).
    Error { status: u16, body: String },
    /// Before a delete: the webhook the cleanup will wait on (`remove`: it subscribes
    /// REMOVE_INSTANCE; `jwt_empty`: its `jwt_key` header is empty, which blocks the cleanup;
    /// `by_events`: each event goes to `url/<event>`).
    Webhook {
        url: Option<String>,
        remove: bool,
        jwt_empty: bool,
        #[serde(default)]
        by_events: bool,
    },
    /// The delete was answered; Evolution's cleanup runs after.
    Deleted,
    /// Still listed, `t` ms after the delete began.
    Pending { t: u64 },
    /// No longer listed, `t` ms after the delete began.
    Gone { t: u64 },
}

/// An [`OutputSink`] that splits stdout into lines and hands each parsed event to `on_event`;
/// stderr and unparseable lines are kept for the error message.
pub struct EventLines<F: FnMut(WatchEvent) + Send> {
    on_event: F,
    partial: Vec<u8>,
    pub stray: Vec<u8>,
    pub last: Option<WatchEvent>,
}

impl<F: FnMut(WatchEvent) + Send> EventLines<F> {
    pub fn new(on_event: F) -> Self {
        EventLines { on_event, partial: Vec::new(), stray: Vec::new(), last: None }
    }
}

impl<F: FnMut(WatchEvent) + Send> OutputSink for EventLines<F> {
    fn stdout(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            match serde_json::from_slice::<WatchEvent>(&line) {
                Ok(event) => {
                    self.last = Some(event.clone());
                    (self.on_event)(event);
                }
                Err(_) => self.stray.extend_from_slice(&line),
            }
        }
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.stray.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_arrive_whole_and_in_order() {
        let mut seen = Vec::new();
        let mut sink = EventLines::new(|e| seen.push(e));
        let stream = b"{\"e\":\"state\",\"state\":\"connecting\"}\n{\"e\":\"qr\",\"code\":\"2@abc\",\"pairing\":null,\"count\":1,\"limit\":30}\nnoise\n{\"e\":\"linked\",\"number\":\"5511\"}\n";
        for chunk in stream.chunks(7) {
            sink.stdout(chunk);
        }
        let stray = sink.stray.clone();
        drop(sink);
        assert_eq!(
            seen,
            [
                WatchEvent::State { state: "connecting".into() },
                WatchEvent::Qr { code: "2@abc".into(), pairing: None, count: 1, limit: 30 },
                WatchEvent::Linked { number: Some("5511".into()), row_status: None, row_code: None, row_at: None },
            ]
        );
        assert_eq!(stray, b"noise\n");
    }
}
