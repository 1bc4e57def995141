//! The rules catalogue: each rule has a stable id (used by `--rule` / `--skip`, in JSON and in
//! CI annotations), a severity, and a check that turns facts into findings carrying the
//! evidence it saw and the fix. Settings that may be secret are compared by fingerprint and never
//! printed.
//!
//! This module holds the catalogue and the finding types; each family of checks lives in a file
//! of its own: [`scaling`] (how many tasks can run on a number), [`isolation`] (what two
//! environments must not share), [`settings`] (one container's own settings), [`app`] (the app
//! Lambda and the webhook it receives), [`persistence`] (where the WhatsApp session's keys
//! live), [`exec`] (ECS Exec readiness) and [`conflicts`] (the
//! conflict loop in the task logs).

mod app;
mod conflicts;
mod exec;
mod isolation;
mod persistence;
mod scaling;
mod settings;

pub use exec::platform_ok;
pub use settings::del_instance_minutes;

use super::facts::EnvFacts;
use crate::config::Environment;
use serde::Serialize;

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
    /// A severity of this finding other than the rule's.
    severity: Option<Severity>,
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
                severity: hit.severity.unwrap_or(self.severity),
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
        check: scaling::scaling,
    },
    Rule {
        id: "live-tasks",
        severity: Severity::Error,
        summary: "live tasks equal desiredCount; never two for a singleton",
        check: scaling::live_tasks,
    },
    Rule {
        id: "one-live-env",
        severity: Severity::Error,
        summary: "no two environments of one number live (or configured to run) together",
        check: scaling::one_live_env,
    },
    Rule {
        id: "deployment-overlap",
        severity: Severity::Error,
        summary: "singleton deploys stop before they start (maximumPercent 100, minimumHealthyPercent 0)",
        check: scaling::deployment_overlap,
    },
    Rule {
        id: "az-rebalancing",
        severity: Severity::Error,
        summary: "AZ rebalancing off for a singleton (it starts before it stops)",
        check: scaling::az_rebalancing,
    },
    Rule {
        id: "scaling-schedule",
        severity: Severity::Error,
        summary: "no scheduled action or policy can lift an environment above its configured max",
        check: scaling::scaling_schedule,
    },
    Rule {
        id: "shared-database",
        severity: Severity::Error,
        summary: "distinct DATABASE_CONNECTION_URI (host, database, schema) per environment",
        check: isolation::shared_database,
    },
    Rule {
        id: "shared-client-name",
        severity: Severity::Error,
        summary: "distinct DATABASE_CONNECTION_CLIENT_NAME per environment",
        check: isolation::shared_client_name,
    },
    Rule {
        id: "shared-redis",
        severity: Severity::Error,
        summary: "distinct CACHE_REDIS_URI + CACHE_REDIS_PREFIX_KEY per environment",
        check: isolation::shared_redis,
    },
    Rule {
        id: "shared-api-key",
        severity: Severity::Error,
        summary: "distinct AUTHENTICATION_API_KEY per environment",
        check: isolation::shared_api_key,
    },
    Rule {
        id: "shared-server-url",
        severity: Severity::Warning,
        summary: "distinct SERVER_URL per environment (the only discriminator in webhook payloads)",
        check: isolation::shared_server_url,
    },
    Rule {
        id: "shared-phone-client",
        severity: Severity::Warning,
        summary: "distinct CONFIG_SESSION_PHONE_CLIENT per environment (names the linked device)",
        check: isolation::shared_phone_client,
    },
    Rule {
        id: "default-api-key",
        severity: Severity::Error,
        summary: "AUTHENTICATION_API_KEY set, and not the image's public default",
        check: settings::default_api_key,
    },
    Rule {
        id: "database-provider",
        severity: Severity::Error,
        summary: "DATABASE_PROVIDER set (the image's start script exits without it)",
        check: settings::database_provider,
    },
    Rule {
        id: "del-instance",
        severity: Severity::Error,
        summary: "DEL_INSTANCE is not a number of minutes (that deletes unpaired instances)",
        check: settings::del_instance,
    },
    Rule {
        id: "log-baileys",
        severity: Severity::Warning,
        summary: "LOG_BAILEYS is a level pino knows (another value fails every connect)",
        check: settings::log_baileys,
    },
    Rule {
        id: "phone-version",
        severity: Severity::Warning,
        summary: "no CONFIG_SESSION_PHONE_VERSION (2.3.7 ignores it: the pin holds nothing)",
        check: settings::phone_version,
    },
    Rule {
        id: "instance-names",
        severity: Severity::Error,
        summary: "distinct Evolution instance names per environment",
        check: isolation::instance_names,
    },
    Rule {
        id: "app-expectations",
        severity: Severity::Error,
        summary: "the app Lambda's environment matches [env.NAME.app] expect",
        check: app::app_expectations,
    },
    Rule {
        id: "exec-readiness",
        severity: Severity::Error,
        summary: "protected environments can be reached with ECS Exec (flag, agent, platform >= 1.4.0)",
        check: exec::exec_readiness,
    },
    Rule {
        id: "webhook-jwt",
        severity: Severity::Error,
        summary: "a configured webhook has a jwt_secret that exists and is not empty",
        check: app::webhook_jwt,
    },
    Rule {
        id: "session-persistence",
        severity: Severity::Error,
        summary: "the WhatsApp session's Signal keys outlive the task (Redis, a provider or EFS; an error when protected, else a warning)",
        check: persistence::session_persistence,
    },
    Rule {
        id: "conflict-loop",
        severity: Severity::Error,
        summary: "no conflict/replaced loop in the task logs of the last 15 minutes",
        check: conflicts::conflict_loop,
    },
];

/// The rule with this id.
pub fn find(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|rule| rule.id == id)
}
type Found = Vec<Hit>;

fn one(env: &Environment, evidence: String, fix: String) -> Hit {
    Hit { envs: vec![env.name.clone()], severity: None, evidence, fix }
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
}

/// Environments and facts built in memory for the checks' unit tests.
#[cfg(test)]
mod testing {
    use super::*;
    use crate::aws::discovery::{DeploymentSettings, ServiceState};
    use crate::guard::compared::{IsolationSettings, Known};
    use crate::guard::facts::WebhookSecret;

    pub fn env(name: &str, instance: &str, min: u32, max: u32) -> Environment {
        Environment::for_test(name, instance, min, max)
    }

    pub fn facts(name: &str, vars: &[(&str, &str)]) -> EnvFacts {
        let environment = vars.iter().map(|(k, v)| (k.to_string(), Known::Plain(v.to_string()))).collect();
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
            settings: IsolationSettings::from_environment(&environment),
            auth_state: crate::guard::auth_state::AuthState::of(&environment, &[]),
            app: None,
            webhook_secret: WebhookSecret::NoWebhook,
            conflicts: None,
        }
    }

    pub fn run(id: &str, envs: &[Environment], facts: &[EnvFacts]) -> Vec<Finding> {
        let subjects: Vec<Subject<'_>> = envs.iter().zip(facts).map(|(env, facts)| Subject { env, facts }).collect();
        find(id).unwrap().check(&subjects)
    }
}
