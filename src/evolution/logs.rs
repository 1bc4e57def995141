//! Evolution 2.3.7's log as CloudWatch holds it, read back into what it says.
//!
//! The awslogs driver makes one event of every line the container writes, while Evolution's
//! `Logger` writes an object as a header line (`[Evolution API] … ERROR [WebhookController]
//! [object] {`) followed by its `util.inspect` lines (`  message: 'Tentativa 1/10 falhou: …',`,
//! `  statusCode: 500,`, `}`). [`assemble`] puts each stream's lines back into records (a header
//! and the lines after it; a Baileys pino JSON line is a record of its own), [`Record::kind`]
//! says which of the lines evoctl knows a record is (a conflict/replaced, a QR update, a webhook
//! delivery failure with its HTTP status, an error), and [`WebhookFailures`] sums up the webhook
//! records of a window for `doctor`. Text is cleaned before anyone prints it: ANSI colours and
//! other control characters go (LOG_COLOR is on in the image), and the values of `apikey`,
//! `jwt_key` and `Authorization` fields are replaced (with `LOG_LEVEL` holding `WEBHOOKS` every
//! payload is dumped with the instance's token in it).

use crate::aws::logs::LogLine;
use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

/// The lines `logs --kind` picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Baileys' `stream errored out` with conflict/replaced (two connections on one number)
    Conflict,
    /// QR updates, the QR limit and `NOT CONNECTION`
    Qr,
    /// Webhook delivery failures (retries, non-retryable statuses, giving up, JWT failures)
    Webhook,
    /// Any ERROR record (Evolution's level ERROR, pino level 50 and above)
    Error,
}

/// One logged thing: a header line and the lines that belong to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub stream: String,
    pub timestamp_ms: i64,
    /// Evolution's level word (`LOG`, `INFO`, `WARN`, `ERROR`, `VERBOSE`) or pino's as a word.
    pub level: Option<String>,
    /// Evolution's context (`WebhookController`, `ChannelStartupService`, …).
    pub context: Option<String>,
    /// Every line, cleaned and redacted, joined with `\n`.
    pub text: String,
}

impl Record {
    /// The ECS task id (the last part of the awslogs stream name).
    pub fn task(&self) -> &str {
        self.stream.rsplit('/').next().unwrap_or(&self.stream)
    }

    /// The most specific kind the record is, if evoctl knows it.
    pub fn kind(&self) -> Option<Kind> {
        [Kind::Conflict, Kind::Webhook, Kind::Qr, Kind::Error].into_iter().find(|k| self.is(*k))
    }

    /// Whether the record is of `kind` (an ERROR-level webhook failure is both).
    pub fn is(&self, kind: Kind) -> bool {
        let text = &self.text;
        match kind {
            Kind::Conflict => {
                text.contains("stream errored out") && text.contains("conflict") && text.contains("replaced")
            }
            Kind::Webhook => self.webhook().is_some(),
            Kind::Qr => {
                text.contains("qrcodeCount:")
                    || text.contains("QR code limit reached")
                    || text.contains("- NOT CONNECTION")
            }
            Kind::Error => matches!(self.level.as_deref(), Some("ERROR" | "FATAL")),
        }
    }

    /// The webhook delivery step this record logs, if it is one.
    pub fn webhook(&self) -> Option<WebhookStep> {
        if !(self.text.contains("sendData-Webhook") || self.text.contains("generateJwtToken")) {
            return None;
        }
        step(field(&self.text, "message")?, field(&self.text, "statusCode"), field(&self.text, "url"))
    }
}

/// One webhook step from its message (and the `statusCode` and `url` fields when there).
fn step(message: String, status_field: Option<String>, url: Option<String>) -> Option<WebhookStep> {
    let outcome = if message.starts_with("Tentativa ") {
        Outcome::Retry
    } else if message.starts_with("Erro não recuperável") {
        Outcome::NotRetryable
    } else if message.starts_with("Todas as tentativas falharam") {
        Outcome::GaveUp
    } else if message.starts_with("JWT generation failed") {
        Outcome::Jwt
    } else if message.starts_with("Sucesso no envio") {
        Outcome::Recovered
    } else {
        return None;
    };
    let status = status_field
        .and_then(|s| s.parse().ok())
        .or_else(|| STATUS_IN_TEXT.captures(&message).and_then(|c| c[1].parse().ok()));
    Some(WebhookStep { outcome, status, message, url })
}

