//! May this environment be linked now? Every other environment of its number must be at 0 live
//! tasks (and want none), the environment itself at its configured scaling with exactly one
//! live task. Each problem names the environment and what is wrong.

use crate::config::Environment;
use crate::error::Error;
use crate::guard::plan::Observed;

/// One reason not to link now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub env: String,
    pub message: String,
}

/// Check `env_name` against what was observed of every environment (same order as `environments`).
pub fn assess(environments: &[Environment], observed: &[Observed], env_name: &str) -> Vec<Problem> {
    let Some(this) = environments.iter().find(|e| e.name == env_name) else { return Vec::new() };
    let mut problems = Vec::new();
    for (env, now) in environments.iter().zip(observed) {
        if env.name == this.name {
            if let Some(scaling) = env.scaling {
                let range = (now.min, now.max);
                if range != (Some(scaling.min as i32), Some(scaling.max as i32)) || !scaling_holds(now.desired, scaling)
                {
                    problems.push(Problem {
                        env: env.name.clone(),
                        message: format!(
                            "{} is at target {}, desired {}; configured {scaling}",
                            env.name,
                            range_text(now),
                            now.desired
                        ),
                    });
                }
            }
            if now.live != 1 {
                problems.push(Problem {
                    env: env.name.clone(),
                    message: format!("{} has {} live task(s); linking needs exactly one", env.name, now.live),
                });
            }
        }
    }
    let others = environments.iter().zip(observed).filter(|(env, _)| env.name != this.name);
    problems.extend(others_on_number(this, others));
    problems
}

/// The other environments of `this` one's number that have or want a task: each one a reason
/// not to link `this` now. `others` may include environments of other numbers.
pub fn others_on_number<'a>(
    this: &Environment,
    others: impl IntoIterator<Item = (&'a Environment, &'a Observed)>,
) -> Vec<Problem> {
    others
        .into_iter()
        .filter(|(env, now)| env.number == this.number && (now.live > 0 || now.desired > 0))
        .map(|(env, now)| Problem {
            env: env.name.clone(),
            message: format!(
                "{} has {} live task(s) (desired {}) on the number {} uses",
                env.name, now.live, now.desired, this.name
            ),
        })
        .collect()
}

/// Linking `env` cannot be made safe by enforcing its scaling, because that scaling runs no
/// task: configured to run nothing (max 0), or scaled to 0 where its range allows it. The
/// refusal says so, and its fix is the change that would give it a task (never `--enforce`,
/// which would only confirm the 0).
pub fn runs_nothing(env: &Environment, now: &Observed) -> Option<Error> {
    let scaling = env.scaling?;
    if scaling.max == 0 {
        return Some(Error::refused(
            format!(
                "refused: {} is configured to run no task (scaling {scaling} in evoctl.toml), so there is nothing to link there; nothing was changed",
                env.name
            ),
            format!(
                "to link a number on {}, give it scaling = {{ min = 1, max = 1 }} under [env.{}] in evoctl.toml first (and 0/0 to every other environment of its number)",
                env.name, env.name
            ),
        ));
    }
    (scaling.min == 0 && now.desired == 0 && now.live == 0).then(|| {
        Error::refused(
            format!(
                "refused: {} is scaled to 0 (its scaling {scaling} allows it) and has no task to link; nothing was changed",
                env.name
            ),
            format!(
                "start its task: `aws ecs update-service --cluster {} --service {} --desired-count 1`, then connect",
                env.cluster, env.service
            ),
        )
    })
}

fn scaling_holds(desired: i32, scaling: crate::config::Scaling) -> bool {
    desired >= scaling.min as i32 && desired <= scaling.max as i32
}

fn range_text(now: &Observed) -> String {
    match (now.min, now.max) {
        (Some(min), Some(max)) => format!("{min}/{max}"),
        _ => "none".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(min: i32, max: i32, desired: i32, live: i32) -> Observed {
        Observed { min: Some(min), max: Some(max), desired, live, tasks: Vec::new(), task_definition: None }
    }

    #[test]
    fn staging_up_blocks_production_and_the_seed_does_not() {
        let envs = [Environment::for_test("staging", "s", 0, 0), Environment::for_test("production", "p", 1, 1)];
        assert!(assess(&envs, &[seen(0, 0, 0, 0), seen(1, 1, 1, 1)], "production").is_empty());
        let problems = assess(&envs, &[seen(1, 1, 1, 1), seen(1, 1, 1, 1)], "production");
        assert_eq!(
            problems,
            [Problem {
                env: "staging".into(),
                message: "staging has 1 live task(s) (desired 1) on the number production uses".into()
            }]
        );
        let problems = assess(&envs, &[seen(0, 0, 0, 0), seen(1, 1, 1, 2)], "production");
        assert_eq!(problems[0].message, "production has 2 live task(s); linking needs exactly one");
    }
}
