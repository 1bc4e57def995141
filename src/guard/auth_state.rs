//! Where an environment's WhatsApp session (Baileys' creds and Signal keys) lives, read from the
//! task definition as Evolution 2.3.7 reads it. `defineAuthState` takes the first of
//! (`whatsapp.baileys.service.ts:556-574`): `PROVIDER_ENABLED` (an external provider holds all
//! of it); `CACHE_REDIS_ENABLED` and `CACHE_REDIS_SAVE_INSTANCES` (one Redis hash holds all of
//! it); `DATABASE_SAVE_DATA_INSTANCE` (the creds in the database's `Session` table, every other
//! key in Redis when `CACHE_REDIS_ENABLED`, else in files under `/evolution/instances/<id>`,
//! `use-multi-file-auth-state-prisma.ts:87-99`, the image's work dir being `/evolution`); with
//! none of them every connect throws. Flags are `=== 'true'`; unset variables take the image's
//! `.env`. A Redis on a loopback host is a sidecar of the one task, and a directory outlives the
//! task only on an EFS volume mounted at or above it.

use super::compared::{Known, on_loopback};
use crate::aws::taskdef::Mount;
use indexmap::IndexMap;

/// The directory 2.3.7 keeps Signal keys in without Redis (`INSTANCE_DIR` under the image's
/// `WORKDIR /evolution`).
pub const INSTANCES_DIR: &str = "/evolution/instances";

/// The variables that decide it (a `secrets` entry of one of these is read, as the compared ones
/// are).
pub const STORE_VARIABLES: &[&str] = &[
    "PROVIDER_ENABLED",
    "CACHE_REDIS_ENABLED",
    "CACHE_REDIS_SAVE_INSTANCES",
    "CACHE_REDIS_URI",
    "DATABASE_SAVE_DATA_INSTANCE",
];

/// Where the Signal keys live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthState {
    /// `PROVIDER_ENABLED`: an external session provider.
    Provider,
    /// `CACHE_REDIS_SAVE_INSTANCES`: creds and keys in Redis (`uri` as shown: a secret by ARN).
    Redis { uri: String },
    /// `DATABASE_SAVE_DATA_INSTANCE` with the Redis cache: creds in the database, keys in Redis.
    DatabaseAndRedis { uri: String },
    /// `DATABASE_SAVE_DATA_INSTANCE` without Redis, with an EFS volume at or above the directory.
    DatabaseAndVolume { path: String, file_system: String },
    /// Keys in files on the task's ephemeral disk (`bind`: a non-EFS volume mounted there).
    TaskDisk { bind: Option<String> },
    /// Keys in a Redis on the task's own loopback: a sidecar that dies with the task.
    TaskRedis { uri: String, save_instances: bool },
    /// `CACHE_REDIS_ENABLED` with an empty `CACHE_REDIS_URI`: no cache engine, keys dropped.
    NoCacheEngine { save_instances: bool },
    /// None of the three stores: every connect throws.
    Nowhere,
}

impl AuthState {
    /// Read a container's environment and mounts.
    pub fn of(environment: &IndexMap<String, Known>, mounts: &[Mount]) -> AuthState {
        // Image `.env` for an unset flag; a secret that could not be read counts as on.
        let flag = |name: &str, image: bool| match environment.get(name) {
            None => image,
            Some(Known::Plain(value) | Known::Read { value, .. }) => value == "true",
            Some(Known::Unread { .. }) => true,
        };
        let uri = match environment.get("CACHE_REDIS_URI") {
            None => Some("redis://localhost:6379/6".to_owned()),
            Some(Known::Plain(value) | Known::Read { value, .. }) if value.is_empty() => None,
            Some(Known::Plain(value) | Known::Read { value, .. }) => Some(value.clone()),
            Some(Known::Unread { arn, .. }) => Some(format!("(from {arn})")),
        };
        let redis_on = flag("CACHE_REDIS_ENABLED", true);
        let save_instances = flag("CACHE_REDIS_SAVE_INSTANCES", false);
        let in_redis = |uri: Option<String>, whole: fn(String) -> AuthState| match uri {
            None => AuthState::NoCacheEngine { save_instances },
            Some(uri) if on_loopback(&uri) => AuthState::TaskRedis { uri: shown_uri(&uri), save_instances },
            Some(uri) => whole(shown_uri(&uri)),
        };
        if flag("PROVIDER_ENABLED", false) {
            AuthState::Provider
        } else if redis_on && save_instances {
            in_redis(uri, |uri| AuthState::Redis { uri })
        } else if flag("DATABASE_SAVE_DATA_INSTANCE", true) {
            if redis_on {
                return in_redis(uri, |uri| AuthState::DatabaseAndRedis { uri });
            }
            let covering = mounts.iter().filter(|m| covers(&m.container_path, INSTANCES_DIR));
            let deepest = covering.max_by_key(|m| m.container_path.trim_end_matches('/').len());
            match deepest {
                Some(Mount { container_path, efs: Some(fs), .. }) => {
                    AuthState::DatabaseAndVolume { path: container_path.clone(), file_system: fs.clone() }
                }
                Some(mount) => AuthState::TaskDisk { bind: Some(mount.container_path.clone()) },
                None => AuthState::TaskDisk { bind: None },
            }
        } else {
            AuthState::Nowhere
        }
    }