/// A top-level `key: value` of a logged object (quotes and the trailing comma dropped).
fn field(text: &str, key: &str) -> Option<String> {
    let prefix = format!("  {key}: ");
    text.lines().find_map(|line| {
        let value = line.strip_prefix(&prefix)?.trim_end().trim_end_matches(',');
        let value = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(value);
        Some(value.to_owned())
    })
}

/// What one webhook record says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookStep {
    pub outcome: Outcome,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The record's message, as logged (Portuguese).
    pub message: String,
    pub url: Option<String>,
}

/// The steps of 2.3.7's webhook retry loop (`webhook.controller.ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// `Tentativa N/M falhou`: one try failed, another follows.
    Retry,
    /// `Erro não recuperável (S)`: a 400/401/403/404/422, no more tries.
    NotRetryable,
    /// `Todas as tentativas falharam`: the delivery is lost.
    GaveUp,
    /// `JWT generation failed`: the `jwt_key` cannot sign, nothing of the instance is sent.
    Jwt,
    /// `Sucesso no envio após N tentativas`: delivered after retries.
    Recovered,
}

/// `status code 500` or `(401)` in a message.
static STATUS_IN_TEXT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:status code |\()([1-5]\d\d)\b").expect("static regex"));
/// ANSI escape sequences (CSI and OSC) and other control characters but tab.
static CONTROL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b.?|[\x00-\x08\x0b-\x1f\x7f]")
        .expect("static regex")
});
/// Secret-bearing fields in inspect or JSON form: `apikey: 'X'`, `"apikey":"X"`, `jwt_key`,
/// `Authorization: Bearer X`.
static SECRET_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(["']?(?:apikey|api_key|jwt_key|authorization|token)["']?\s*[:=]\s*["']?)(?:Bearer\s+)?[^\s"',}]+"#,
    )
    .expect("static regex")
});
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]+").expect("static regex"));
/// An Evolution header: `[Evolution API] [instance] v2.3.7 PID - date   LEVEL  [Context] …`.
static HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[Evolution API\].*?\s(LOG|INFO|WARN|ERROR|DEBUG|VERBOSE|DARK)\s+\[([^\]]+)\]").expect("static regex")
});
/// A pino JSON line's numeric level.
static PINO_LEVEL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"^\{"level":(\d+)"#).expect("static regex"));

/// `text` without colours or control characters, with secret field values replaced.
pub fn clean(text: &str) -> String {
    let text = CONTROL.replace_all(text, "");
    let text = SECRET_FIELD.replace_all(&text, "${1}[redacted]");
    BEARER.replace_all(&text, "Bearer [redacted]").into_owned()
}

/// Put each stream's lines back into records, oldest first (lines in time order per stream).
pub fn assemble(lines: &[LogLine]) -> Vec<Record> {
    let mut records: Vec<Record> = Vec::new();
    // The record each stream is adding lines to (an index into `records`).
    let mut open: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for line in lines {
        let text = clean(&line.message);
        let header = HEADER.captures(&text).map(|c| (c[1].to_owned(), c[2].to_owned()));
        let pino = PINO_LEVEL.captures(&text).and_then(|c| c[1].parse::<u32>().ok());
        let starts = header.is_some() || pino.is_some();
        match open.get(line.stream.as_str()) {
            Some(&index) if !starts => {
                let record = &mut records[index];
                record.text.push('\n');
                record.text.push_str(&text);
            }
            _ => {
                let (level, context) = match (header, pino) {
                    (Some((level, context)), _) => (Some(level), Some(context)),
                    (None, Some(level)) => (Some(pino_level(level).to_owned()), None),
                    (None, None) => (None, None),
                };
                records.push(Record {
                    stream: line.stream.clone(),
                    timestamp_ms: line.timestamp_ms,
                    level,
                    context,
                    text,
                });
                if starts {
                    open.insert(&line.stream, records.len() - 1);
                } else {
                    open.remove(line.stream.as_str());
                }
            }
        }
    }
    records.sort_by_key(|r| r.timestamp_ms);
    records
}

/// pino's numeric levels as words.
fn pino_level(level: u32) -> &'static str {
    match level {
        60.. => "FATAL",
        50..=59 => "ERROR",
        40..=49 => "WARN",
        30..=39 => "INFO",
        20..=29 => "DEBUG",
        _ => "TRACE",
    }
}

