//! Scaling enforcement: compare each environment with its configured scaling, compute the
//! changes in a safe order, refuse plans that would leave two environments of one number live,
//! and apply them: scalable target first (RegisterScalableTarget alone clamps the desired count),
//! then desiredCount, then wait with a deadline until the live tasks match, then read everything
//! back and verify. Environments going down are done before any going up. Ctrl-C (or SIGTERM)
//! stops after the step in flight (a write that was sent completes; a wait simply ends) and the
//! error lists what was applied, what was not, and the command that finishes the job.

use crate::aws::discovery::{self, ServiceRef};
use crate::aws::scaling;
use crate::aws::{Aws, Fleet};
use crate::config::Environment;
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What an environment looks like now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observed {
    /// The scalable target's range, `None` without a target.
    pub min: Option<i32>,
    pub max: Option<i32>,
    pub desired: i32,
    pub live: i32,
    /// The live tasks, oldest first (a refusal names the ones to stop).
    #[serde(skip)]
    pub tasks: Vec<discovery::LiveTask>,
    /// The service's task definition (where a replaced task's session keys live).
    #[serde(skip)]
    pub task_definition: Option<String>,
}

impl Observed {
    /// Target range, desired count and live count alike.
    fn counts(&self) -> (Option<i32>, Option<i32>, i32, i32) {
        (self.min, self.max, self.desired, self.live)
    }
}

/// What it must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Wanted {
    pub min: i32,
    pub max: i32,
    pub desired: i32,
}

/// One change, in the order it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "action")]
pub enum Step {
    RegisterScalableTarget { min: i32, max: i32 },
    UpdateService { desired_count: i32 },
    WaitForTasks { live: i32 },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::RegisterScalableTarget { min, max } => write!(f, "RegisterScalableTarget min {min} max {max}"),
            Step::UpdateService { desired_count } => write!(f, "UpdateService desiredCount {desired_count}"),
            Step::WaitForTasks { live } => write!(f, "wait until {live} live task(s)"),
        }
    }
}

/// The changes for one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvPlan {
    pub env: String,
    pub current: Observed,
    pub wanted: Wanted,
    pub steps: Vec<Step>,
}

impl EnvPlan {
    /// Going down: fewer tasks wanted than there are (or than ECS wants) now.
    pub fn goes_down(&self) -> bool {
        self.wanted.desired < self.current.live.max(self.current.desired)
    }
}

/// Every environment's changes, in the order they are applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub environments: Vec<EnvPlan>,
}

impl Plan {
    /// True when nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.environments.iter().all(|e| e.steps.is_empty())
    }
}

/// Read what the plan needs about one environment.
pub async fn observe(aws: &Aws, env: &Environment) -> Result<Observed> {
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    Ok(Observed::from(&discovery::snapshot(&aws.ecs(), &aws.autoscaling(), target).await?))
}

impl From<&discovery::ServiceSnapshot> for Observed {
    fn from(snapshot: &discovery::ServiceSnapshot) -> Observed {
        Observed {
            min: snapshot.range.map(|r| r.min_capacity),
            max: snapshot.range.map(|r| r.max_capacity),
            desired: snapshot.service.desired_count,
            live: snapshot.tasks.len() as i32,
            tasks: snapshot.tasks.clone(),
            task_definition: snapshot.service.task_definition.clone(),
        }
    }
}

