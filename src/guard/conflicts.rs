//! Conflict-loop evidence from the environment's own streams of the task log group (a group
//! other stages or services also write to never lends them its lines). Two live connections for one WhatsApp number
//! kick each other (Baileys `stream errored out` with `conflict` / `replaced`, code 440) and
//! Evolution 2.3.7 reconnects at once; the API never shows the 440, so the evidence is in the
//! logs: how many replacements, how often, since when, and which tasks logged them.

use crate::aws::discovery::{self, LiveTask};
use crate::aws::logs::{self, LogLine, LogSource};
use crate::error::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At least this many replacements in the window make a loop (one stray 440 is not one).
pub const LOOP_THRESHOLD: usize = 3;

/// What the environment's log shows for a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictEvidence {
    /// Where it was read: `log_group` and `log_streams` in JSON.
    #[serde(flatten)]
    pub source: LogSource,
    pub since_seconds: u64,
    #[serde(rename = "loop")]
    pub is_loop: bool,
    pub events: usize,
    /// Median seconds between one task's consecutive replacements.
    pub period_seconds: Option<f64>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// The last line's time (ms since the Unix epoch).
    #[serde(skip)]
    pub last_seen_ms: Option<i64>,
    /// When the window was read (ms since the Unix epoch).
    #[serde(skip)]
    pub read_at_ms: i64,
    pub tasks: Vec<TaskEvidence>,
}

/// A loop whose last line is older than this (or than five of its periods, when longer) has
/// ended: the replaced socket reconnects at once, so a loop that goes on logs every few seconds,
/// and CloudWatch has the line within seconds.
pub const QUIET_AFTER: Duration = Duration::from_secs(30);

impl ConflictEvidence {
    /// A loop is in the window and its last line was recent when it was read: it goes on (as
    /// far as the log says).
    pub fn goes_on(&self) -> bool {
        let quiet = (QUIET_AFTER.as_secs_f64()).max(5.0 * self.period_seconds.unwrap_or(0.0));
        self.is_loop && self.last_seen_ms.is_some_and(|last| (self.read_at_ms - last) as f64 <= quiet * 1000.0)
    }

    /// [`Self::goes_on`], unless a task that logged the loop is no longer live and at most one
    /// is: the loop ended with that task (its last lines may still be arriving).
    pub fn goes_on_with(&self, live: &[LiveTask]) -> bool {
        let is_live = |logged: &str| live.iter().any(|t| logged == t.id || logged.starts_with(&format!("{}-", t.id)));
        let ended_with_a_task = live.len() <= 1 && self.tasks.iter().any(|t| !is_live(&t.task));
        self.goes_on() && !ended_with_a_task
    }

    /// When the last line leaves the window (a loop that ended is no longer reported then).
    pub fn clears_at(&self) -> Option<String> {
        self.last_seen_ms.and_then(|last| crate::timestamp::to_second(last + self.since_seconds as i64 * 1000))
    }
}

/// Replacements logged by one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskEvidence {
    pub task: String,
    pub events: usize,
}

/// Read the environment's conflict/replaced lines of the last `since`.
pub async fn read(
    logs_client: &aws_sdk_cloudwatchlogs::Client,
    source: &LogSource,
    since: Duration,
) -> Result<ConflictEvidence> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let start_ms = now_ms - since.as_millis() as i64;
    let lines = logs::filter(logs_client, source, "\"stream errored out\"", start_ms).await?;
    Ok(ConflictEvidence { read_at_ms: now_ms, ..analyse(source, since, &lines) })
}

/// Summarise the lines (oldest first); lines that are not conflict/replaced are ignored.
pub fn analyse(source: &LogSource, since: Duration, lines: &[LogLine]) -> ConflictEvidence {
    let lines: Vec<&LogLine> =
        lines.iter().filter(|l| l.message.contains("conflict") && l.message.contains("replaced")).collect();
    let mut by_task: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in &lines {
        let task = line.stream.rsplit('/').next().unwrap_or(&line.stream).to_owned();
        by_task.entry(task).or_default().push(line.timestamp_ms);
    }
    let mut gaps: Vec<i64> = by_task.values().flat_map(|times| times.windows(2).map(|w| w[1] - w[0])).collect();
    gaps.sort_unstable();
    let period_seconds = gaps
        .get(gaps.len() / 2)
        .map(|ms| crate::output::seconds(Duration::from_millis(u64::try_from(*ms).unwrap_or(0))));
    ConflictEvidence {
        source: source.clone(),
        since_seconds: since.as_secs(),
        is_loop: lines.len() >= LOOP_THRESHOLD,
        events: lines.len(),
        period_seconds,
        first_seen: lines.first().and_then(|l| crate::timestamp::to_second(l.timestamp_ms)),
        last_seen: lines.last().and_then(|l| crate::timestamp::to_second(l.timestamp_ms)),
        last_seen_ms: lines.last().map(|l| l.timestamp_ms),
        read_at_ms: lines.last().map_or(0, |l| l.timestamp_ms),
        tasks: by_task.iter().map(|(task, times)| TaskEvidence { task: task.clone(), events: times.len() }).collect(),
    }
}