/// The CloudWatch filter pattern that finds the lines of webhook delivery records that say
/// what happened (each message line carries its status: `… status code 500`, `(401)`), and the
/// `url:` and `instance:` lines that say whose they are: a failure record names its URL (with
/// the `byEvents` suffix) after its message, and the per-send dump (`LOG_LEVEL` with
/// `WEBHOOKS`, the image's default) names the URL and then the instance.
pub const WEBHOOK_PATTERN: &str = "?\"Tentativa \" ?\"Erro não recuperável\" ?\"Todas as tentativas falharam\" ?\"JWT generation failed\" ?\"Sucesso no envio\" ?\"url: '\" ?\"instance: '\"";

/// One thing Evolution's log says about a webhook: a delivery step, or a send (the dump it
/// writes before each POST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    Step(WebhookStep),
    Send { url: String, instance: Option<String> },
}

/// A [`Logged`] with the stream and time of its first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub stream: String,
    pub timestamp_ms: i64,
    pub logged: Logged,
}

/// Puts webhook records back together from their lines, whole or as [`WEBHOOK_PATTERN`] picks
/// them: a step's message line takes the next top-level `url:` line of its stream (2.3.7 logs
/// the URL after the message; a `JWT generation failed` record has none, and names no instance
/// either), and a `url:` line with no step waiting is a send whose `instance:` line follows.
/// A record's lines are written at once, so they are consecutive in their stream. Lines are fed
/// in time order, possibly over several reads (a step waits for its URL across them).
#[derive(Debug, Default)]
pub struct Stitcher {
    streams: std::collections::HashMap<String, Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    step: Option<(i64, WebhookStep)>,
    send: Option<(i64, String)>,
}

impl Stitcher {
    /// Feed one line; the events it completes.
    pub fn push(&mut self, line: &LogLine) -> Vec<WebhookEvent> {
        let text = clean(&line.message);
        let pending = self.streams.entry(line.stream.clone()).or_default();
        let mut out = Vec::new();
        let event =
            |timestamp_ms: i64, logged: Logged| WebhookEvent { stream: line.stream.clone(), timestamp_ms, logged };
        if HEADER.is_match(&text) || PINO_LEVEL.is_match(&text) {
            // A new record: whatever waited belonged to the last one.
            if let Some((at, step)) = pending.step.take() {
                out.push(event(at, Logged::Step(step)));
            }
            pending.send = None;
        } else if let Some(message) = field(&text, "message") {
            if let Some((at, step)) = pending.step.take() {
                out.push(event(at, Logged::Step(step)));
            }
            pending.send = None;
            match step(message, field(&text, "statusCode"), None) {
                Some(step) if step.outcome == Outcome::Jwt => out.push(event(line.timestamp_ms, Logged::Step(step))),
                Some(step) => pending.step = Some((line.timestamp_ms, step)),
                None => {}
            }
        } else if let Some(url) = field(&text, "url") {
            match pending.step.take() {
                Some((at, mut step)) => {
                    step.url = Some(url);
                    out.push(event(at, Logged::Step(step)));
                }
                None => pending.send = Some((line.timestamp_ms, url)),
            }
        } else if let Some(instance) = field(&text, "instance")
            && let Some((at, url)) = pending.send.take()
        {
            out.push(event(at, Logged::Send { url, instance: Some(instance) }));
        }
        out
    }

    /// The steps still waiting for a URL, as they are (at the end of everything read).
    pub fn finish(self) -> Vec<WebhookEvent> {
        let mut out: Vec<WebhookEvent> = self
            .streams
            .into_iter()
            .flat_map(|(stream, pending)| {
                let send = pending.send.map(|(at, url)| WebhookEvent {
                    stream: stream.clone(),
                    timestamp_ms: at,
                    logged: Logged::Send { url, instance: None },
                });
                let step = pending.step.map(|(at, step)| WebhookEvent {
                    stream: stream.clone(),
                    timestamp_ms: at,
                    logged: Logged::Step(step),
                });
                step.into_iter().chain(send)
            })
            .collect();
        out.sort_by_key(|e| e.timestamp_ms);
        out
    }
}

/// Every webhook event of `lines` (time order), see [`Stitcher`].
pub fn webhook_events(lines: &[LogLine]) -> Vec<WebhookEvent> {
    let mut stitcher = Stitcher::default();
    let mut out: Vec<WebhookEvent> = lines.iter().flat_map(|line| stitcher.push(line)).collect();
    out.extend(stitcher.finish());
    out.sort_by_key(|e| e.timestamp_ms);
    out
}

