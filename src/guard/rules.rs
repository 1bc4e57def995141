//! The rules catalogue: each rule has a stable id (used by `--rule` / `--skip`, in JSON and in
//! CI annotations), a severity, and a check that turns facts into findings carrying the
//! evidence it saw and the fix. Settings that may be secret are compared by fingerprint and never
//! printed.

use super::facts::{ApiKey, AppFacts, EnvFacts, Fingerprint, WebhookSecret};
use crate::config::Environment;
use serde::Serialize;
use std::collections::BTreeMap;

/// How bad a finding is. Both fail an audit; the severity sets the CI annotation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One environment with its facts, as the checks see it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub env: &'a Environment,
    pub facts: &'a EnvFacts,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    /// The environments involved (one, or several for cross-environment rules).
    pub envs: Vec<String>,
    /// Where each of `envs` is: its account id and region (in the same order).
    pub locations: Vec<Location>,
    pub evidence: String,
    pub fix: String,
}

/// An environment's account and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub env: String,
    pub account: String,
    pub region: String,
}

/// A rule of the catalogue.
#[derive(Debug)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
    check: fn(&[Subject<'_>]) -> Vec<Hit>,
}

/// What a check found, before the rule's id and severity are attached.
struct Hit {
    envs: Vec<String>,
    evidence: String,
    fix: String,
}

impl Rule {
    /// Run the check over every environment.
    pub fn check(&self, subjects: &[Subject<'_>]) -> Vec<Finding> {
        (self.check)(subjects)
            .into_iter()
            .map(|hit| Finding {
                rule: self.id,
                severity: self.severity,
                locations: hit
                    .envs
                    .iter()
                    .filter_map(|name| subjects.iter().find(|s| &s.env.name == name))
                    .map(|s| Location {
                        env: s.env.name.clone(),
                        account: s.facts.account.clone(),
                        region: s.facts.region.clone(),
                    })
                    .collect(),
                envs: hit.envs,
                evidence: hit.evidence,
                fix: hit.fix,
            })
            .collect()
    }
}

/// Every rule, in report order.
pub const RULES: &[Rule] = &[
    Rule {
        id: "scaling",
        severity: Severity::Error,
        summary: "scalable target min/max as configured, desiredCount inside it",
        check: scaling,
    },
    Rule {
        id: "live-tasks",
        severity: Severity::Error,
        summary: "live tasks equal desiredCount; never two for a singleton",
        check: live_tasks,
    },
    Rule {
        id: "one-live-env",
        severity: Severity::Error,
        summary: "no two environments of one number live (or configured to run) together",
        check: one_live_env,
    },
    Rule {
        id: "deployment-overlap",
        severity: Severity::Error,
        summary: "singleton deploys stop before they start (maximumPercent 100, minimumHealthyPercent 0)",
        check: deployment_overlap,
    },
    Rule {
        id: "az-rebalancing",
        severity: Severity::Error,
        summary: "AZ rebalancing off for a singleton (it starts before it stops)",
        check: az_rebalancing,
    },
    Rule {
        id: "scaling-schedule",
        severity: Severity::Error,
        summary: "no scheduled action or policy can lift an environment above its configured max",
        check: scaling_schedule,
    },
    Rule {
        id: "shared-database",
        severity: Severity::Error,
        summary: "distinct DATABASE_CONNECTION_URI (host, database, schema) per environment",
        check: shared_database,
    },
    Rule {
        id: "shared-client-name",
        severity: Severity::Error,
        summary: "distinct DATABASE_CONNECTION_CLIENT_NAME per environment",
        check: shared_client_name,
    },
    Rule {
        id: "shared-redis",
        severity: Severity::Error,
        summary: "distinct CACHE_REDIS_URI + CACHE_REDIS_PREFIX_KEY per environment",
        check: shared_redis,
    },
    Rule {
        id: "shared-api-key",
        severity: Severity::Error,
        summary: "distinct AUTHENTICATION_API_KEY per environment",
        check: shared_api_key,
    },
    Rule {
        id: "shared-server-url",
        severity: Severity::Warning,
        summary: "distinct SERVER_URL per environment (the only discriminator in webhook payloads)",
        check: shared_server_url,
    },
    Rule {
        id: "shared-phone-client",
        severity: Severity::Warning,
        summary: "distinct CONFIG_SESSION_PHONE_CLIENT per environment (names the linked device)",
        check: shared_phone_client,
    },
    Rule {
        id: "default-api-key",
        severity: Severity::Error,
        summary: "AUTHENTICATION_API_KEY set, and not the image's public default",
        check: default_api_key,
    },
    Rule {
        id: "database-provider",
        severity: Severity::Error,
        summary: "DATABASE_PROVIDER set (the image's start script exits without it)",
        check: database_provider,
    },
    Rule {
        id: "del-instance",
        severity: Severity::Error,
        summary: "DEL_INSTANCE is not a number of minutes (that deletes unpaired instances)",
        check: del_instance,
    },
    Rule {
        id: "instance-names",
        severity: Severity::Error,
        summary: "distinct Evolution instance names per environment",
        check: instance_names,
    },
    Rule {
        id: "app-expectations",
        severity: Severity::Error,
        summary: "the app Lambda's environment matches [env.NAME.app] expect",
        check: app_expectations,
    },
    Rule {
        id: "exec-readiness",
        severity: Severity::Error,
        summary: "protected environments can be reached with ECS Exec (flag, agent, platform >= 1.4.0)",
        check: exec_readiness,
    },
    Rule {
        id: "webhook-jwt",
        severity: Severity::Error,
        summary: "a configured webhook has a jwt_secret that exists and is not empty",
        check: webhook_jwt,
    },
    Rule {
        id: "conflict-loop",
        severity: Severity::Error,
        summary: "no conflict/replaced loop in the task logs of the last 15 minutes",
        check: conflict_loop,
    },
];

/// The rule with this id.
pub fn find(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|rule| rule.id == id)
}

type Found = Vec<Hit>;

fn one(env: &Environment, evidence: String, fix: String) -> Hit {
    Hit { envs: vec![env.name.clone()], evidence, fix }
}

fn singleton(subject: &Subject<'_>) -> bool {
    subject.env.scaling.map_or(subject.facts.service.desired_count <= 1, |s| s.max <= 1)
}

fn scaling(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let Some(want) = s.env.scaling else { continue };
        let mut issues = Vec::new();
        match s.facts.target {
            None => issues.push(format!("no scalable target (configured {want})")),
            Some(range) if (range.min_capacity, range.max_capacity) != (want.min as i32, want.max as i32) => {
                issues.push(format!("scalable target {}/{}, configured {want}", range.min_capacity, range.max_capacity))
            }
            Some(_) => {}
        }
        let desired = s.facts.service.desired_count;
        if desired < want.min as i32 || desired > want.max as i32 {
            issues.push(format!("desiredCount {desired} outside {want}"));
        }
        if !issues.is_empty() {
            found.push(one(s.env, issues.join("; "), format!("evoctl scale {} --apply", s.env.name)));
        }
    }
    found
}

