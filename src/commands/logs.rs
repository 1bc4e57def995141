//! `evoctl logs ENV [--since 15m] [--follow] [--grep RE] [--kind KIND]`: the Evolution
//! container's log from its awslogs group, narrowed to this environment's own streams (see
//! [`crate::aws::logs`]), newest last, each line with its task id; records (a logged object's
//! lines together) are what `--kind` and `--grep` pick. `--follow` polls FilterLogEvents every
//! second until Ctrl-C (exit 130) or a closed stdout (exit 0).
//!
//! Following by polling, not CloudWatch Live Tail: StartLiveTail is billed per session minute,
//! needs `logs:StartLiveTail`, and its endpoint carries a `streaming-` host prefix that an
//! `AWS_ENDPOINT_URL` (a VPC endpoint, a rehearsal lab) does not have; one FilterLogEvents a
//! second shows a new line within about two seconds of CloudWatch taking it.
//!
//! CloudWatch takes each stream's events when its writer sends them, so an event can arrive
//! after later ones of another stream were already shown. Every poll therefore reads again the
//! [`LOOK_BACK`] before the newest event seen and drops the events it already showed by their
//! CloudWatch event id; the ids kept are those of that window only, so memory stays bounded.
use super::Context;
use crate::aws::discovery::ServiceRef;
use crate::aws::logs::{self, LogLine, Window};
use crate::cli::LogsArgs;
use crate::error::Result;
use crate::evolution::logs::{Kind, Outcome, Record, assemble};
use crate::exit;
use crate::output::Style;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// Time between two reads while following.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How far before the newest event seen each poll reads again, for events CloudWatch takes
/// late (the awslogs driver sends every 5 s by default; a busy or throttled writer later).
/// An event that reaches CloudWatch more than this after a later event was shown is not shown.
pub const LOOK_BACK: Duration = Duration::from_secs(60);

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
    let source = logs::log_source(&aws.ecs(), target, &env.container).await?;
    let client = aws.logs();
    // A conflict record is one line (pino JSON), so CloudWatch can pick it; every other kind
    // needs the lines around its message.
    let pattern = if args.kind == Some(Kind::Conflict) { "\"stream errored out\"" } else { "" };
    let start_ms = logs::now_ms() - args.since.as_millis() as i64;
    let limit = args.limit as usize;
    let read = logs::read(&client, Window { source: &source, pattern, start_ms, limit }).await?;
    if read.truncated {
        let at = read.lines.last().map(|l| crate::timestamp::to_milli(l.timestamp_ms)).unwrap_or_default();
        context.printer.warn(&format!(
            "the window holds more than {} events: shown up to {at}; narrow --since or raise --limit",
            args.limit
        ));
    }
    let shown = print(context, args, &read.lines);
    if !args.follow {
        if shown == 0 && !context.global.quiet {
            let what = args.kind.map(|k| format!(" {k:?}").to_lowercase()).unwrap_or_default();
            context.printer.note(&format!("no{what} lines in {source} in the last {}", human(args.since)));
        }
        return Ok(exit::OK);
    }
    context.printer.note(&format!("following {source} (Ctrl-C to stop)"));
    let mut cursor = Cursor::new(start_ms);
    cursor.take_new(read.lines);
    loop {
        // A closed stdout (`| head`) ends the follow, quietly, even while nothing new comes.
        tokio::select! {
            room = context.printer.stdout_closed() => return room.map(|()| exit::OK),
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
        let window = Window { source: &source, pattern, start_ms: cursor.read_from(), limit };
        let read = match logs::read(&client, window).await {
            Ok(read) => read,
            // A failed poll (throttling past the retries, a network blip) is said and retried.
            Err(err) => {
                context.printer.warn(&format!("reading {} failed, retrying: {err}", source.group));
                continue;
            }
        };
        let fresh = cursor.take_new(read.lines);
        print(context, args, &fresh);
        context.printer.stdout_room().await?;
    }
}

/// What following has shown: the newest timestamp seen and the ids of the events of the last
/// [`LOOK_BACK`] before it (each poll reads from there again; older ids are forgotten, as no
/// poll returns their events any more).
struct Cursor {
    /// Nothing before this is read (the start of `--since`).
    floor_ms: i64,
    newest_ms: i64,
    seen: HashMap<String, i64>,
}

impl Cursor {
    fn new(start_ms: i64) -> Cursor {
        Cursor { floor_ms: start_ms, newest_ms: start_ms, seen: HashMap::new() }
    }

    /// Where the next poll reads from.
    fn read_from(&self) -> i64 {
        (self.newest_ms - LOOK_BACK.as_millis() as i64).max(self.floor_ms)
    }

    /// The events of a poll not shown before, in the poll's order; they count as shown.
    fn take_new(&mut self, lines: Vec<LogLine>) -> Vec<LogLine> {
        let fresh: Vec<LogLine> = lines.into_iter().filter(|l| !self.seen.contains_key(&key(l))).collect();
        for line in &fresh {
            self.seen.insert(key(line), line.timestamp_ms);
            self.newest_ms = self.newest_ms.max(line.timestamp_ms);
        }
        let from = self.read_from();
        self.seen.retain(|_, at| *at >= from);
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
                time: crate::timestamp::to_milli(record.timestamp_ms),
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
    let prefix = format!("{} {} ", crate::timestamp::to_milli(record.timestamp_ms), record.task());
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
        let mut cursor = Cursor::new(0);
        cursor.take_new(vec![line("a", 10), line("b", 20)]);
        // The next poll reads the same events again: b is not shown twice, c (also at 20) is new.
        let fresh = cursor.take_new(vec![line("b", 20), line("c", 20), line("d", 21)]);
        assert_eq!(fresh.iter().map(|l| l.event_id.as_str()).collect::<Vec<_>>(), ["c", "d"]);
        assert_eq!(cursor.take_new(vec![line("d", 21)]), []);
    }

    #[test]
    fn a_late_event_inside_the_look_back_is_shown_once_and_old_ids_are_forgotten() {
        let back = LOOK_BACK.as_millis() as i64;
        let mut cursor = Cursor::new(0);
        cursor.take_new(vec![line("a", 1_000), line("b", 100_000)]);
        assert_eq!(cursor.read_from(), 100_000 - back);
        // `late` was written after b was shown, with an earlier timestamp.
        let fresh = cursor.take_new(vec![line("b", 100_000), line("late", 90_000)]);
        assert_eq!(fresh, [line("late", 90_000)]);
        assert_eq!(cursor.take_new(vec![line("late", 90_000), line("b", 100_000)]), []);
        // Only the ids of the window before the newest event are kept.
        assert_eq!(
            cursor.seen.keys().collect::<std::collections::BTreeSet<_>>(),
            [&"b".to_owned(), &"late".to_owned()].into()
        );
        cursor.take_new(vec![line("c", 100_000 + back + 1)]);
        assert_eq!(cursor.seen.keys().collect::<Vec<_>>(), [&"c".to_owned()]);
    }

    #[test]
    fn following_never_reads_before_the_start_of_since() {
        let cursor = Cursor::new(5_000);
        assert_eq!(cursor.read_from(), 5_000);
    }
}