/// Whose webhook records count: one instance's. 2.3.7's failure records name the URL they
/// posted to but not the instance, its JWT failures name neither, and one server logs every
/// instance's; so a record is the instance's when its URL is the instance's webhook URL (with
/// the event suffix under `byEvents`) and the send that went to that URL last in its stream
/// (whose dump names the instance) was the instance's, and a JWT failure is the instance's only
/// when its own `jwt_key` cannot sign.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub instance: &'a str,
    /// The instance's webhook URL (`None`: it has no webhook, so nothing is sent for it).
    pub url: Option<&'a str>,
    pub by_events: bool,
    /// Its `jwt_key` header is there but empty or not a string (2.3.7 then fails to sign).
    pub jwt_fails: bool,
}

impl Scope<'_> {
    /// Whether `url` is where this instance's webhook posts.
    pub fn owns_url(&self, url: &str) -> bool {
        let Some(base) = self.url else { return false };
        if !self.by_events {
            return url == base;
        }
        url.strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|event| !event.is_empty() && !event.contains('/'))
    }
}

/// A send this long ago with no failure logged for it was delivered: 2.3.7 logs a failed try
/// at the latest when the request times out (`WEBHOOK_REQUEST_TIMEOUT_MS`, 60 s in the image's
/// `.env`).
pub const SEND_SETTLED: std::time::Duration = std::time::Duration::from_secs(65);

/// One instance's webhook deliveries of a window, summed up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WebhookFailures {
    /// Failed tries that were retried.
    pub retries: usize,
    /// Deliveries ended by a non-retryable status.
    pub not_retryable: usize,
    /// Deliveries given up after every try.
    pub gave_up: usize,
    /// JWT generation failures (an empty or unusable jwt_key).
    pub jwt: usize,
    /// Deliveries that succeeded after retries.
    pub recovered: usize,
    /// Sends of the instance (its dumps; none when `LOG_LEVEL` lacks `WEBHOOKS`).
    pub sends: usize,
    /// Webhook steps of the window that are other instances' (not counted above).
    pub others: usize,
    /// The last status a receiver answered with, if any did.
    pub last_status: Option<u16>,
    /// The last failure's message (as logged).
    pub last_message: Option<String>,
    /// The last step's outcome.
    pub last_outcome: Option<Outcome>,
    pub last_at_ms: Option<i64>,
    pub last_url: Option<String>,
    /// When the last failure was logged.
    pub last_failure_ms: Option<i64>,
    /// The first success after the last failure: a `Sucesso no envio`, or a send that settled
    /// with no failure logged for it.
    pub recovered_at_ms: Option<i64>,
}

impl WebhookFailures {
    /// Sum up `scope`'s events (time order) of a window read at `read_at_ms`.
    pub fn of_instance(events: &[WebhookEvent], scope: Scope<'_>, read_at_ms: i64) -> WebhookFailures {
        let mut out = WebhookFailures::default();
        // The instance of the last send to each URL, per stream.
        let mut last_sender: std::collections::HashMap<(&str, &str), Option<&str>> = std::collections::HashMap::new();
        let mut successes: Vec<i64> = Vec::new();
        let mut my_sends: Vec<(&str, &str, i64)> = Vec::new();
        let mut my_failures: Vec<(&str, Option<&str>, i64)> = Vec::new();
        for event in events {
            let step = match &event.logged {
                Logged::Send { url, instance } => {
                    last_sender.insert((event.stream.as_str(), url.as_str()), instance.as_deref());
                    if scope.owns_url(url) && instance.as_deref().is_none_or(|i| i == scope.instance) {
                        out.sends += 1;
                        my_sends.push((event.stream.as_str(), url.as_str(), event.timestamp_ms));
                    }
                    continue;
                }
                Logged::Step(step) => step,
            };
            let mine = match (&step.outcome, step.url.as_deref()) {
                (Outcome::Jwt, _) => scope.jwt_fails,
                (_, Some(url)) => {
                    scope.owns_url(url)
                        && last_sender
                            .get(&(event.stream.as_str(), url))
                            .copied()
                            .flatten()
                            .is_none_or(|sender| sender == scope.instance)
                }
                (_, None) => false,
            };
            if !mine {
                out.others += 1;
                continue;
            }
            match step.outcome {
                Outcome::Retry => out.retries += 1,
                Outcome::NotRetryable => out.not_retryable += 1,
                Outcome::GaveUp => out.gave_up += 1,
                Outcome::Jwt => out.jwt += 1,
                Outcome::Recovered => out.recovered += 1,
            }
            if step.status.is_some() {
                out.last_status = step.status;
            }
            out.last_outcome = Some(step.outcome);
            out.last_at_ms = Some(event.timestamp_ms);
            if step.url.is_some() {
                out.last_url.clone_from(&step.url);
            }
            if step.outcome == Outcome::Recovered {
                successes.push(event.timestamp_ms);
            } else {
                out.last_message = Some(step.message.clone());
                out.last_failure_ms = Some(event.timestamp_ms);
                my_failures.push((event.stream.as_str(), step.url.as_deref(), event.timestamp_ms));
            }
        }
        let settle = SEND_SETTLED.as_millis() as i64;
        for (stream, url, at) in my_sends {
            let failed =
                my_failures.iter().any(|(s, u, t)| *s == stream && *u == Some(url) && (at..=at + settle).contains(t));
            if !failed && read_at_ms - at >= settle {
                successes.push(at);
            }
        }
        successes.sort_unstable();
        out.recovered_at_ms = match out.last_failure_ms {
            Some(failed) => successes.into_iter().find(|t| *t > failed),
            None => None,
        };
        out
    }