/// Plan `targets` (by name) given every environment and what was observed of each (same order
/// as `environments`). Refused when the end state would leave two environments of one number
/// live.
pub fn compute(environments: &[Environment], observed: &[Observed], targets: &[&str]) -> Result<Plan> {
    let mut plans = Vec::new();
    for (env, now) in environments.iter().zip(observed) {
        if !targets.contains(&env.name.as_str()) {
            continue;
        }
        let Some(scaling) = env.scaling else {
            return Err(Error::usage(
                format!("{} has no configured scaling, so there is nothing to enforce", env.name),
                format!("add scaling = {{ min = N, max = N }} under [env.{}] in evoctl.toml", env.name),
            ));
        };
        let (min, max) = (scaling.min as i32, scaling.max as i32);
        let desired = if min == max { min } else { now.desired.clamp(min, max) };
        let mut steps = Vec::new();
        if (now.min, now.max) != (Some(min), Some(max)) {
            steps.push(Step::RegisterScalableTarget { min, max });
        }
        if now.desired != desired {
            steps.push(Step::UpdateService { desired_count: desired });
        }
        if !steps.is_empty() || now.live != desired {
            steps.push(Step::WaitForTasks { live: desired });
        }
        // Live tasks the service does not count (a replaced task still draining, a task started
        // outside the service) stay beside whatever it runs: keeping or bringing the
        // environment up now would leave two connections on one number.
        let uncounted = now.live - now.desired.max(0);
        if desired > 0 && uncounted > 0 && desired + uncounted > 1 {
            return Err(Error::refused(
                format!(
                    "refused: {} has {} live task(s) where its service wants {} (a replaced or stray task has not stopped); keeping it at {desired} would leave two connections on one number",
                    env.name, now.live, now.desired
                ),
                match discovery::stop_extra_fix(&env.name, &now.tasks, desired as usize) {
                    Some(stop) => format!("{stop}, then run again"),
                    None => {
                        format!("wait until the extra task is STOPPED (`evoctl status {}`), then run again", env.name)
                    }
                },
            ));
        }
        plans.push(EnvPlan {
            env: env.name.clone(),
            current: now.clone(),
            wanted: Wanted { min, max, desired },
            steps,
        });
    }
    refuse_two_live(environments, observed, &plans)?;
    // Down before up; otherwise the config's order.
    plans.sort_by_key(|p| !p.goes_down());
    Ok(Plan { environments: plans })
}

/// The end state: planned environments at their wanted count, the others as they are now.
fn refuse_two_live(environments: &[Environment], observed: &[Observed], plans: &[EnvPlan]) -> Result<()> {
    let mut live_by_number: BTreeMap<&str, Vec<(&str, i32, bool)>> = BTreeMap::new();
    for (env, now) in environments.iter().zip(observed) {
        let planned = plans.iter().find(|p| p.env == env.name);
        let end = planned.map_or(now.live.max(now.desired), |p| p.wanted.desired);
        if end > 0 {
            live_by_number.entry(env.number.as_str()).or_default().push((&env.name, end, planned.is_some()));
        }
    }
    for (number, live) in live_by_number {
        if live.len() < 2 {
            continue;
        }
        let names: Vec<String> = live.iter().map(|(name, count, _)| format!("{name} ({count} task(s))")).collect();
        let untouched: Vec<&str> = live.iter().filter(|(_, _, planned)| !planned).map(|(name, _, _)| *name).collect();
        let fix = if untouched.is_empty() {
            "evoctl.toml configures them to run together: set scaling = { min = 0, max = 0 } for all but one (or give environments on different numbers their own `number` label)".to_owned()
        } else {
            format!(
                "bring {} down first (`evoctl scale {} --apply`), or run `evoctl enforce --apply`",
                untouched.join(", "),
                untouched[0]
            )
        };
        return Err(Error::refused(
            format!("refused: this would leave {} live together on number `{number}`", names.join(" and ")),
            fix,
        ));
    }
    Ok(())
}

