//! `evoctl logs ENV [--since 15m] [--follow] [--grep RE] [--kind KIND]`: the Evolution
//! container's log from its awslogs group, newest last, each line with its task id; records
//! (a logged object's lines together) are what `--kind` and `--grep` pick. `--follow` polls
//! FilterLogEvents every second from the last event seen until Ctrl-C (exit 130).
//!
//! Following by polling, not CloudWatch Live Tail: StartLiveTail is billed per session minute,
//! needs `logs:StartLiveTail`, and its endpoint carries a `streaming-` host prefix that an
//! `AWS_ENDPOINT_URL` (a VPC endpoint, a rehearsal lab) does not have; one FilterLogEvents a
//! second shows a new line within about two seconds of CloudWatch taking it.

use super::Context;
use crate::aws::discovery::ServiceRef;
use crate::aws::logs::{self, LogLine, Window};
use crate::cli::LogsArgs;
use crate::error::Result;
use crate::evolution::logs::{Kind, Outcome, Record, assemble};
use crate::exit;
use crate::output::Style;
use serde::Serialize;
use std::collections::HashSet;
use std::time::Duration;

/// Time between two reads while following.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// One record as `--output json` prints it (one object per line).
#[derive(Debug, Serialize)]
struct LogRecord<'a> {
    schema: &'static str,
    time: String,
    timestamp_ms: i64,
    task: &'a str,
    stream: &'a str,
    level: Option<&'a str>,
    context: Option<&'a str>,
    kind: Option<Kind>,
    /// A webhook step's outcome and the receiver's status.
    webhook: Option<WebhookFields>,
    message: &'a str,
}

#[derive(Debug, Serialize)]
struct WebhookFields {
    outcome: Outcome,
    status: Option<u16>,
}

pub async fn run(context: &Context, args: &LogsArgs) -> Result<u8> {
    let config = context.config()?;
    let env = config.environment(&args.env)?;
    let aws = context.aws_for(&config, env).await?;
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    let group = logs::log_group(&aws.ecs(), target, &env.container).await?;
    let client = aws.logs();
    // A conflict record is one line (pino JSON), so CloudWatch can pick it; every other kind
    // needs the lines around its message.
    let pattern = if args.kind == Some(Kind::Conflict) { "\"stream errored out\"" } else { "" };
    let start_ms = logs::now_ms() - args.since.as_millis() as i64;
    let read = logs::read(&client, Window { group: &group, pattern, start_ms, limit: args.limit as usize }).await?;
    if read.truncated {
        let at = read.lines.last().map(|l| stamp(l.timestamp_ms)).unwrap_or_default();
        context.printer.warn(&format!(
            "the window holds more than {} events: shown up to {at}; narrow --since or raise --limit",
            args.limit
        ));
    }
    let shown = print(context, args, &read.lines);
    if !args.follow {
        if shown == 0 && !context.global.quiet {
            let what = args.kind.map(|k| format!(" {k:?}").to_lowercase()).unwrap_or_default();
            context.printer.note(&format!("no{what} lines in {group} in the last {}", human(args.since)));
        }
        return Ok(exit::OK);
    }
    context.printer.note(&format!("following {group} (Ctrl-C to stop)"));
    let mut cursor = Cursor::after(&read.lines, start_ms);
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let window = Window { group: &group, pattern, start_ms: cursor.from_ms, limit: args.limit as usize };
        let read = match logs::read(&client, window).await {
            Ok(read) => read,
            // A failed poll (throttling past the retries, a network blip) is said and retried.
            Err(err) => {
                context.printer.warn(&format!("reading {group} failed, retrying: {err}"));
                continue;
            }
        };
        let fresh = cursor.take_new(read.lines);
        print(context, args, &fresh);
        context.printer.stdout_room().await?;
    }
}

/// Where following goes on from: the last timestamp seen, and the events seen at it (a poll
/// asks from that millisecond again, so events that share it are not lost, nor shown twice).
struct Cursor {
    from_ms: i64,
    seen_at_from: HashSet<String>,
}

impl Cursor {
    fn after(lines: &[LogLine], start_ms: i64) -> Cursor {
        let mut cursor = Cursor { from_ms: start_ms, seen_at_from: HashSet::new() };
        cursor.advance(lines);
        cursor
    }

