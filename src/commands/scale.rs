//! `evoctl scale ENV` and `evoctl enforce`: bring environments to their configured scaling.
//! Both print the plan (see [`crate::guard::plan`]); only `--apply` changes anything. Applying
//! shows progress (a spinner on a terminal, one line per change otherwise) and ends with the
//! verified state.

use super::Context;
use crate::cli::{EnforceArgs, ScaleArgs};
use crate::error::Result;
use crate::exit;
use crate::guard::plan::{self, Plan, Progress, Step};
use crate::output::table;
use serde::Serialize;
use std::time::Duration;

/// Interval between state reads while waiting for tasks.
const POLL: Duration = Duration::from_millis(500);

/// `--output json` document.
#[derive(Debug, Serialize)]
struct PlanReport<'a> {
    schema: &'static str,
    applied: bool,
    #[serde(flatten)]
    plan: &'a Plan,
}

pub async fn scale(context: &Context, args: &ScaleArgs) -> Result<u8> {
    run(context, &[args.env.as_str()], false, args.apply, args.timeout).await
}

pub async fn enforce(context: &Context, args: &EnforceArgs) -> Result<u8> {
    run(context, &[], true, args.apply, args.timeout).await
}

/// Plan (the first signal simply stops the reads), then apply with the step-by-step
/// interruption of [`plan::apply`].
async fn run(context: &Context, names: &[&str], every: bool, apply: bool, deadline: Duration) -> Result<u8> {
    let finish =
        if every { "evoctl enforce --apply".to_owned() } else { format!("evoctl scale {} --apply", names.join(" ")) };
    tokio::select! {
        result = plan_and_apply(context, names, every, apply, deadline, &finish) => result,
        signal = crate::interrupt::wait(), if !apply => Err(crate::error::Error::Interrupted {
            signal,
            message: format!("interrupted ({}): nothing was changed", signal.name()),
            fix: None,
        }),
    }
}

async fn plan_and_apply(
    context: &Context,
    names: &[&str],
    every: bool,
    apply: bool,
    deadline: Duration,
    finish: &str,
) -> Result<u8> {
    let config = context.config()?;
    let targets: Vec<&str> = if every {
        config.names()
    } else {
        names.iter().map(|name| config.environment(name).map(|e| e.name.as_str())).collect::<Result<_>>()?
    };
    let aws = context.aws(&config).await?;
    let observed = crate::aws::for_each_env(&config.environments, |env| plan::observe(aws.of(env), env)).await?;
    let plan = plan::compute(&config.environments, &observed, &targets)?;
    if !plan.is_empty() {
        warn_session_keys(context, &aws, &config.environments, &plan).await?;
    }
    if plan.is_empty() {
        context.printer.data(&PlanReport { schema: "evoctl.plan/v1", applied: false, plan: &plan }, || {
            format!("nothing to do: {} already match their configured scaling\n", targets.join(", "))
        });
        return Ok(exit::OK);
    }
    if !apply {
        context.printer.data(&PlanReport { schema: "evoctl.plan/v1", applied: false, plan: &plan }, || {
            format!("{}\nnothing changed: run again with --apply to make these changes\n", render(&plan))
        });
        return Ok(exit::OK);
    }
    context.printer.note(&render(&plan));
    apply_with_progress(context, &aws, &config.environments, &plan, deadline, finish).await?;
    context.printer.data(&PlanReport { schema: "evoctl.plan/v1", applied: true, plan: &plan }, || {
        let done: Vec<String> = plan
            .environments
            .iter()
            .filter(|p| !p.steps.is_empty())
            .map(|p| format!("{} {}/{} desired {}", p.env, p.wanted.min, p.wanted.max, p.wanted.desired))
            .collect();
        format!("applied and verified: {}\n", done.join("; "))
    });
    Ok(exit::OK)
}

/// A protected environment whose task the plan stops or starts, with its session's keys on
/// the task's own disk (or nowhere): the number will need a new link afterwards; say so first.
/// The task definitions were observed with the plan; their settings are read concurrently.
async fn warn_session_keys(
    context: &Context,
    aws: &crate::aws::Fleet,
    environments: &[crate::config::Environment],
    plan: &Plan,
) -> Result<()> {
    let reads = plan
        .environments
        .iter()
        .filter(|p| !p.steps.is_empty() && p.wanted.desired != p.current.live)
        .filter_map(|p| {
            let env = environments.iter().find(|e| e.name == p.env && e.protected)?;
            let definition = p.current.task_definition.as_deref()?;
            Some(
                async move { (env, crate::guard::facts::auth_state_of(aws.of(env), definition, &env.container).await) },
            )
        });
    for (env, auth) in futures::future::join_all(reads).await {
        let auth = auth?;
        if !auth.persistent() {
            context.printer.warn(&crate::guard::auth_state::replacement_warning(&env.name, &auth, "this change"));
        }
    }
    Ok(())
}

/// Apply a plan, showing each change (a spinner while waiting on a terminal, lines otherwise).
pub(super) async fn apply_with_progress(
    context: &Context,
    aws: &crate::aws::Fleet,
    environments: &[crate::config::Environment],
    plan: &Plan,
    deadline: Duration,
    finish: &str,
) -> Result<()> {
    let spinner = context.printer.stderr_is_tty().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let say = |line: String| match &spinner {
        Some(bar) => bar.println(line),
        None => context.printer.note(&line),
    };
    let show = |line: String| match &spinner {
        Some(bar) => bar.set_message(line),
        None => context.printer.note(&line),
    };
    let last_wait = std::sync::Mutex::new(None::<(String, i32)>);
    let report = |event: Progress<'_>| match event {
        Progress::Step { env, step: Step::WaitForTasks { live } } => {
            show(format!("{env}: waiting for {live} live task(s)"))
        }
        Progress::Step { env, step } => say(format!("{env}: {step}")),
        Progress::Waiting { env, live, wanted } => {
            let mut last = last_wait.lock().expect("progress lock");
            if last.as_ref() != Some(&(env.to_owned(), live)) {
                *last = Some((env.to_owned(), live));
                show(format!("{env}: {live} live task(s), waiting for {wanted}"));
            }
        }
        Progress::Done { env } => say(format!("{env}: verified")),
    };
    let result = plan::apply(aws, environments, plan, deadline, POLL, finish, &report).await;
    if let Some(bar) = &spinner {
        bar.finish_and_clear();
    }
    result
}

/// The plan as a table and numbered steps.
pub(super) fn render(plan: &Plan) -> String {
    let range = |min: Option<i32>, max: Option<i32>| match (min, max) {
        (Some(min), Some(max)) => format!("{min}/{max}"),
        _ => "none".to_owned(),
    };
    let rows: Vec<Vec<String>> = plan
        .environments
        .iter()
        .map(|p| {
            vec![
                p.env.clone(),
                format!(
                    "{} desired {} live {}",
                    range(p.current.min, p.current.max),
                    p.current.desired,
                    p.current.live
                ),
                format!("{}/{} desired {}", p.wanted.min, p.wanted.max, p.wanted.desired),
                if p.steps.is_empty() { "-".into() } else { format!("{} change(s)", p.steps.len()) },
            ]
        })
        .collect();
    let mut out = table(&["ENV", "NOW (MIN/MAX)", "WANTED", "PLAN"], &rows);
    let mut number = 0;
    for p in &plan.environments {
        for step in &p.steps {
            number += 1;
            out.push_str(&format!("{number}. {}: {step}\n", p.env));
        }
    }
    out
}
