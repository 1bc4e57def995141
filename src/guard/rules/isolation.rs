//! Isolation: what two environments must never share. Each `shared-*` rule groups the
//! environments by one setting's fingerprint ([`crate::guard::compared`]: a secret by the value it
//! injects or else by its full ARN, never by a parameter name that is local to an account; a
//! loopback database or Redis never, being the task's own) and reports every group of two or more,
//! saying how the members were compared; instance names are grouped the same way.

use super::{Found, Hit, Subject};
use crate::guard::compared::Compared;
use crate::guard::facts::EnvFacts;
use std::collections::BTreeMap;

/// Environments grouped by a fingerprinted setting; every group of two or more is a finding.
fn shared(subjects: &[Subject<'_>], value: impl Fn(&EnvFacts) -> Option<&Compared>, what: &str, fix: &str) -> Found {
    let mut groups: Vec<(Vec<&Compared>, Vec<String>)> = Vec::new();
    for s in subjects {
        let Some(compared) = value(s.facts) else { continue };
        match groups.iter_mut().find(|(members, _)| members[0].print == compared.print) {
            Some((members, envs)) => {
                members.push(compared);
                envs.push(s.env.name.clone());
            }
            None => groups.push((vec![compared], vec![s.env.name.clone()])),
        }
    }
    groups
        .into_iter()
        .filter(|(_, envs)| envs.len() > 1)
        .map(|(members, envs)| {
            let evidence = format!("{} use the same {what} ({})", envs.join(" and "), Compared::how(&members));
            Hit { envs, severity: None, evidence, fix: fix.to_owned() }
        })
        .collect()
}

pub(super) fn shared_database(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| f.settings.database.as_ref(),
        "DATABASE_CONNECTION_URI host, database and schema",
        "give each environment its own database (or at least its own ?schema=): a shared one shares instance rows, sessions and names, and on Evolution 2.4 one licence identity (its RuntimeConfig table: activating one activates both, and the licence server sees one instance)",
    )
}

pub(super) fn shared_client_name(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| Some(&f.settings.client_name),
        "DATABASE_CONNECTION_CLIENT_NAME",
        "set a distinct DATABASE_CONNECTION_CLIENT_NAME per environment (e.g. evolution_staging / evolution_production)",
    )
}

pub(super) fn shared_redis(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| f.settings.redis.as_ref(),
        "CACHE_REDIS_URI and CACHE_REDIS_PREFIX_KEY",
        "give each environment its own Redis database number or CACHE_REDIS_PREFIX_KEY",
    )
}

pub(super) fn shared_api_key(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| Some(&f.settings.api_key_value),
        "AUTHENTICATION_API_KEY",
        "give each environment its own AUTHENTICATION_API_KEY: with one key, staging tooling can drive production",
    )
}

pub(super) fn shared_server_url(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| Some(&f.settings.server_url),
        "SERVER_URL",
        "set SERVER_URL to each environment's own URL: it is the only field that tells their webhooks apart",
    )
}

pub(super) fn shared_phone_client(subjects: &[Subject<'_>]) -> Found {
    shared(
        subjects,
        |f| Some(&f.settings.phone_client),
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
            Hit { envs, severity: None, evidence, fix: fix.into() }
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
        for id in ["shared-client-name", "shared-api-key", "shared-server-url", "shared-phone-client"] {
            assert_eq!(run(id, &envs, &facts).len(), 1, "{id}");
        }
        assert!(run("shared-database", &envs, &facts).is_empty(), "an unset URI is not a shared database");
        assert!(run("shared-redis", &envs, &facts).is_empty(), "the image's default Redis is each task's localhost");
        assert_eq!(run("default-api-key", &envs, &facts).len(), 2);
        assert_eq!(run("database-provider", &envs, &facts).len(), 2);
    }

    #[test]
    fn sidecars_on_loopback_are_not_shared_and_remote_hosts_are_with_how_they_were_compared() {
        let envs = [env("a", "a", 0, 0), env("b", "b", 1, 1)];
        let on = |host: &str| {
            [
                ("DATABASE_CONNECTION_URI", format!("postgresql://u:p@{host}:5432/evolution")),
                ("CACHE_REDIS_URI", format!("redis://{host}:6379/1")),
            ]
        };
        let with = |name: &str, pairs: &[(&str, String)]| {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            facts(name, &pairs)
        };
        for host in ["localhost", "127.0.0.1", "[::1]", "0.0.0.0"] {
            let facts = [with("a", &on(host)), with("b", &on(host))];
            assert!(run("shared-database", &envs, &facts).is_empty(), "{host}");
            assert!(run("shared-redis", &envs, &facts).is_empty(), "{host}");
        }
        let facts = [with("a", &on("db.internal")), with("b", &on("DB.internal"))];
        let found = run("shared-database", &envs, &facts);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].evidence,
            "a and b use the same DATABASE_CONNECTION_URI host, database and schema (compared by SHA-256 of the values)"
        );
        assert_eq!(run("shared-redis", &envs, &facts).len(), 1);
    }
}
