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
/// what happened (each message line carries its status: `… status code 500`, `(401)`).
pub const WEBHOOK_PATTERN: &str = "?\"Tentativa \" ?\"Erro não recuperável\" ?\"Todas as tentativas falharam\" ?\"JWT generation failed\" ?\"Sucesso no envio\"";

/// [`WEBHOOK_PATTERN`], and the `local: '….sendData-Webhook'` line of every delivery record
/// (the per-send dump `LOG_LEVEL=WEBHOOKS` writes, the image's default, and each retry record):
/// whether the window holds any delivery at all.
pub const DELIVERY_PATTERN: &str = "?\"Tentativa \" ?\"Erro não recuperável\" ?\"Todas as tentativas falharam\" ?\"JWT generation failed\" ?\"Sucesso no envio\" ?\"sendData-Webhook\"";

/// A window's webhook delivery steps, summed up.
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
    /// The last status a receiver answered with, if any did.
    pub last_status: Option<u16>,
    /// The last step's message (as logged).
    pub last_message: Option<String>,
    /// The last step's outcome.
    pub last_outcome: Option<Outcome>,
    pub last_at_ms: Option<i64>,
    pub last_url: Option<String>,
    /// Records of a delivery (`local: '….sendData-Webhook'`: a send, or a step of its retry
    /// loop), when the window was read with [`DELIVERY_PATTERN`].
    pub sends: usize,
}

impl WebhookFailures {
    /// Sum up `records` (oldest first); records that are not webhook steps are ignored.
    /// `records` may be message lines alone (read with [`WEBHOOK_PATTERN`]).
    pub fn of(records: &[Record]) -> WebhookFailures {
        let mut out = WebhookFailures::default();
        for record in records {
            if field(&record.text, "local").is_some_and(|local| local.contains("sendData-Webhook")) {
                out.sends += 1;
            }
            let Some(step) = record.webhook().or_else(|| message_line_step(&record.text)) else { continue };
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
            out.last_message = Some(step.message);
            out.last_outcome = Some(step.outcome);
            out.last_at_ms = Some(record.timestamp_ms);
            if step.url.is_some() {
                out.last_url = step.url;
            }
        }
        out
    }

    /// Every step counted.
    pub fn steps(&self) -> usize {
        self.retries + self.not_retryable + self.gave_up + self.jwt + self.recovered
    }

    /// Deliveries lost (given up, or never sent). A refused delivery is also logged as given
    /// up (`Erro não recuperável` then `Todas as tentativas falharam`), so it counts once.
    pub fn lost(&self) -> usize {
        self.gave_up.max(self.not_retryable) + self.jwt
    }
}

/// A lone `  message: '…',` line (what a filter pattern returns of a logged object).
fn message_line_step(text: &str) -> Option<WebhookStep> {
    step(field(text, "message")?, None, None)
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

    #[test]
    fn the_real_401_log_reads_as_not_retryable_deliveries_with_their_status() {
        let lines = fixture("server-log-webhook-401.txt");
        let records = assemble(&lines);
        // Every header line starts a record; nothing else does.
        assert_eq!(records.len(), count(&lines, "[Evolution API]"));
        let failures = WebhookFailures::of(&records);
        assert_eq!(failures.not_retryable, count(&lines, "Erro não recuperável (401)"));
        assert_eq!(failures.gave_up, count(&lines, "Todas as tentativas falharam"));
        assert!(failures.not_retryable > 0);
        assert_eq!((failures.retries, failures.jwt, failures.recovered), (0, 0, 0));
        assert_eq!(failures.last_status, Some(401));
        assert_eq!(failures.last_url.as_deref(), Some("http://127.0.0.1:18999/hook/connection-update"));
        let webhook = records.iter().filter(|r| r.kind() == Some(Kind::Webhook)).count();
        assert_eq!(webhook, failures.steps());
        assert!(records.iter().filter(|r| r.is(Kind::Webhook)).all(|r| r.is(Kind::Error)));
        // The per-send dumps (LOG level) are neither webhook failures nor errors.
        let dumps = records.iter().filter(|r| r.level.as_deref() == Some("LOG")).count();
        assert_eq!(dumps, lines.iter().filter(|l| l.message.contains("  LOG  [WebhookController]")).count());
        assert!(records.iter().filter(|r| r.level.as_deref() == Some("LOG")).all(|r| r.kind().is_none()));
    }

    #[test]
    fn the_real_500_log_reads_as_retries_with_their_status_then_recoveries() {
        let lines = fixture("server-log-webhook-500.txt");
        let failures = WebhookFailures::of(&assemble(&lines));
        assert_eq!(failures.retries, count(&lines, "falhou: Request failed with status code 500"));
        assert_eq!(failures.recovered, count(&lines, "Sucesso no envio"));
        assert!(failures.retries > 0 && failures.recovered > 0);
        assert_eq!(failures.lost(), 0);
        assert_eq!(failures.last_status, Some(500));
    }

    #[test]
    fn every_delivery_record_is_a_send_whether_read_whole_or_by_its_local_line() {
        let lines = fixture("server-log-webhook-500.txt");
        let whole = WebhookFailures::of(&assemble(&lines));
        assert_eq!(whole.sends, count(&lines, "  local: 'ChannelStartupService.sendData-Webhook'"));
        assert!(whole.sends > whole.steps(), "the per-send dumps and the retry records");
        let pattern_lines: Vec<LogLine> = lines
            .into_iter()
            .filter(|l| l.message.contains("sendData-Webhook") || l.message.contains("Tentativa "))
            .collect();
        assert_eq!(WebhookFailures::of(&assemble(&pattern_lines)).sends, whole.sends);
        assert_eq!(WebhookFailures::of(&[]).sends, 0);
    }

    #[test]
    fn message_lines_alone_read_as_the_same_steps() {
        let lines = fixture("server-log-webhook-401.txt");
        let whole = WebhookFailures::of(&assemble(&lines));
        let filtered: Vec<LogLine> = lines
            .into_iter()
            .filter(|l| {
                ["Tentativa ", "Erro não recuperável", "Todas as tentativas falharam"]
                    .iter()
                    .any(|t| l.message.contains(t))
            })
            .collect();
        let alone = WebhookFailures::of(&assemble(&filtered));
        assert_eq!(
            (alone.not_retryable, alone.gave_up, alone.last_status),
            (whole.not_retryable, whole.gave_up, Some(401))
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
