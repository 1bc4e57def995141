//! `evoctl conflicts ENV [--since 15m] [--sample 5s]`: is this number in a conflict/replaced
//! loop? Two kinds of evidence, gathered at the same time: the environment's own streams of the
//! service's log group (see [`crate::guard::conflicts`]) and the instance's connectionState
//! sampled from one exec session (the live state flips between `open` and `connecting` while
//! the DB copy stays `open`). Exit 1 when either shows a loop.

use super::Context;
use crate::aws::discovery::{self, LiveTask, ServiceRef};
use crate::aws::logs;
use crate::cli::ConflictsArgs;
use crate::config::Environment;
use crate::error::Result;
use crate::evolution::Driver;
use crate::exec::run::RunOptions;
use crate::exec::target;
use crate::exit;
use crate::guard::conflicts::{self, ConflictEvidence};
use serde::Serialize;
use std::time::Duration;

/// Time between two connectionState reads while sampling.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// This many state changes while sampling make a loop (one change can be a normal reconnect).
const FLAP_THRESHOLD: usize = 2;

#[derive(Debug, Serialize)]
struct ConflictReport {
    schema: &'static str,
    env: String,
    /// Log evidence in the window, or sampled flapping.
    #[serde(rename = "loop")]
    is_loop: bool,
    /// The loop goes on: its last line is recent, or the sample flapped (exit 1).
    ongoing: bool,
    /// The live tasks of the environment now, oldest first.
    live_tasks: Vec<String>,
    /// What ends the loop (null when there is none, or it has ended).
    fix: Option<String>,
    logs: ConflictEvidence,
    /// The connectionState sample, when one was taken.
    sampled: Option<Sampled>,
    /// Why no sample was taken (no live task, no instance, exec not possible).
    sample_skipped: Option<String>,
}

#[derive(Debug, Serialize)]
struct Sampled {
    task: String,
    instance: String,
    seconds: f64,
    samples: usize,
    /// How many times the state changed between consecutive samples.
    changes: usize,
    states: Vec<String>,
}

pub async fn run(context: &Context, args: &ConflictsArgs) -> Result<u8> {
    let config = context.config()?;
    let env = config.environment(&args.env)?;
    let aws = context.aws_for(&config, env).await?;
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    let read_logs = async {
        let source = logs::log_source(&aws.ecs(), target, &env.container).await?;
        conflicts::read(&aws.logs(), &source, args.since).await
    };
    let ecs = aws.ecs();
    let (evidence, sampled, live) =
        tokio::join!(read_logs, sample(&aws, env, args.sample), discovery::live_tasks(&ecs, target));
    let (evidence, live) = (evidence?, live?);
    let (sampled, sample_skipped) = match sampled {
        Ok(sampled) => (sampled, None),
        Err(reason) => (None, Some(reason)),
    };
    let flapping = sampled.as_ref().is_some_and(|s| s.changes >= FLAP_THRESHOLD);
    let ongoing = flapping || evidence.goes_on_with(&live);
    let report = ConflictReport {
        schema: "evoctl.conflicts/v1",
        env: env.name.clone(),
        is_loop: evidence.is_loop || flapping,
        ongoing,
        live_tasks: live.iter().map(|t| t.id.clone()).collect(),
        fix: ongoing.then(|| fix(env, &live)),
        logs: evidence,
        sampled,
        sample_skipped,
    };
    context.printer.data(&report, || render(&report));
    if let Some(fix) = &report.fix {
        context.printer.note(&format!("fix: {fix}"));
    }
    Ok(if ongoing { exit::FINDINGS } else { exit::OK })
}

/// What ends a loop that goes on: this environment's extra task, else a connection this
/// environment does not hold (another environment of its number, or one outside evoctl.toml).
fn fix(env: &Environment, live: &[LiveTask]) -> String {
    if let Some(stop) = conflicts::two_tasks_fix(&env.name, live) {
        return stop;
    }
    let holds = match live.first() {
        Some(task) => format!("only {} of {} is live", task.id, env.name),
        None => format!("{} has no live task", env.name),
    };
    format!(
        "{holds}: the other connection is elsewhere: another environment of this number (`evoctl audit` names it, and `evoctl enforce --apply` brings it down) or an Evolution outside evoctl.toml (a local one, another account): stop it"
    )
}

/// Sample the instance's live state from any ready task; `Err` says why there is no sample.
async fn sample(aws: &crate::aws::Aws, env: &Environment, duration: Duration) -> Result<Option<Sampled>, String> {
    if duration.is_zero() {
        return Ok(None);
    }
    let target = target::resolve_any(&aws.ecs(), env).await.map_err(|e| e.to_string())?;
    let options = RunOptions::new(duration + Duration::from_secs(60));
    let driver = Driver { aws, target: &target, options };
    let states = driver.sample_states(&env.instance, duration, SAMPLE_INTERVAL).await.map_err(|e| e.to_string())?;
    let changes = states.windows(2).filter(|w| w[0].1 != w[1].1).count();
    let mut seen: Vec<String> = Vec::new();
    for (_, state) in &states {
        if !seen.contains(state) {
            seen.push(state.clone());
        }
    }
    Ok(Some(Sampled {
        task: target.task.id.clone(),
        instance: env.instance.clone(),
        seconds: states.last().map_or(0.0, |(at, _)| crate::output::seconds(*at)),
        samples: states.len(),
        changes,
        states: seen,
    }))
}

fn render(report: &ConflictReport) -> String {
    let evidence = &report.logs;
    let window = format!("{}m", evidence.since_seconds / 60);
    let mut out = if evidence.events == 0 {
        format!("no conflict/replaced lines in {} in the last {window}\n", evidence.source)
    } else {
        let tasks: Vec<String> = evidence.tasks.iter().map(|t| format!("{} ({})", t.task, t.events)).collect();
        format!(
            "events:  {} conflict/replaced lines in the last {window}\nperiod:  {}\nfirst:   {}\nlast:    {}\ntasks:   {}\n",
            evidence.events,
            evidence.period_seconds.map(|p| format!("about every {p:.1} s per task")).unwrap_or_else(|| "-".into()),
            evidence.first_seen.as_deref().unwrap_or("-"),
            evidence.last_seen.as_deref().unwrap_or("-"),
            tasks.join(", "),
        )
    };
    match (&report.sampled, &report.sample_skipped) {
        (Some(s), _) => out.push_str(&format!(
            "state:   {} change(s) in {:.1} s of {} ({}; {} samples from task {})\n",
            s.changes,
            s.seconds,
            s.instance,
            s.states.join(", "),
            s.samples,
            s.task
        )),
        (None, Some(reason)) => out.push_str(&format!("state:   not sampled: {reason}\n")),
        (None, None) => {}
    }
    let ended = format!("ended (the last line at {}; none since)", evidence.last_seen.as_deref().unwrap_or("-"));
    let verdict = if report.ongoing {
        "YES"
    } else if report.is_loop {
        ended.as_str()
    } else if evidence.events > 0 {
        "no (isolated replacements)"
    } else {
        "no"
    };
    format!("conflict loop: {verdict}\n{out}")
}
