//! The conflict loop: WhatsApp's conflict/replaced lines in the task logs, the sign that two
//! connections hold one number right now.

use super::{Found, Subject, one};

pub(super) fn conflict_loop(subjects: &[Subject<'_>]) -> Found {
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
