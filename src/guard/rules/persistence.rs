//! Session persistence: the WhatsApp session (Baileys' creds and Signal keys) is kept where a
//! replaced task finds it again: an error for a protected environment (its number is logged out
//! by the next deploy), a warning for any other.

use super::{Found, Hit, Severity, Subject};
use crate::guard::auth_state;

pub(super) fn session_persistence(subjects: &[Subject<'_>]) -> Found {
    subjects
        .iter()
        .filter_map(|s| {
            let problem = s.facts.auth_state.problem()?;
            Some(Hit {
                envs: vec![s.env.name.clone()],
                severity: Some(if s.env.protected { Severity::Error } else { Severity::Warning }),
                evidence: problem,
                fix: auth_state::fix(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::guard::rules::Severity;
    use crate::guard::rules::testing::{env, facts, run};

    #[test]
    fn keys_on_the_task_disk_are_an_error_when_protected_and_a_warning_otherwise() {
        let mut production = env("production", "p", 1, 1);
        production.protected = true;
        let envs = [env("staging", "s", 0, 0), production];
        let files = [("CACHE_REDIS_ENABLED", "false")];
        let found = run("session-persistence", &envs, &[facts("staging", &files), facts("production", &files)]);
        let severities: Vec<(&str, Severity)> = found.iter().map(|f| (f.envs[0].as_str(), f.severity)).collect();
        assert_eq!(severities, [("staging", Severity::Warning), ("production", Severity::Error)]);
        assert!(found[1].evidence.contains("/evolution/instances/<instance id>"), "{}", found[1].evidence);
        assert!(found[1].fix.contains("CACHE_REDIS_SAVE_INSTANCES=true"));
        let redis = [("CACHE_REDIS_URI", "redis://r.internal:6379/1")];
        assert!(run("session-persistence", &envs, &[facts("staging", &redis), facts("production", &redis)]).is_empty());
    }
}