    fn advance(&mut self, lines: &[LogLine]) {
        let Some(last) = lines.iter().map(|l| l.timestamp_ms).max() else { return };
        if last > self.from_ms {
            self.from_ms = last;
            self.seen_at_from.clear();
        }
        self.seen_at_from.extend(lines.iter().filter(|l| l.timestamp_ms == last).map(key));
    }

    fn take_new(&mut self, lines: Vec<LogLine>) -> Vec<LogLine> {
        let fresh: Vec<LogLine> = lines
            .into_iter()
            .filter(|l| l.timestamp_ms > self.from_ms || !self.seen_at_from.contains(&key(l)))
            .collect();
        self.advance(&fresh);
        fresh
    }
}

/// An event's identity: CloudWatch's id, else what it is.
fn key(line: &LogLine) -> String {
    if line.event_id.is_empty() {
        format!("{}\u{0}{}\u{0}{}", line.stream, line.timestamp_ms, line.message)
    } else {
        line.event_id.clone()
    }
}

/// Print the records of `lines` that `--kind` and `--grep` pick; how many were printed.
fn print(context: &Context, args: &LogsArgs, lines: &[LogLine]) -> usize {
    let records = assemble(lines);
    let picked: Vec<&Record> = records
        .iter()
        .filter(|r| args.kind.is_none_or(|kind| r.is(kind)))
        .filter(|r| args.grep.as_ref().is_none_or(|re| re.is_match(&r.text)))
        .collect();
    for record in &picked {
        match context.printer.format() {
            crate::output::OutputFormat::Json => context.printer.json_line(&LogRecord {
                schema: "evoctl.log/v1",
                time: stamp(record.timestamp_ms),
                timestamp_ms: record.timestamp_ms,
                task: record.task(),
                stream: &record.stream,
                level: record.level.as_deref(),
                context: record.context.as_deref(),
                kind: record.kind(),
                webhook: record.webhook().map(|w| WebhookFields { outcome: w.outcome, status: w.status }),
                message: &record.text,
            }),
            crate::output::OutputFormat::Table => context.printer.styled(&render(record)),
        }
    }
    picked.len()
}

/// A record as lines: every line with the time and the task id in front, the line itself
/// coloured by its kind on a terminal.
fn render(record: &Record) -> Vec<Vec<(Style, String)>> {
    let prefix = format!("{} {} ", stamp(record.timestamp_ms), record.task());
    let style = match record.kind() {
        Some(Kind::Conflict | Kind::Webhook | Kind::Error) => Style::Alert,
        Some(Kind::Qr) => Style::Notice,
        None => Style::Plain,
    };
    let mut lines: Vec<Vec<(Style, String)>> =
        record.text.lines().map(|line| vec![(Style::Plain, prefix.clone()), (style, line.to_owned())]).collect();
    if lines.is_empty() {
        lines.push(vec![(Style::Plain, prefix)]);
    }
    lines
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn stamp(ms: i64) -> String {
    let time = aws_smithy_types::DateTime::from_millis(ms);
    let secs = time.fmt(aws_smithy_types::date_time::Format::DateTime).unwrap_or_default();
    // `2026-12-02T19:48:50Z` or with a fraction: always three digits of milliseconds.
    let whole = secs.split(['.', 'Z']).next().unwrap_or(&secs).to_owned();
    format!("{whole}.{:03}Z", ms.rem_euclid(1000))
}

fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, at: i64) -> LogLine {
        LogLine { stream: "a/b/t".into(), timestamp_ms: at, message: id.into(), event_id: id.into() }
    }

    #[test]
    fn following_neither_loses_nor_repeats_events_that_share_a_millisecond() {
        let mut cursor = Cursor::after(&[line("a", 10), line("b", 20)], 0);
        // The next poll asks from 20 again: b is not shown twice, c (also at 20) is new.
        let fresh = cursor.take_new(vec![line("b", 20), line("c", 20), line("d", 21)]);
        assert_eq!(fresh.iter().map(|l| l.event_id.as_str()).collect::<Vec<_>>(), ["c", "d"]);
        assert_eq!(cursor.take_new(vec![line("d", 21)]), []);
    }

    #[test]
    fn stamps_have_milliseconds() {
        assert_eq!(stamp(1_764_622_074_799), "2025-12-01T20:47:54.799Z");
        assert_eq!(stamp(1_764_622_074_000), "2025-12-01T20:47:54.000Z");
    }
}
