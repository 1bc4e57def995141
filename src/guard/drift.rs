//! What `status` marks on each environment: **drift** (its scaling or its live tasks unlike
//! evoctl.toml) and **unsafe** (two live connections on one WhatsApp number: two live tasks of
//! one service, or two environments of one number live together). The scaling words are the
//! ones the `scaling` audit rule uses, from [`scaling_drift`].

use crate::aws::discovery::{LiveTask, ScalableRange};
use crate::config::{Environment, Scaling};

/// What was read of one environment.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub env: &'a Environment,
    /// The scalable target (None: the service has none).
    pub target: Option<ScalableRange>,
    pub desired_count: i32,
    pub live: &'a [LiveTask],
}

/// How the scalable target and desiredCount differ from the configured scaling (empty: they
/// match).
pub fn scaling_drift(want: Scaling, target: Option<ScalableRange>, desired_count: i32) -> Vec<String> {
    let mut issues = Vec::new();
    match target {
        None => issues.push(format!("no scalable target (configured {want})")),
        Some(range) if (range.min_capacity, range.max_capacity) != (want.min as i32, want.max as i32) => {
            issues.push(format!("scalable target {}/{}, configured {want}", range.min_capacity, range.max_capacity))
        }
        Some(_) => {}
    }
    if desired_count < want.min as i32 || desired_count > want.max as i32 {
        issues.push(format!("desiredCount {desired_count} outside {want}"));
    }
    issues
}

/// Where `observed` has drifted from its configured scaling: the scalable target, desiredCount,
/// and a number of live tasks outside the configured range. Nothing without a configured
/// scaling.
pub fn drift(observed: &Observed<'_>) -> Vec<String> {
    let Some(want) = observed.env.scaling else { return Vec::new() };
    let mut issues = scaling_drift(want, observed.target, observed.desired_count);
    let live = observed.live.len();
    if live < want.min as usize || live > want.max as usize {
        issues.push(format!("{live} live task(s), configured {want}"));
    }
    issues
}

/// Why `observed` holds, or shares, more than one live connection on its number: its own
/// live tasks beyond one, and every other environment of `all` on the same number that is
/// live while it is.
pub fn unsafe_live(observed: &Observed<'_>, all: &[Observed<'_>]) -> Vec<String> {
    let mut issues = Vec::new();
    if observed.live.len() > 1 {
        let ids: Vec<&str> = observed.live.iter().map(|t| t.id.as_str()).collect();
        issues.push(format!("{} live tasks on one number: {}", ids.len(), ids.join(", ")));
    }
    if !observed.live.is_empty() {
        for other in all {
            if other.env.name != observed.env.name && other.env.number == observed.env.number && !other.live.is_empty()
            {
                issues.push(format!(
                    "live together with {} ({} live task(s)) on number `{}`",
                    other.env.name,
                    other.live.len(),
                    observed.env.number
                ));
            }
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> LiveTask {
        LiveTask::running(id)
    }

    #[test]
    fn a_parked_and_a_running_environment_as_configured_are_neither_drifted_nor_unsafe() {
        let staging = Environment::for_test("staging", "s", 0, 0);
        let production = Environment::for_test("production", "p", 1, 1);
        let one = [task("p1")];
        let all = [
            Observed {
                env: &staging,
                target: Some(ScalableRange { min_capacity: 0, max_capacity: 0 }),
                desired_count: 0,
                live: &[],
            },
            Observed {
                env: &production,
                target: Some(ScalableRange { min_capacity: 1, max_capacity: 1 }),
                desired_count: 1,
                live: &one,
            },
        ];
        for observed in &all {
            assert_eq!(drift(observed), Vec::<String>::new(), "{}", observed.env.name);
            assert_eq!(unsafe_live(observed, &all), Vec::<String>::new(), "{}", observed.env.name);
        }
    }

    #[test]
    fn two_live_tasks_and_two_live_environments_of_one_number_are_unsafe() {
        let staging = Environment::for_test("staging", "s", 0, 0);
        let production = Environment::for_test("production", "p", 1, 1);
        let (one, two) = ([task("s1")], [task("p1"), task("p2")]);
        let range = |n| Some(ScalableRange { min_capacity: n, max_capacity: n });
        let all = [
            Observed { env: &staging, target: range(0), desired_count: 0, live: &one },
            Observed { env: &production, target: range(1), desired_count: 1, live: &two },
        ];
        assert_eq!(drift(&all[0]), ["1 live task(s), configured 0/0"]);
        assert_eq!(drift(&all[1]), ["2 live task(s), configured 1/1"]);
        assert_eq!(
            unsafe_live(&all[1], &all),
            ["2 live tasks on one number: p1, p2", "live together with staging (1 live task(s)) on number `shared`"]
        );
        assert_eq!(unsafe_live(&all[0], &all), ["live together with production (2 live task(s)) on number `shared`"]);
        assert_eq!(
            scaling_drift(Scaling { min: 1, max: 1 }, None, 2),
            ["no scalable target (configured 1/1)", "desiredCount 2 outside 1/1"]
        );
    }
}
