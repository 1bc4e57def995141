//! Where a stand-in process keeps its instances' Signal keys, as 2.3.7's `defineAuthState` picks
//! the store (`whatsapp.baileys.service.ts:556-574`): a session provider, Redis (all of the
//! session with `CACHE_REDIS_SAVE_INSTANCES`, the keys beside the database's creds with the
//! cache on), or files under `/evolution/instances/<id>` (`use-multi-file-auth-state-prisma.ts`,
//! the image's work dir being `/evolution`). A store outside the task (a provider, a Redis not on
//! loopback, an EFS volume mounted at or above the directory) is shared by every task that
//! names it and outlives them; the task's own disk, a loopback Redis (a sidecar) and a cache
//! without a URI (keys dropped) hold keys for one process only, so a replacement task finds the
//! creds in the database without their keys. The lab's own copy of these facts.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The directory 2.3.7 writes key files to.
pub const INSTANCES_DIR: &str = "/evolution/instances";

/// A container mount: its path and, for an EFS volume, the file system id.
pub type MountSpec = (String, Option<String>);

/// One process's key store: the instance ids whose Signal keys it can read.
#[derive(Debug, Clone)]
pub struct KeyStore {
    /// Where the keys are, for snapshots (`redis:…`, `efs:…`, `provider:…`, `task-disk`, …).
    pub place: String,
    pub persistent: bool,
    pub ids: Arc<Mutex<HashSet<String>>>,
}

impl KeyStore {
    /// A store of this process alone.
    pub fn task(place: &str) -> KeyStore {
        KeyStore { place: place.to_owned(), persistent: false, ids: Arc::default() }
    }

    pub fn has(&self, id: &str) -> bool {
        self.ids.lock().expect("lab lock").contains(id)
    }

    pub fn put(&self, id: &str) {
        self.ids.lock().expect("lab lock").insert(id.to_owned());
    }

    pub fn remove(&self, id: &str) {
        self.ids.lock().expect("lab lock").remove(id);
    }
}

/// The store a task's settings name: `Ok(place)` for one outside the task (shared by name),
/// `Err(place)` for one that dies with it.
pub fn place(env: &indexmap::IndexMap<String, String>, mounts: &[MountSpec]) -> Result<String, String> {
    let image = |key: &str| super::env::IMAGE_DOTENV.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string());
    let raw = |key: &str| env.get(key).cloned().or_else(|| image(key));
    let truth = |key: &str| raw(key).as_deref() == Some("true");
    let redis = |uri: Option<String>| match uri.filter(|u| !u.is_empty()) {
        None => Err("dropped (no cache engine)".to_owned()),
        Some(uri) if loopback(&uri) => Err(format!("task-redis:{uri}")),
        Some(uri) => Ok(format!("redis:{uri}/{}", raw("CACHE_REDIS_PREFIX_KEY").unwrap_or_default())),
    };
    if truth("PROVIDER_ENABLED") {
        return Ok(format!("provider:{}", raw("PROVIDER_HOST").unwrap_or_default()));
    }
    let redis_on = truth("CACHE_REDIS_ENABLED");
    if redis_on && truth("CACHE_REDIS_SAVE_INSTANCES") {
        return redis(raw("CACHE_REDIS_URI"));
    }
    if !truth("DATABASE_SAVE_DATA_INSTANCE") {
        return Err("nowhere".into());
    }
    if redis_on {
        return redis(raw("CACHE_REDIS_URI"));
    }
    let covering = mounts.iter().filter(|(path, _)| {
        let path = path.trim_end_matches('/');
        path.is_empty() || INSTANCES_DIR == path || INSTANCES_DIR.strip_prefix(path).is_some_and(|r| r.starts_with('/'))
    });
    match covering.max_by_key(|(path, _)| path.trim_end_matches('/').len()) {
        Some((_, Some(fs))) => Ok(format!("efs:{fs}")),
        _ => Err("task-disk".into()),
    }
}

fn loopback(uri: &str) -> bool {
    let host = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').filter(|(h, _)| !h.ends_with(']') || h.starts_with('[')).map_or(host, |(h, _)| h);
    matches!(host, "localhost" | "[::1]" | "0.0.0.0") || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_store() {
        let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let remote = ("CACHE_REDIS_URI", "redis://redis.internal:6379/2");
        assert_eq!(place(&env(&[remote]), &[]), Ok("redis:redis://redis.internal:6379/2/evolution".into()));
        assert_eq!(place(&env(&[]), &[]), Err("task-redis:redis://localhost:6379/6".into()));
        let off = ("CACHE_REDIS_ENABLED", "false");
        assert_eq!(place(&env(&[off]), &[]), Err("task-disk".into()));
        let efs = [("/evolution/instances".to_owned(), Some("fs-1".to_owned()))];
        assert_eq!(place(&env(&[off]), &efs), Ok("efs:fs-1".into()));
        let bind = [("/evolution/instances".to_owned(), None)];
        assert_eq!(place(&env(&[off]), &bind), Err("task-disk".into()));
        assert_eq!(place(&env(&[off, ("DATABASE_SAVE_DATA_INSTANCE", "false")]), &[]), Err("nowhere".into()));
    }
}
