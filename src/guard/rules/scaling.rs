//! Scaling: how many tasks each environment can run. The scalable target and desiredCount as
//! configured, live tasks as desired, never two environments of one number live together,
//! deployments and AZ rebalancing that stop a singleton's task before starting another, and no
//! scheduled action or policy above the configured max.

use super::{Found, Hit, Subject, one};
use crate::aws::discovery;
use std::collections::BTreeMap;

pub(super) fn singleton(subject: &Subject<'_>) -> bool {
    subject.env.scaling.map_or(subject.facts.service.desired_count <= 1, |s| s.max <= 1)
}

pub(super) fn scaling(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let Some(want) = s.env.scaling else { continue };
        let issues = crate::guard::drift::scaling_drift(want, s.facts.target, s.facts.service.desired_count);
        if !issues.is_empty() {
            found.push(one(s.env, issues.join("; "), format!("evoctl scale {} --apply", s.env.name)));
        }
    }
    found
}

pub(super) fn live_tasks(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let live = s.facts.tasks.len();
        let desired = s.facts.service.desired_count;
        let listed: Vec<String> = s.facts.tasks.iter().map(|t| format!("{} {}", t.id, t.last_status)).collect();
        let evidence = if live as i32 != desired {
            format!("{live} live task(s) but desiredCount {desired}")
        } else if live > 1 && singleton(s) {
            format!("{live} live tasks for a singleton")
        } else {
            continue;
        };
        let evidence = if listed.is_empty() { evidence } else { format!("{evidence}: {}", listed.join(", ")) };
        let fix = if live as i32 > desired || live > 1 {
            // Tasks are oldest first: the newest ones are the extras.
            let keep = desired.clamp(0, 1) as usize;
            discovery::stop_extra_fix(&s.env.name, &s.facts.tasks, keep)
                .unwrap_or_else(|| format!("check `evoctl status {}`", s.env.name))
        } else {
            format!("ECS has not started the wanted task: check `evoctl status {}` and the service events", s.env.name)
        };
        found.push(one(s.env, evidence, fix));
    }
    found
}

pub(super) fn by_number<'a>(subjects: &'a [Subject<'a>]) -> BTreeMap<&'a str, Vec<&'a Subject<'a>>> {
    let mut groups: BTreeMap<&str, Vec<&Subject<'_>>> = BTreeMap::new();
    for s in subjects {
        groups.entry(s.env.number.as_str()).or_default().push(s);
    }
    groups
}

pub(super) fn one_live_env(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for (number, group) in by_number(subjects) {
        let live: Vec<&&Subject<'_>> = group.iter().filter(|s| !s.facts.tasks.is_empty()).collect();
        if live.len() > 1 {
            let listed: Vec<String> =
                live.iter().map(|s| format!("{} ({} live task(s))", s.env.name, s.facts.tasks.len())).collect();
            found.push(Hit {
                severity: None,
                envs: live.iter().map(|s| s.env.name.clone()).collect(),
                evidence: format!("{} are live together on number `{number}`", listed.join(" and ")),
                fix:
                    "scale every environment to its configured size, the one going down first: `evoctl enforce --apply`"
                        .into(),
            });
        }
        let always_on: Vec<&&Subject<'_>> =
            group.iter().filter(|s| s.env.scaling.is_some_and(|scaling| scaling.min > 0)).collect();
        if always_on.len() > 1 {
            let names: Vec<String> = always_on.iter().map(|s| s.env.name.clone()).collect();
            found.push(Hit {
                severity: None,
                evidence: format!(
                    "evoctl.toml keeps {} running together on number `{number}` (scaling min > 0)",
                    names.join(" and ")
                ),
                envs: names,
                fix: "set scaling = { min = 0, max = 0 } for all but one of them, or give environments on different numbers their own `number` label".into(),
            });
        }
    }
    found
}

pub(super) fn deployment_overlap(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects.iter().filter(|s| singleton(s)) {
        let d = s.facts.service.deployment;
        if d.maximum_percent <= 100 && d.minimum_healthy_percent == 0 {
            continue;
        }
        let why = if d.maximum_percent > 100 {
            "a deploy starts the new task before stopping the old one: two connections on one number"
        } else {
            "a one-task service cannot deploy (its only task may not stop and no extra may start)"
        };
        found.push(one(
            s.env,
            format!(
                "deploymentConfiguration maximumPercent {} / minimumHealthyPercent {}: {why}",
                d.maximum_percent, d.minimum_healthy_percent
            ),
            format!(
                "set maximumPercent 100 and minimumHealthyPercent 0 (SST: transform.service {{ deploymentMaximumPercent: 100, deploymentMinimumHealthyPercent: 0 }}; now: `aws ecs update-service --cluster {} --service {} --deployment-configuration maximumPercent=100,minimumHealthyPercent=0`)",
                s.env.cluster, s.env.service
            ),
        ));
    }
    found
}

pub(super) fn az_rebalancing(subjects: &[Subject<'_>]) -> Found {
    subjects
        .iter()
        .filter(|s| singleton(s) && s.facts.service.az_rebalancing.as_deref() == Some("ENABLED"))
        .map(|s| {
            one(
                s.env,
                "availabilityZoneRebalancing ENABLED: a rebalance starts a task before stopping one".into(),
                format!(
                    "`aws ecs update-service --cluster {} --service {} --availability-zone-rebalancing DISABLED` (SST: transform.service {{ availabilityZoneRebalancing: \"DISABLED\" }})",
                    s.env.cluster, s.env.service
                ),
            )
        })
        .collect()
}

pub(super) fn scaling_schedule(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let Some(want) = s.env.scaling else { continue };
        let resource = format!("service/{}/{}", s.env.cluster, s.env.service);
        for action in &s.facts.scheduled_actions {
            let lifts = [action.min_capacity, action.max_capacity].into_iter().flatten().any(|c| c > want.max as i32);
            if lifts {
                let range = |c: Option<i32>| c.map_or("-".to_owned(), |c| c.to_string());
                found.push(one(
                    s.env,
                    format!(
                        "scheduled action {} ({}) sets min/max {}/{}, above the configured {want}",
                        action.name,
                        action.schedule,
                        range(action.min_capacity),
                        range(action.max_capacity)
                    ),
                    format!(
                        "`aws application-autoscaling delete-scheduled-action --service-namespace ecs --scalable-dimension ecs:service:DesiredCount --resource-id {resource} --scheduled-action-name {}`",
                        action.name
                    ),
                ));
            }
        }
        let target_max = s.facts.target.map_or(0, |t| t.max_capacity);
        if !s.facts.scaling_policies.is_empty() && target_max > want.max as i32 {
            found.push(one(
                s.env,
                format!(
                    "scaling policies {} can scale to the target's max {target_max}, above the configured {want}",
                    s.facts.scaling_policies.join(", ")
                ),
                format!("evoctl scale {} --apply (sets the target back to {want})", s.env.name),
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::guard::rules::testing::{env, facts, run};

    #[test]
    fn a_config_that_keeps_two_envs_of_one_number_running_is_found_and_labels_separate_them() {
        let mut envs = [env("a", "a", 1, 1), env("b", "b", 1, 1)];
        let facts = [facts("a", &[]), facts("b", &[])];
        let found = run("one-live-env", &envs, &facts);
        assert_eq!(found.len(), 1);
        assert!(found[0].evidence.starts_with("evoctl.toml keeps a and b running together"), "{}", found[0].evidence);
        envs[1].number = "other".into();
        assert!(run("one-live-env", &envs, &facts).is_empty());
    }
}