fn live_tasks(subjects: &[Subject<'_>]) -> Found {
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
            let extras: Vec<&str> = s.facts.tasks[keep..].iter().map(|t| t.id.as_str()).collect();
            let stops: Vec<String> = extras
                .iter()
                .map(|id| format!("`aws ecs stop-task --cluster {} --task {id}`", s.env.cluster))
                .collect();
            format!("stop the extra task(s): {}, then `evoctl audit {}`", stops.join(", "), s.env.name)
        } else {
            format!("ECS has not started the wanted task: check `evoctl status {}` and the service events", s.env.name)
        };
        found.push(one(s.env, evidence, fix));
    }
    found
}

fn by_number<'a>(subjects: &'a [Subject<'a>]) -> BTreeMap<&'a str, Vec<&'a Subject<'a>>> {
    let mut groups: BTreeMap<&str, Vec<&Subject<'_>>> = BTreeMap::new();
    for s in subjects {
        groups.entry(s.env.number.as_str()).or_default().push(s);
    }
    groups
}

fn one_live_env(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for (number, group) in by_number(subjects) {
        let live: Vec<&&Subject<'_>> = group.iter().filter(|s| !s.facts.tasks.is_empty()).collect();
        if live.len() > 1 {
            let listed: Vec<String> =
                live.iter().map(|s| format!("{} ({} live task(s))", s.env.name, s.facts.tasks.len())).collect();
            found.push(Hit {
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

fn deployment_overlap(subjects: &[Subject<'_>]) -> Found {
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

fn az_rebalancing(subjects: &[Subject<'_>]) -> Found {
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

fn scaling_schedule(subjects: &[Subject<'_>]) -> Found {
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

/// Environments grouped by a fingerprinted setting; every group of two or more is a finding.
fn shared(subjects: &[Subject<'_>], value: impl Fn(&EnvFacts) -> Option<Fingerprint>, what: &str, fix: &str) -> Found {
    let mut groups: Vec<(Fingerprint, Vec<String>)> = Vec::new();
    for s in subjects {
        let Some(print) = value(s.facts) else { continue };
        match groups.iter_mut().find(|(p, _)| *p == print) {
            Some((_, envs)) => envs.push(s.env.name.clone()),
            None => groups.push((print, vec![s.env.name.clone()])),
        }
    }
    groups
        .into_iter()
        .filter(|(_, envs)| envs.len() > 1)
        .map(|(_, envs)| {
            let evidence = format!("{} use the same {what} (compared by hash)", envs.join(" and "));
            Hit { envs, evidence, fix: fix.to_owned() }
        })
        .collect()
}

fn shared_database(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| f.settings.database.clone(),
        "DATABASE_CONNECTION_URI host, database and schema",
        "give each environment its own database (or at least its own ?schema=): a shared one shares instance rows, sessions and names",
    )
}

fn shared_client_name(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| Some(f.settings.client_name.clone()),
        "DATABASE_CONNECTION_CLIENT_NAME",
        "set a distinct DATABASE_CONNECTION_CLIENT_NAME per environment (e.g. evolution_staging / evolution_production)",
    )
}

fn shared_redis(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| f.settings.redis.clone(),
        "CACHE_REDIS_URI and CACHE_REDIS_PREFIX_KEY",
        "give each environment its own Redis database number or CACHE_REDIS_PREFIX_KEY",
    )
}

fn shared_api_key(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| {
            Some(match &f.settings.api_key {
                ApiKey::Set(print) => print.clone(),
                ApiKey::Unset | ApiKey::PublicDefault => super::facts::public_default_fingerprint(),
                ApiKey::CodeDefault => super::facts::Fingerprint::of("apikey", super::facts::CODE_DEFAULT_API_KEY),
            })
        },
        "AUTHENTICATION_API_KEY",
        "give each environment its own AUTHENTICATION_API_KEY: with one key, staging tooling can drive production",
    )
}

fn shared_server_url(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| Some(f.settings.server_url.clone()),
        "SERVER_URL",
        "set SERVER_URL to each environment's own URL: it is the only field that tells their webhooks apart",
    )
}

fn shared_phone_client(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| Some(f.settings.phone_client.clone()),
        "CONFIG_SESSION_PHONE_CLIENT",
        "set CONFIG_SESSION_PHONE_CLIENT per environment (e.g. \"Evo STAGING\") so the phone's linked devices say which is which",
    )
}

fn default_api_key(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let evidence = match s.facts.settings.api_key {
            ApiKey::Unset => {
                "AUTHENTICATION_API_KEY is not set in the task definition: the image's public key from .env.example is live"
            }
            ApiKey::PublicDefault => "AUTHENTICATION_API_KEY is the public default key from the image's .env.example",
            ApiKey::CodeDefault => {
                "AUTHENTICATION_API_KEY is set to the empty string: Evolution 2.3.7 then uses its code default key BQYHJGJHJ, public in its source"
            }
            ApiKey::Set(_) => continue,
        };
        found.push(one(
            s.env,
            evidence.into(),
            "set a long random AUTHENTICATION_API_KEY for this environment (SST: a Secret linked into the service) and deploy".into(),
        ));
    }
    found
}

fn database_provider(subjects: &[Subject<'_>]) -> Found {
    subjects
        .iter()
        .filter(|s| s.facts.settings.database_provider.is_none())
        .map(|s| {
            one(
                s.env,
                "DATABASE_PROVIDER is not set: the image's deploy script exits 1 before the API starts".into(),
                "set DATABASE_PROVIDER=postgresql (or mysql / psql_bouncer) in the task environment".into(),
            )
        })
        .collect()
}

fn del_instance(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let Some(value) = s.facts.settings.del_instance.as_deref() else { continue };
        if let Some(minutes) = del_instance_minutes(value) {
            found.push(one(
                s.env,
                format!("DEL_INSTANCE is {value}: Evolution 2.3.7 reads {minutes} minutes, and deletes an instance (with its rows) that is not open {minutes} minutes after create"),
                "set DEL_INSTANCE=false".into(),
            ));
        }
    }
    found
}

/// The minutes 2.3.7 arms its delete timer with: `isBooleanString(v) ? v === 'true' :
/// parseInt(v) || false`, where validator.js's booleans are `true`, `false`, `1` and `0` (so
/// `1` and `0` mean false), and a number only counts when positive.
pub fn del_instance_minutes(value: &str) -> Option<i64> {
    if ["true", "false", "1", "0"].contains(&value) {
        return None;
    }
    // JavaScript's parseInt: leading whitespace, an optional sign, then the leading digits.
    let text = value.trim_start();
    let (sign, digits) = match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    };
    let digits: String = digits.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<i64>().ok().map(|n| sign * n).filter(|n| *n > 0)
}

fn instance_names(subjects: &[Subject<'_>]) -> Found {
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for s in subjects {
        groups.entry(s.env.instance.as_str()).or_default().push(s.env.name.clone());
    }
    groups
        .into_iter()
        .filter(|(_, envs)| envs.len() > 1)
        .map(|(name, envs)| {
            let evidence = format!("{} use the same instance name `{name}`", envs.join(" and "));
            let fix =
                "give each environment its own `instance` in evoctl.toml (and EVOLUTION_INSTANCE_NAME in the app)";
            Hit { envs, evidence, fix: fix.into() }
        })
        .collect()
}

fn app_expectations(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let (Some(app), Some(facts)) = (&s.env.app, &s.facts.app) else { continue };
        match facts {
            AppFacts::Missing { lambda } => found.push(one(
                s.env,
                format!("Lambda {lambda} not found"),
                format!("fix `lambda` under [env.{}.app] in evoctl.toml, or deploy the app", s.env.name),
            )),
            AppFacts::Found { lambda, values } => {
                let wrong: Vec<String> = app
                    .expect
                    .iter()
                    .filter_map(|(name, want)| match values.get(name).cloned().flatten() {
                        Some(actual) if &actual == want => None,
                        Some(actual) => Some(format!("{name} is `{actual}`, expected `{want}`")),
                        None => Some(format!("{name} is not set, expected `{want}`")),
                    })
                    .collect();
                if !wrong.is_empty() {
                    found.push(one(
                        s.env,
                        format!("Lambda {lambda}: {}", wrong.join("; ")),
                        format!(
                            "set them in the app's environment for this stage and deploy (or correct [env.{}.app] expect)",
                            s.env.name
                        ),
                    ));
                }
            }
        }
    }
    found
}

/// `major.minor.patch` at least 1.4.0; `LATEST` counts as new enough.
pub fn platform_ok(version: &str) -> bool {
    if version.eq_ignore_ascii_case("LATEST") {
        return true;
    }
    let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    parts.as_slice() >= [1, 4, 0].as_slice()
}

fn exec_readiness(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects.iter().filter(|s| s.env.protected) {
        let mut issues = Vec::new();
        if !s.facts.service.enable_execute_command {
            issues.push("enableExecuteCommand is off on the service".to_owned());
        }
        for task in &s.facts.tasks {
            if !task.enable_execute_command {
                issues.push(format!("task {} was started without ECS Exec", task.id));
                continue;
            }
            match task.exec_agent(&s.env.container) {
                Some("RUNNING") => {}
                Some(status) => issues.push(format!("ExecuteCommandAgent of task {} is {status}", task.id)),
                None => issues.push(format!("task {} has no ExecuteCommandAgent", task.id)),
            }
            if let Some(version) = task.platform_version.as_deref().filter(|v| !platform_ok(v)) {
                issues.push(format!("task {} runs platform version {version} (ECS Exec needs 1.4.0+)", task.id));
            }
        }
        if !issues.is_empty() {
            found.push(one(
                s.env,
                issues.join("; "),
                format!(
                    "`aws ecs update-service --cluster {} --service {} --enable-execute-command --force-new-deployment` (a new task gets a fresh agent); if the agent still stops, check the task role's ssmmessages permissions",
                    s.env.cluster, s.env.service
                ),
            ));
        }
    }
    found
}

fn webhook_jwt(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let evidence = match &s.facts.webhook_secret {
            WebhookSecret::NoWebhook | WebhookSecret::Present => continue,
            WebhookSecret::NotConfigured => {
                "the webhook has no jwt_secret: the receiver cannot tell Evolution's calls from anyone's".to_owned()
            }
            WebhookSecret::Missing(reference) => format!("the webhook secret {reference} does not exist"),
            WebhookSecret::Empty(reference) => {
                format!(
                    "the webhook secret {reference} is empty: an empty jwt_key breaks every webhook of the instance"
                )
            }
        };
        found.push(one(
            s.env,
            evidence,
            format!(
                "set jwt_secret under [env.{}.webhook] to a non-empty ssm:/ parameter or env: variable",
                s.env.name
            ),
        ));
    }
    found
}

fn conflict_loop(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let Some(evidence) = s.facts.conflicts.as_ref().filter(|c| c.is_loop) else { continue };
        let tasks: Vec<String> = evidence.tasks.iter().map(|t| t.task.clone()).collect();
        found.push(one(
            s.env,
            format!(
                "{} conflict/replaced lines in the last {}m{}, tasks {}, last seen {}",
                evidence.events,
                evidence.since_seconds / 60,
                evidence.period_seconds.map(|p| format!(", about every {p:.1} s per task")).unwrap_or_default(),
                tasks.join(", "),
                evidence.last_seen.as_deref().unwrap_or("-")
            ),
            format!(
                "two connections hold this number: stop the extra task or environment (`evoctl enforce --apply`), then `evoctl conflicts {}`",
                s.env.name
            ),
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_kebab_case() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        assert!(ids.iter().all(|id| id.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }

    use crate::aws::discovery::{DeploymentSettings, ServiceState};
    use crate::aws::taskdef::{ContainerSettings, EnvValue};
    use crate::guard::facts::IsolationSettings;

    fn env(name: &str, instance: &str, min: u32, max: u32) -> Environment {
        Environment::for_test(name, instance, min, max)
    }

    fn facts(name: &str, vars: &[(&str, &str)]) -> EnvFacts {
        let container = ContainerSettings {
            environment: vars.iter().map(|(k, v)| (k.to_string(), EnvValue::Plain(v.to_string()))).collect(),
            log_driver: None,
            log_group: None,
        };
        EnvFacts {
            env: name.into(),
            service: ServiceState {
                desired_count: 0,
                running_count: 0,
                pending_count: 0,
                task_definition: None,
                enable_execute_command: true,
                deployment: DeploymentSettings { maximum_percent: 100, minimum_healthy_percent: 0 },
                az_rebalancing: Some("DISABLED".into()),
                account: None,
            },
            account: "123456789012".into(),
            region: "us-east-1".into(),
            tasks: Vec::new(),
            target: None,
            scheduled_actions: Vec::new(),
            scaling_policies: Vec::new(),
            settings: IsolationSettings::from_container(&container),
            app: None,
            webhook_secret: WebhookSecret::NoWebhook,
            conflicts: None,
        }
    }

    fn run(id: &str, envs: &[Environment], facts: &[EnvFacts]) -> Vec<Finding> {
        let subjects: Vec<Subject<'_>> = envs.iter().zip(facts).map(|(env, facts)| Subject { env, facts }).collect();
        find(id).unwrap().check(&subjects)
    }

    #[test]
    fn del_instance_minutes_and_duplicate_instance_names_are_found() {
        let envs = [env("staging", "same", 0, 0), env("production", "same", 1, 1)];
        let facts = [facts("staging", &[("DEL_INSTANCE", "5")]), facts("production", &[("DEL_INSTANCE", "false")])];
        let found = run("del-instance", &envs, &facts);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].envs, ["staging"]);
        assert!(found[0].evidence.starts_with("DEL_INSTANCE is 5: "));
        let found = run("instance-names", &envs, &facts);
        assert_eq!(found[0].envs, ["staging", "production"]);
        assert_eq!(found[0].evidence, "staging and production use the same instance name `same`");
        // 2.3.7's parser: "1" and "0" are booleans (false), "5m" is 5 minutes, "0m" is off.
        for (value, armed) in [
            ("1", None),
            ("0", None),
            ("true", None),
            ("TRUE", None),
            ("5m", Some(5)),
            ("10min", Some(10)),
            ("0m", None),
            ("", None),
            (" 7", Some(7)),
        ] {
            assert_eq!(super::del_instance_minutes(value), armed, "{value:?}");
        }
        let parsed = [
            super::tests::facts("staging", &[("DEL_INSTANCE", "5m")]),
            super::tests::facts("production", &[("DEL_INSTANCE", "0")]),
        ];
        let found = run("del-instance", &envs, &parsed);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].envs, ["staging"]);
        assert!(
            found[0].evidence.starts_with("DEL_INSTANCE is 5m: Evolution 2.3.7 reads 5 minutes"),
            "{}",
            found[0].evidence
        );
    }

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

    #[test]
    fn bare_task_definitions_share_every_default_and_miss_the_provider() {
        let envs = [env("a", "a", 0, 0), env("b", "b", 1, 1)];
        let facts = [facts("a", &[]), facts("b", &[])];
        for id in ["shared-client-name", "shared-redis", "shared-api-key", "shared-server-url", "shared-phone-client"] {
            assert_eq!(run(id, &envs, &facts).len(), 1, "{id}");
        }
        assert!(run("shared-database", &envs, &facts).is_empty(), "an unset URI is not a shared database");
        assert_eq!(run("default-api-key", &envs, &facts).len(), 2);
        assert_eq!(run("database-provider", &envs, &facts).len(), 2);
    }

    #[test]
    fn platform_versions_below_1_4_0_are_not_exec_ready() {
        assert!(platform_ok("1.4.0"));
        assert!(platform_ok("LATEST"));
        assert!(platform_ok("1.10.0"));
        assert!(!platform_ok("1.3.0"));
    }
}