    /// Whether the session survives a task replacement.
    pub fn persistent(&self) -> bool {
        matches!(
            self,
            AuthState::Provider
                | AuthState::Redis { .. }
                | AuthState::DatabaseAndRedis { .. }
                | AuthState::DatabaseAndVolume { .. }
        )
    }

    /// The claimed persistent directory doctor checks from inside the task.
    pub fn volume_path(&self) -> Option<&str> {
        match self {
            AuthState::DatabaseAndVolume { .. } => Some(INSTANCES_DIR),
            _ => None,
        }
    }

    /// Where the keys live, in a few words (`status`, `redeploy`, doctor).
    pub fn short(&self) -> String {
        match self {
            AuthState::Provider => "session provider (PROVIDER_ENABLED)".into(),
            AuthState::Redis { uri } => format!("Redis {uri} (CACHE_REDIS_SAVE_INSTANCES)"),
            AuthState::DatabaseAndRedis { uri } => format!("creds in the database, keys in Redis {uri}"),
            AuthState::DatabaseAndVolume { path, file_system } => {
                format!("creds in the database, keys on EFS {file_system} mounted at {path}")
            }
            AuthState::TaskDisk { .. } => format!("keys on the task's ephemeral disk ({INSTANCES_DIR})"),
            AuthState::TaskRedis { uri, .. } => format!("keys in the task's own Redis {uri}"),
            AuthState::NoCacheEngine { .. } => "keys dropped (CACHE_REDIS_URI empty)".into(),
            AuthState::Nowhere => "no auth-state store".into(),
        }
    }

    /// For a state that does not survive a replacement: what the settings say, and why that
    /// loses the session.
    pub fn problem(&self) -> Option<String> {
        const LOST: &str = "a replaced task (a deploy, scale, a crash, a Fargate retirement) brings the creds back without their Signal keys and the number must be linked again";
        Some(match self {
            AuthState::TaskDisk { bind } => {
                let place = match bind {
                    Some(path) => format!("the volume mounted at {path} is not EFS (a bind mount is the task's ephemeral disk)"),
                    None => format!("no EFS volume is mounted at or above {INSTANCES_DIR}: the task's ephemeral disk"),
                };
                format!(
                    "DATABASE_SAVE_DATA_INSTANCE is true and CACHE_REDIS_ENABLED is not: Evolution 2.3.7 keeps the creds in the database and every other Signal key in files under {INSTANCES_DIR}/<instance id>, and {place}; {LOST}"
                )
            }
            AuthState::TaskRedis { uri, save_instances } => format!(
                "CACHE_REDIS_ENABLED is true{} and CACHE_REDIS_URI is {uri}, on the task's own loopback (a sidecar, or the image's default): the Signal keys die with the task; {LOST}",
                if *save_instances { " with CACHE_REDIS_SAVE_INSTANCES" } else { "" }
            ),
            AuthState::NoCacheEngine { save_instances } => format!(
                "CACHE_REDIS_ENABLED is true{} but CACHE_REDIS_URI is empty: Evolution 2.3.7 creates no cache engine and silently drops the {} written to it",
                if *save_instances { " with CACHE_REDIS_SAVE_INSTANCES" } else { "" },
                if *save_instances { "creds and Signal keys" } else { "Signal keys" }
            ),
            AuthState::Nowhere => "PROVIDER_ENABLED, CACHE_REDIS_SAVE_INSTANCES (with CACHE_REDIS_ENABLED) and DATABASE_SAVE_DATA_INSTANCE are all off: Evolution 2.3.7 has no auth-state store and every connect fails".into(),
            _ => return None,
        })
    }
}

