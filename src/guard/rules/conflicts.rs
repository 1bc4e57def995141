//! The conflict loop: WhatsApp's conflict/replaced lines in the task logs, the sign that two
//! connections hold one number. The fix names what ends it: the extra task of this environment
//! (`evoctl task stop`), the other environments of the number (`evoctl enforce --apply`), or,
//! with neither, a connection outside evoctl.toml; a loop that has ended is said so.

use super::{Found, Subject, one};
use crate::guard::conflicts;

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
            fix(s, subjects),
        ));
    }
    found
}

/// What ends the loop `s`'s log shows.
fn fix(s: &Subject<'_>, subjects: &[Subject<'_>]) -> String {
    let live = &s.facts.tasks;
    if let Some(stop) = conflicts::two_tasks_fix(&s.env.name, live) {
        return stop;
    }
    let others: Vec<&str> = subjects
        .iter()
        .filter(|o| o.env.name != s.env.name && o.env.number == s.env.number && !o.facts.tasks.is_empty())
        .map(|o| o.env.name.as_str())
        .collect();
    if !others.is_empty() {
        return format!(
            "{} of the same number {} live too: `evoctl enforce --apply` brings every environment to its configured scaling",
            others.join(" and "),
            if others.len() == 1 { "is" } else { "are" }
        );
    }
    let evidence = s.facts.conflicts.as_ref().expect("a loop was found");
    let now = match live.first() {
        Some(task) => format!("only {} of {} is live now", task.id, s.env.name),
        None => format!("{} has no live task now", s.env.name),
    };
    if evidence.goes_on_with(live) {
        format!(
            "{now} and no other environment of its number: another Evolution outside evoctl.toml (a local one, another account) holds this number: stop it"
        )
    } else {
        format!(
            "the loop ended at {} ({now}); nothing to stop: this rule looks back {} minutes, so it clears at {}",
            evidence.last_seen.as_deref().unwrap_or("-"),
            evidence.since_seconds / 60,
            evidence.clears_at().unwrap_or_else(|| "-".into())
        )
    }
}
