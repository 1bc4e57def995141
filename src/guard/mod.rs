//! The guard: everything that keeps two connections off one WhatsApp number.
//!
//! [`facts`] reads each environment (concurrently), [`auth_state`] says where its WhatsApp
//! session's keys live, [`compared`] reduces a container's settings
//! to what the rules compare (fingerprints that mean the same thing in every account), [`rules`]
//! is the catalogue of isolation rules that turn facts into findings, [`plan`] computes and applies the safe order of scaling
//! changes, [`conflicts`] reads conflict-loop evidence from the task logs, and [`drift`] marks
//! what `status` shows as drifted or unsafe. Nothing here prints; commands render the results.

pub mod auth_state;
pub mod compared;
pub mod conflicts;
pub mod drift;
pub mod facts;
pub mod plan;
pub mod rules;

use crate::aws::Fleet;
use crate::config::{Config, Environment};
use crate::error::{Error, Result};
use facts::EnvFacts;
use rules::{Finding, RULES, Rule, Subject};
use std::time::Duration;

/// How far back the conflict-loop rule looks.
pub const CONFLICT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Which rules to run: all, or only `--rule` ids, minus `--skip` ids (unknown ids are a usage error).
pub fn select_rules(only: &[String], skip: &[String]) -> Result<Vec<&'static Rule>> {
    for id in only.iter().chain(skip) {
        if rules::find(id).is_none() {
            let known: Vec<&str> = RULES.iter().map(|r| r.id).collect();
            return Err(Error::usage(format!("unknown rule id `{id}`"), format!("use one of: {}", known.join(", "))));
        }
    }
    Ok(RULES
        .iter()
        .filter(|rule| only.is_empty() || only.iter().any(|id| id == rule.id))
        .filter(|rule| !skip.iter().any(|id| id == rule.id))
        .collect())
}

/// Read every environment of the config at once, each with its own account's credentials
/// (the cross-environment rules need them all); each result stands alone.
pub async fn collect_all(fleet: &Fleet, config: &Config) -> Vec<Result<EnvFacts>> {
    facts::collect_all(fleet, &config.environments, CONFLICT_WINDOW).await
}

/// Run `selected` rules over every environment and keep the findings that involve `focus`.
pub fn evaluate(
    environments: &[Environment],
    facts: &[EnvFacts],
    selected: &[&Rule],
    focus: &[&Environment],
) -> Vec<Finding> {
    let subjects: Vec<Subject<'_>> =
        environments.iter().zip(facts).map(|(env, facts)| Subject { env, facts }).collect();
    selected
        .iter()
        .flat_map(|rule| rule.check(&subjects))
        .filter(|finding| finding.envs.iter().any(|name| focus.iter().any(|env| &env.name == name)))
        .collect()
}