/// What ends a loop the environment holds both ends of: its extra task's `evoctl task stop`
/// (keeping the longest-running), or the wait for the one ECS is stopping; `None` while at most
/// one of its tasks is live (the other connection is elsewhere).
pub fn two_tasks_fix(env: &str, live: &[LiveTask]) -> Option<String> {
    if live.len() < 2 {
        return None;
    }
    discovery::stop_extra_fix(env, live, 1).map(|stop| format!("two connections hold this number: {stop}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> LogSource {
        LogSource { group: "g".into(), streams: logs::Streams::Prefix("EvolutionService/EvolutionService/".into()) }
    }

    fn line(task: &str, at: i64, message: &str) -> LogLine {
        LogLine {
            stream: format!("EvolutionService/EvolutionService/{task}"),
            timestamp_ms: at,
            message: message.into(),
            event_id: String::new(),
        }
    }

    const REPLACED: &str = r#"{"level":50,"node":{"content":[{"tag":"conflict","attrs":{"type":"replaced"}}]},"msg":"stream errored out"}"#;

    #[test]
    fn two_tasks_kicking_each_other_every_two_seconds_is_a_loop_with_that_period() {
        let lines: Vec<LogLine> =
            (0..10).map(|i| line(if i % 2 == 0 { "a" } else { "b" }, 1_000 * i, REPLACED)).collect();
        let evidence = analyse(&source(), Duration::from_secs(900), &lines);
        assert!(evidence.is_loop);
        assert_eq!(evidence.events, 10);
        assert_eq!(evidence.period_seconds, Some(2.0));
        assert_eq!(
            evidence.tasks,
            [TaskEvidence { task: "a".into(), events: 5 }, TaskEvidence { task: "b".into(), events: 5 }]
        );
    }

    #[test]
    fn a_loop_goes_on_while_its_lines_are_recent_and_its_tasks_live() {
        let lines: Vec<LogLine> =
            (0..10).map(|i| line(if i % 2 == 0 { "a" } else { "b" }, 1_000 * i, REPLACED)).collect();
        let evidence = analyse(&source(), Duration::from_secs(900), &lines);
        let live = |ids: &[&str]| -> Vec<LiveTask> { ids.iter().map(|id| LiveTask::running(id)).collect() };
        let read_at = |ms: i64| ConflictEvidence { read_at_ms: ms, ..evidence.clone() };
        assert!(read_at(9_000 + 30_000).goes_on());
        assert!(!read_at(9_000 + 30_001).goes_on(), "quiet for longer than QUIET_AFTER");
        assert!(read_at(10_000).goes_on_with(&live(&["a", "b"])));
        assert!(!read_at(10_000).goes_on_with(&live(&["a"])), "it ended with task b");
        assert_eq!(read_at(10_000).clears_at().as_deref(), Some("1970-01-01T00:15:09Z"));
    }

    #[test]
    fn two_live_tasks_of_the_environment_name_the_extra_one_and_one_names_none() {
        let two = [LiveTask::running("old"), LiveTask::running("new")];
        assert_eq!(
            two_tasks_fix("production", &two).as_deref(),
            Some(
                "two connections hold this number: stop the extra task: `evoctl task stop production new` (keeps old, the longest-running)"
            )
        );
        assert_eq!(two_tasks_fix("production", &two[..1]), None);
        assert_eq!(two_tasks_fix("production", &[]), None);
    }

    #[test]
    fn other_stream_errors_and_a_single_replacement_are_not_a_loop() {
        let lines =
            [line("a", 0, r#"{"msg":"stream errored out","node":{"tag":"stream:error"}}"#), line("a", 5, REPLACED)];
        let evidence = analyse(&source(), Duration::from_secs(900), &lines);
        assert!(!evidence.is_loop);
        assert_eq!(evidence.events, 1);
        assert_eq!(evidence.period_seconds, None);
    }
}