/// What `redeploy`, `scale` and `enforce` say before they replace `env`'s task while its keys
/// would not survive it; `after` names the change ("this redeploy").
pub fn replacement_warning(env: &str, auth: &AuthState, after: &str) -> String {
    format!(
        "{env}'s session keys are not kept outside the task ({}): the number will need a new link after {after} (`evoctl connect {env}`)",
        auth.short()
    )
}

/// The fix for a state that loses the session.
pub fn fix() -> String {
    format!(
        "set CACHE_REDIS_ENABLED=true, CACHE_REDIS_SAVE_INSTANCES=true and CACHE_REDIS_URI to a Redis outside the task, or mount an EFS volume at {INSTANCES_DIR} (mountPoints + volumes with efsVolumeConfiguration) and keep DATABASE_SAVE_DATA_INSTANCE=true; then deploy"
    )
}

/// A Redis URI without its credentials (`redis://user:pass@host/1?password=x` → `redis://host/1`).
fn shown_uri(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) if !uri.starts_with('(') => {
            // Credentials (`user:pass@`) and options (`?password=…`) left out.
            let rest = rest.split('?').next().unwrap_or_default();
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{host}")
        }
        _ => uri.to_owned(),
    }
}

/// Whether a mount at `mount` holds `dir` (the same directory or one above it).
fn covers(mount: &str, dir: &str) -> bool {
    let mount = mount.trim_end_matches('/');
    mount.is_empty() || dir == mount || dir.strip_prefix(mount).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(vars: &[(&str, &str)], mounts: &[(&str, Option<&str>)]) -> AuthState {
        let env = vars.iter().map(|(k, v)| (k.to_string(), Known::Plain(v.to_string()))).collect();
        let mounts: Vec<Mount> = mounts
            .iter()
            .map(|(path, efs)| Mount { container_path: path.to_string(), volume: "v".into(), efs: efs.map(Into::into) })
            .collect();
        AuthState::of(&env, &mounts)
    }

    #[test]
    fn the_first_store_2_3_7_picks_decides() {
        let remote = ("CACHE_REDIS_URI", "redis://u:secret@redis.internal:6379/2?password=secret");
        assert_eq!(
            state(&[remote], &[]),
            AuthState::DatabaseAndRedis { uri: "redis://redis.internal:6379/2".into() },
            "image .env: Redis on, DATABASE_SAVE_DATA_INSTANCE true"
        );
        assert_eq!(
            state(&[remote, ("CACHE_REDIS_SAVE_INSTANCES", "true")], &[]).short(),
            "Redis redis://redis.internal:6379/2 (CACHE_REDIS_SAVE_INSTANCES)"
        );
        assert_eq!(state(&[("PROVIDER_ENABLED", "true"), ("CACHE_REDIS_ENABLED", "false")], &[]), AuthState::Provider);
        let files = ("CACHE_REDIS_ENABLED", "false");
        assert_eq!(state(&[files], &[]), AuthState::TaskDisk { bind: None });
        assert_eq!(
            state(&[files], &[("/evolution/instances", None)]),
            AuthState::TaskDisk { bind: Some("/evolution/instances".into()) }
        );
        for path in ["/evolution/instances", "/evolution/instances/", "/evolution"] {
            assert!(state(&[files], &[(path, Some("fs-1"))]).persistent(), "{path}");
        }
        assert!(!state(&[files], &[("/evolution/instance", Some("fs-1"))]).persistent());
        assert!(!state(&[files], &[("/evolution/instances/x", Some("fs-1"))]).persistent());
        assert_eq!(
            state(&[], &[]),
            AuthState::TaskRedis { uri: "redis://localhost:6379/6".into(), save_instances: false }
        );
        assert_eq!(state(&[("CACHE_REDIS_URI", "")], &[]), AuthState::NoCacheEngine { save_instances: false });
        assert_eq!(state(&[files, ("DATABASE_SAVE_DATA_INSTANCE", "false")], &[]), AuthState::Nowhere);
        assert_eq!(state(&[files, ("DATABASE_SAVE_DATA_INSTANCE", "TRUE")], &[]), AuthState::Nowhere, "=== 'true'");
    }
}
