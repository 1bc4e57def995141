//! Isolation: what two environments must never share. Each `shared-*` rule groups the
//! environments by one setting's fingerprint and reports every group of two or more; instance
//! names are grouped the same way.

use super::{Found, Hit, Subject};
use crate::guard::facts::{ApiKey, EnvFacts, Fingerprint};
use std::collections::BTreeMap;

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

pub(super) fn shared_database(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| f.settings.database.clone(),
        "DATABASE_CONNECTION_URI host, database and schema",
        "give each environment its own database (or at least its own ?schema=): a shared one shares instance rows, sessions and names",
    )
}

pub(super) fn shared_client_name(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| Some(f.settings.client_name.clone()),
        "DATABASE_CONNECTION_CLIENT_NAME",
        "set a distinct DATABASE_CONNECTION_CLIENT_NAME per environment (e.g. evolution_staging / evolution_production)",
    )
}

pub(super) fn shared_redis(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| f.settings.redis.clone(),
        "CACHE_REDIS_URI and CACHE_REDIS_PREFIX_KEY",
        "give each environment its own Redis database number or CACHE_REDIS_PREFIX_KEY",
    )
}

pub(super) fn shared_api_key(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| {
            Some(match &f.settings.api_key {
                ApiKey::Set(print) => print.clone(),
                ApiKey::Unset | ApiKey::PublicDefault => crate::guard::facts::public_default_fingerprint(),
                ApiKey::CodeDefault => Fingerprint::of("apikey", crate::guard::facts::CODE_DEFAULT_API_KEY),
            })
        },
        "AUTHENTICATION_API_KEY",
        "give each environment its own AUTHENTICATION_API_KEY: with one key, staging tooling can drive production",
    )
}

pub(super) fn shared_server_url(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| Some(f.settings.server_url.clone()),
        "SERVER_URL",
        "set SERVER_URL to each environment's own URL: it is the only field that tells their webhooks apart",
    )
}

pub(super) fn shared_phone_client(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| Some(f.settings.phone_client.clone()),
        "CONFIG_SESSION_PHONE_CLIENT",
        "set CONFIG_SESSION_PHONE_CLIENT per environment (e.g. \"Evo STAGING\") so the phone's linked devices say which is which",
    )
}

pub(super) fn instance_names(subjects: &[Subject<'_>]) -> Found {
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

#[cfg(test)]
mod tests {
    use crate::guard::rules::testing::{env, facts, run};

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
}