    /// Every failure counted (a recovery is none).
    pub fn failures(&self) -> usize {
        self.retries + self.not_retryable + self.gave_up + self.jwt
    }

    /// Deliveries lost (given up, or never sent). A refused delivery is also logged as given
    /// up (`Erro não recuperável` then `Todas as tentativas falharam`), so it counts once.
    pub fn lost(&self) -> usize {
        self.gave_up.max(self.not_retryable) + self.jwt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real server's log files (../shared/fixtures), one event per line, one stream.
    fn fixture(name: &str) -> Vec<LogLine> {
        let path = format!("{}/../shared/fixtures/evolution-2.3.7/logs/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines()
            .enumerate()
            .map(|(i, line)| LogLine {
                stream: "EvolutionService/EvolutionService/f00d".into(),
                timestamp_ms: i as i64,
                message: line.into(),
                event_id: i.to_string(),
            })
            .collect()
    }

    fn count(lines: &[LogLine], needle: &str) -> usize {
        lines.iter().filter(|l| l.message.contains(needle)).count()
    }

    /// The scope of the instance the real logs were recorded with.
    fn recorded(instance: &'static str) -> Scope<'static> {
        Scope { instance, url: Some("http://127.0.0.1:18999/hook"), by_events: true, jwt_fails: false }
    }

    /// The lines of `lines` a FilterLogEvents with [`WEBHOOK_PATTERN`] returns (any of its terms).
    fn filtered(lines: &[LogLine]) -> Vec<LogLine> {
        let terms: Vec<&str> =
            WEBHOOK_PATTERN.split('?').map(|t| t.trim().trim_matches('"')).filter(|t| !t.is_empty()).collect();
        lines.iter().filter(|l| terms.iter().any(|t| l.message.contains(t))).cloned().collect()
    }

    #[test]
    fn the_real_401_log_reads_as_not_retryable_deliveries_with_their_status() {
        let lines = fixture("server-log-webhook-401.txt");
        let records = assemble(&lines);
        // Every header line starts a record; nothing else does.
        assert_eq!(records.len(), count(&lines, "[Evolution API]"));
        let failures = WebhookFailures::of_instance(&webhook_events(&lines), recorded("alinhou-production"), 0);
        assert_eq!(failures.not_retryable, count(&lines, "Erro não recuperável (401)"));
        assert_eq!(failures.gave_up, count(&lines, "Todas as tentativas falharam"));
        assert!(failures.not_retryable > 0);
        assert_eq!((failures.retries, failures.jwt, failures.recovered, failures.others), (0, 0, 0, 0));
        let dumps = lines.iter().filter(|l| l.message.starts_with("  instance: 'alinhou-production'")).count();
        assert_eq!(failures.sends, dumps);
        assert_eq!(failures.last_status, Some(401));
        assert_eq!(failures.last_url.as_deref(), Some("http://127.0.0.1:18999/hook/connection-update"));
        assert_eq!(failures.recovered_at_ms, None, "nothing got through after the last refusal");
        let webhook = records.iter().filter(|r| r.kind() == Some(Kind::Webhook)).count();
        assert_eq!(webhook, failures.failures());
        assert!(records.iter().filter(|r| r.is(Kind::Webhook)).all(|r| r.is(Kind::Error)));
        // The per-send dumps (LOG level) are neither webhook failures nor errors.
        let dumps = records.iter().filter(|r| r.level.as_deref() == Some("LOG")).count();
        assert_eq!(dumps, lines.iter().filter(|l| l.message.contains("  LOG  [WebhookController]")).count());
        assert!(records.iter().filter(|r| r.level.as_deref() == Some("LOG")).all(|r| r.kind().is_none()));
    }

    #[test]
    fn the_real_500_log_reads_as_retries_with_their_status_then_recoveries() {
        let lines = fixture("server-log-webhook-500.txt");
        let failures = WebhookFailures::of_instance(&webhook_events(&lines), recorded("alinhou-production"), 0);
        assert_eq!(failures.retries, count(&lines, "falhou: Request failed with status code 500"));
        assert_eq!(failures.recovered, count(&lines, "Sucesso no envio"));
        assert!(failures.retries > 0 && failures.recovered > 0);
        assert_eq!(failures.lost(), 0);
        assert_eq!(failures.last_status, Some(500));
        // The log ends with deliveries that got through after their retries.
        let last_failure = lines.iter().rposition(|l| l.message.contains("falhou: ")).unwrap();
        let next_success =
            lines.iter().skip(last_failure).position(|l| l.message.contains("Sucesso no envio")).unwrap();
        assert!(
            failures
                .recovered_at_ms
                .is_some_and(|at| at > last_failure as i64 && at <= (last_failure + next_success) as i64)
        );
    }

    #[test]
    fn message_lines_alone_read_as_the_same_steps() {
        let lines = fixture("server-log-webhook-401.txt");
        let whole = WebhookFailures::of_instance(&webhook_events(&lines), recorded("alinhou-production"), 0);
        let alone = filtered(&lines);
        assert!(alone.len() < lines.len() / 2, "the pattern picks a few lines of each record");
        let alone = WebhookFailures::of_instance(&webhook_events(&alone), recorded("alinhou-production"), 0);
        assert_eq!(alone, whole);
    }

    /// A JWT failure as 2.3.7 logs it (`generateJwtToken`): no URL, no instance.
    const JWT_FAILURE: &str = "[Evolution API]  19095 - Tue Dec 01 2026 20:46:00   ERROR  [WebhookController] [object] {\n  local: 'WebhookController.generateJwtToken',\n  message: 'JWT generation failed: secretOrPrivateKey must have a value'\n}";

    #[test]
    fn one_servers_log_of_two_instances_counts_each_its_own() {
        // One stream (one server): production refused with 401, then an instance with an empty
        // jwt_key failing to sign, then a third on the same URL retrying 500s.
        let mut lines = fixture("server-log-webhook-401.txt");
        let offset = lines.len() as i64;
        for (i, text) in JWT_FAILURE.lines().cycle().take(4 * 4).enumerate() {
            lines.push(LogLine {
                stream: lines[0].stream.clone(),
                timestamp_ms: offset + i as i64,
                message: text.into(),
                event_id: format!("jwt{i}"),
            });
        }
        let offset = lines.len() as i64;
        for (i, mut line) in fixture("server-log-webhook-500.txt").into_iter().enumerate() {
            line.message = line.message.replace("'alinhou-production'", "'other'");
            line.timestamp_ms = offset + i as i64;
            lines.push(line);
        }
        let production_alone = fixture("server-log-webhook-401.txt");
        let alone = WebhookFailures::of_instance(&webhook_events(&production_alone), recorded("alinhou-production"), 0);
        for lines in [lines.clone(), filtered(&lines)] {
            let events = webhook_events(&lines);
            let production = WebhookFailures::of_instance(&events, recorded("alinhou-production"), 0);
            assert_eq!(
                (
                    production.not_retryable,
                    production.gave_up,
                    production.retries,
                    production.jwt,
                    production.recovered
                ),
                (alone.not_retryable, alone.gave_up, 0, 0, 0),
                "production counts its own refusals only"
            );
            assert_eq!(production.last_status, Some(401));
            assert!(production.others > 0);
            let broken_key = WebhookFailures::of_instance(
                &events,
                Scope {
                    instance: "emptyjwt",
                    url: Some("http://127.0.0.1:18999/hook"),
                    by_events: true,
                    jwt_fails: true,
                },
                0,
            );
            assert_eq!((broken_key.jwt, broken_key.not_retryable, broken_key.retries), (4, 0, 0));
            let other = WebhookFailures::of_instance(&events, recorded("other"), 0);
            let other_lines = fixture("server-log-webhook-500.txt");
            assert_eq!(other.retries, count(&other_lines, "falhou: Request failed with status code 500"));
            assert_eq!((other.not_retryable, other.jwt), (0, 0));
        }
    }

    #[test]
    fn a_send_that_settled_without_a_failure_is_a_recovery() {
        let line = |at: i64, text: &str| LogLine {
            stream: "s/t".into(),
            timestamp_ms: at,
            message: text.into(),
            event_id: at.to_string(),
        };
        let lines = [
            line(
                0,
                "  message: 'Erro não recuperável (401): Request failed with status code 401. Cancelando retentativas.',",
            ),
            line(0, "  url: 'http://h/hook/messages-upsert',"),
            line(1_000, "  url: 'http://h/hook/messages-upsert',"),
            line(1_000, "  instance: 'p',"),
        ];
        let scope = Scope { instance: "p", url: Some("http://h/hook"), by_events: true, jwt_fails: false };
        let events = webhook_events(&lines);
        let settle = SEND_SETTLED.as_millis() as i64;
        assert_eq!(WebhookFailures::of_instance(&events, scope, 1_000 + settle - 1).recovered_at_ms, None);
        assert_eq!(WebhookFailures::of_instance(&events, scope, 1_000 + settle).recovered_at_ms, Some(1_000));
        let elsewhere = Scope { url: Some("http://h/other"), ..scope };
        assert_eq!(
            WebhookFailures::of_instance(&events, elsewhere, 1_000 + settle),
            WebhookFailures { others: 1, ..Default::default() }
        );
    }

    #[test]
    fn colours_and_control_characters_go_and_secret_fields_are_redacted() {
        let coloured = "\x1b[1m\x1b[31m[Evolution API]\x1b[0m \x1b[1m\x1b[31m [x] \x1b[1m\x1b[31m v2.3.7 \x1b[1m\x1b[31m 42 \x1b[0m \x1b[1m\x1b[31m - \x1b[1m\x1b[37m Tue Dec 01 2026 20:44:34   \x1b[0m \x1b[31m\x1b[41m\x1b[1m ERROR \x1b[0m \x1b[33m\x1b[1m [WebhookController]\x1b[0m";
        let lines =
            [LogLine { stream: "a/b/t1".into(), timestamp_ms: 1, message: coloured.into(), event_id: "1".into() }];
        let records = assemble(&lines);
        assert_eq!(records[0].level.as_deref(), Some("ERROR"));
        assert_eq!(records[0].context.as_deref(), Some("WebhookController"));
        assert!(!records[0].text.contains('\x1b'));
        assert_eq!(clean("  apikey: 'B871BFCD-A3CC',"), "  apikey: '[redacted]',");
        assert_eq!(clean(r#"{"apikey":"abc123","x":1}"#), r#"{"apikey":"[redacted]","x":1}"#);
        assert_eq!(clean("Authorization: Bearer eyJhbGci.eyJpYXQ.sig"), "Authorization: [redacted]");
        assert_eq!(clean("sent Bearer eyJhbGci.eyJpYXQ.sig"), "sent Bearer [redacted]");
        assert_eq!(clean("bell\x07 and \x1b]0;title\x07 gone\tkept"), "bell and  gone\tkept");
    }

    #[test]
    fn a_pino_conflict_line_is_a_conflict_error_record() {
        let line = r#"{"level":50,"time":1,"node":{"tag":"stream:error","content":[{"tag":"conflict","attrs":{"type":"replaced"}}]},"msg":"stream errored out"}"#;
        let records = assemble(&[LogLine {
            stream: "p/c/task9".into(),
            timestamp_ms: 5,
            message: line.into(),
            event_id: String::new(),
        }]);
        assert_eq!(records[0].kind(), Some(Kind::Conflict));
        assert!(records[0].is(Kind::Error));
        assert_eq!(records[0].task(), "task9");
    }
}
