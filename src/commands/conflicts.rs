//! `evoctl conflicts ENV [--since 15m]`: is this number in a conflict/replaced loop? Two live
//! connections for one WhatsApp number kick each other (Baileys `stream errored out` with
//! `conflict` / `replaced`, code 440) and reconnect at once; the API never shows the 440, so the
//! evidence is in the task log group. Exit 1 when a loop is found.

use super::Context;
use crate::aws::discovery::ServiceRef;
use crate::aws::logs::{self, LogLine};
use crate::cli::ConflictsArgs;
use crate::error::Result;
use crate::exit;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// At least this many replacements in the window make a loop (one stray 440 is not one).
const LOOP_THRESHOLD: usize = 3;

#[derive(Debug, Serialize)]
struct TaskEvidence {
    task: String,
    events: usize,
}

#[derive(Debug, Serialize)]
struct ConflictReport {
    schema: &'static str,
    env: String,
    log_group: String,
    since_seconds: u64,
    #[serde(rename = "loop")]
    is_loop: bool,
    events: usize,
    /// Median seconds between one task's consecutive replacements.
    period_seconds: Option<f64>,
    first_seen: Option<String>,
    last_seen: Option<String>,
    tasks: Vec<TaskEvidence>,
}

pub async fn run(context: &Context, args: &ConflictsArgs) -> Result<u8> {
    let config = context.config()?;
    let env = config.environment(&args.env)?;
    let aws = context.aws(&config).await?;
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    let group = logs::log_group(&aws.ecs(), target, &env.container).await?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let start_ms = now_ms - args.since.as_millis() as i64;
    let lines: Vec<LogLine> = logs::filter(&aws.logs(), &group, "\"stream errored out\"", start_ms)
        .await?
        .into_iter()
        .filter(|l| l.message.contains("conflict") && l.message.contains("replaced"))
        .collect();
    let mut by_task: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in &lines {
        let task = line.stream.rsplit('/').next().unwrap_or(&line.stream).to_owned();
        by_task.entry(task).or_default().push(line.timestamp_ms);
    }
    let mut gaps: Vec<i64> =
        by_task.values().flat_map(|times| times.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()).collect();
    gaps.sort_unstable();
    let period_seconds = gaps.get(gaps.len() / 2).map(|ms| (*ms as f64 / 100.0).round() / 10.0);
    let stamp = |ms: i64| {
        aws_smithy_types::DateTime::from_secs(ms / 1000).fmt(aws_smithy_types::date_time::Format::DateTime).ok()
    };
    let report = ConflictReport {
        schema: "evoctl.conflicts/v1",
        env: env.name.clone(),
        log_group: group,
        since_seconds: args.since.as_secs(),
        is_loop: lines.len() >= LOOP_THRESHOLD,
        events: lines.len(),
        period_seconds,
        first_seen: lines.first().and_then(|l| stamp(l.timestamp_ms)),
        last_seen: lines.last().and_then(|l| stamp(l.timestamp_ms)),
        tasks: by_task.iter().map(|(task, times)| TaskEvidence { task: task.clone(), events: times.len() }).collect(),
    };
    context.printer.data(&report, || render(&report));
    if report.is_loop {
        context.printer.note(&format!(
            "fix: two live connections hold this number; find them with `evoctl status`, stop the extra task or environment (`evoctl enforce --apply`), then check again with `evoctl conflicts {}`",
            report.env
        ));
        Ok(exit::FINDINGS)
    } else {
        Ok(exit::OK)
    }
}

fn render(report: &ConflictReport) -> String {
    let window = format!("{}m", report.since_seconds / 60);
    if report.events == 0 {
        return format!("no conflict/replaced lines in {} in the last {window}: no loop\n", report.log_group);
    }
    let tasks: Vec<String> = report.tasks.iter().map(|t| format!("{} ({})", t.task, t.events)).collect();
    format!(
        "conflict loop: {}\nevents:  {} conflict/replaced lines in the last {window}\nperiod:  {}\nfirst:   {}\nlast:    {}\ntasks:   {}\n",
        if report.is_loop { "YES" } else { "no (isolated replacements)" },
        report.events,
        report.period_seconds.map(|p| format!("about every {p:.1} s per task")).unwrap_or_else(|| "-".into()),
        report.first_seen.as_deref().unwrap_or("-"),
        report.last_seen.as_deref().unwrap_or("-"),
        tasks.join(", "),
    )
}