/// What [`apply`] reports as it goes.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    Step { env: &'a str, step: Step },
    Waiting { env: &'a str, live: i32, wanted: i32 },
    Done { env: &'a str },
}

/// Apply the plan in order; every environment is verified after its wait. `poll` is the
/// interval between state reads while waiting, `deadline` the limit for each environment.
/// `finish` is the command that completes the job after an interruption.
pub async fn apply(
    fleet: &Fleet,
    environments: &[Environment],
    plan: &Plan,
    deadline: Duration,
    poll: Duration,
    finish: &str,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<()> {
    let mut done = 0usize;
    for env_plan in plan.environments.iter().filter(|p| !p.steps.is_empty()) {
        let env = environments.iter().find(|e| e.name == env_plan.env).expect("plans name configured environments");
        // Each environment is changed with its own account's credentials.
        let aws = fleet.of(env);
        let (ecs, autoscaling) = (aws.ecs(), aws.autoscaling());
        let target = ServiceRef { cluster: &env.cluster, service: &env.service };
        for step in &env_plan.steps {
            if let Some(signal) = crate::interrupt::requested() {
                return Err(interrupted(plan, done, signal, finish));
            }
            progress(Progress::Step { env: &env.name, step: *step });
            match *step {
                // A write in flight is let finish: stopping mid-call would leave it unknown.
                Step::RegisterScalableTarget { min, max } => {
                    scaling::register_target(&autoscaling, target, min, max).await?
                }
                Step::UpdateService { desired_count } => {
                    scaling::set_desired_count(&ecs, target, desired_count).await?
                }
                Step::WaitForTasks { live } => tokio::select! {
                    waited = wait_for(aws, env, live, deadline, poll, progress) => waited?,
                    signal = crate::interrupt::wait() => return Err(interrupted(plan, done, signal, finish)),
                },
            }
            done += 1;
        }
        verify(aws, env, env_plan.wanted).await?;
        progress(Progress::Done { env: &env.name });
    }
    Ok(())
}

/// The plan interrupted after its first `done` steps: what was applied, what was not, and how
/// to finish.
fn interrupted(plan: &Plan, done: usize, signal: crate::error::Signal, finish: &str) -> Error {
    let steps: Vec<String> = plan
        .environments
        .iter()
        .flat_map(|p| p.steps.iter().map(move |step| format!("{}: {step}", p.env)))
        .enumerate()
        .map(|(i, step)| format!("  {}. {step}", i + 1))
        .collect();
    let (applied, pending) = steps.split_at(done.min(steps.len()));
    let list = |lines: &[String]| if lines.is_empty() { "  (none)".to_owned() } else { lines.join("\n") };
    Error::Interrupted {
        signal,
        message: format!(
            "interrupted ({}) after {done} of {} step(s); applied:\n{}\nnot applied:\n{}",
            signal.name(),
            steps.len(),
            list(applied),
            list(pending)
        ),
        fix: Some(format!("`{finish}` finishes the job (it plans again from what is there now)")),
    }
}

async fn wait_for(
    aws: &Aws,
    env: &Environment,
    wanted: i32,
    deadline: Duration,
    poll: Duration,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<()> {
    let ecs = aws.ecs();
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    let started = Instant::now();
    loop {
        let (service, tasks) =
            tokio::try_join!(discovery::service_state(&ecs, target), discovery::live_tasks(&ecs, target))?;
        let live = tasks.len() as i32;
        let settled = live == wanted
            && service.running_count == wanted
            && service.pending_count == 0
            && tasks.iter().all(|t| t.last_status == "RUNNING");
        if settled {
            return Ok(());
        }
        progress(Progress::Waiting { env: &env.name, live, wanted });
        if started.elapsed() >= deadline {
            let listed: Vec<String> = tasks.iter().map(|t| format!("{} {}", t.id, t.last_status)).collect();
            return Err(Error::Timeout {
                message: format!(
                    "{} did not reach {wanted} live task(s) within {} s: {live} live ({}), running {}, pending {}",
                    env.name,
                    deadline.as_secs(),
                    if listed.is_empty() { "none".to_owned() } else { listed.join(", ") },
                    service.running_count,
                    service.pending_count
                ),
                fix: Some(format!(
                    "the changes were made and ECS is still converging: check `evoctl status {}` and run the same command again (it is idempotent)",
                    env.name
                )),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// Read the target, the service and the live tasks back and compare with what was wanted.
async fn verify(aws: &Aws, env: &Environment, wanted: Wanted) -> Result<()> {
    let now = observe(aws, env).await?;
    if now.counts() == (Some(wanted.min), Some(wanted.max), wanted.desired, wanted.desired) {
        return Ok(());
    }
    Err(Error::Unverified {
        message: format!(
            "{} after the change: target {}/{}, desiredCount {}, {} live task(s); wanted {}/{}, {}, {}",
            env.name,
            now.min.map_or("-".into(), |v| v.to_string()),
            now.max.map_or("-".into(), |v| v.to_string()),
            now.desired,
            now.live,
            wanted.min,
            wanted.max,
            wanted.desired,
            wanted.desired
        ),
        fix: format!(
            "something else changed it back (a scheduled action, a policy, a deploy): run `evoctl audit {}`",
            env.name
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, min: u32, max: u32) -> Environment {
        Environment::for_test(name, name, min, max)
    }

    fn seen(min: i32, max: i32, desired: i32, live: i32) -> Observed {
        Observed { min: Some(min), max: Some(max), desired, live, tasks: Vec::new(), task_definition: None }
    }

    #[test]
    fn staging_up_goes_down_first_with_target_before_desired_count() {
        let envs = [env("production", 1, 1), env("staging", 0, 0)];
        let plan = compute(&envs, &[seen(1, 1, 1, 1), seen(1, 1, 1, 1)], &["production", "staging"]).unwrap();
        assert_eq!(plan.environments[0].env, "staging");
        assert_eq!(
            plan.environments[0].steps,
            [
                Step::RegisterScalableTarget { min: 0, max: 0 },
                Step::UpdateService { desired_count: 0 },
                Step::WaitForTasks { live: 0 }
            ]
        );
        assert!(plan.environments[1].steps.is_empty());
    }

    #[test]
    fn a_matching_account_plans_nothing() {
        let envs = [env("staging", 0, 0), env("production", 1, 1)];
        let plan = compute(&envs, &[seen(0, 0, 0, 0), seen(1, 1, 1, 1)], &["staging", "production"]).unwrap();
        assert!(plan.is_empty());
    }

    #[test]
    fn bringing_one_env_up_while_another_is_live_is_refused() {
        let envs = [env("staging", 1, 1), env("production", 1, 1)];
        let err = compute(&envs, &[seen(0, 0, 0, 0), seen(1, 1, 1, 1)], &["staging"]).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::REFUSED);
        assert!(err.to_string().contains("staging (1 task(s)) and production (1 task(s))"), "{err}");
        assert!(err.fix().unwrap().contains("evoctl scale production --apply"));
    }

    #[test]
    fn a_task_the_service_does_not_count_is_refused_unless_the_env_goes_to_zero() {
        // Production wants 1 and runs 1, and a replaced task is still draining: 2 live.
        let envs = [env("staging", 0, 0), env("production", 1, 1)];
        let err = compute(&envs, &[seen(0, 0, 0, 0), seen(1, 1, 1, 2)], &["staging", "production"]).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::REFUSED);
        assert!(err.to_string().contains("production has 2 live task(s) where its service wants 1"), "{err}");
        // One old task draining while the service starts its first: refused too.
        assert!(compute(&envs, &[seen(0, 0, 0, 0), seen(1, 1, 1, 1)], &["production"]).is_ok());
        let err = compute(&envs, &[seen(0, 0, 0, 0), seen(1, 1, 0, 1)], &["production"]).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::REFUSED);
        // Going to zero waits for every task, the draining one included: allowed.
        let envs = [env("staging", 0, 0)];
        assert!(compute(&envs, &[seen(1, 1, 1, 2)], &["staging"]).is_ok());
        // Two tasks the service wants are scaled down as usual.
        let envs = [env("production", 1, 1)];
        assert!(compute(&envs, &[seen(2, 2, 2, 2)], &["production"]).is_ok());
    }

    #[test]
    fn different_numbers_may_run_together() {
        let mut other = env("other", 1, 1);
        other.number = "second".into();
        let envs = [other, env("production", 1, 1)];
        assert!(compute(&envs, &[seen(0, 0, 0, 0), seen(1, 1, 1, 1)], &["other"]).is_ok());
    }

    #[test]
    fn a_range_keeps_the_current_desired_count_when_inside_it() {
        let envs = [env("production", 1, 3)];
        let plan = compute(&envs, &[seen(1, 3, 2, 2)], &["production"]).unwrap();
        assert!(plan.is_empty());
        let plan = compute(&envs, &[seen(1, 5, 5, 5)], &["production"]).unwrap();
        assert_eq!(plan.environments[0].wanted.desired, 3);
    }
}
