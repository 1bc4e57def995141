//! Guard invariants: every combination of staging/production live task counts (0, 1, 2) and
//! configured scaling, times every mutating command. Judged on the lab's own task timeline, not
//! on evoctl's view: no task may be started in one environment while another environment of the
//! number has a live task, a command that succeeds ends with at most one environment live, and a
//! command that fails must have stopped (refused, exit 4, or found nothing to act on, exit 3)
//! before changing anything.

use crate::support::{Lab, creations_since, in_parallel, live_clusters_at, text};
use serde_json::Value;

const COMMANDS: &[&[&str]] = &[
    &["scale", "staging", "--apply", "--timeout", "30s"],
    &["scale", "production", "--apply", "--timeout", "30s"],
    &["enforce", "--apply", "--timeout", "30s"],
    &["connect", "production", "--enforce", "--stable-for", "300ms", "--timeout", "30s"],
    &["instance", "create", "production"],
];

fn changes(journal: &[Value]) -> Vec<String> {
    journal
        .iter()
        .filter(|e| {
            ["RegisterScalableTarget", "UpdateService", "ExecuteCommand"].contains(&e["action"].as_str().unwrap())
        })
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

fn run_case(staging: u32, production: u32, both_configured_up: bool, command: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("case.toml");
    std::fs::write(
        &scenario,
        format!(
            "extends = \"seed\"\ndescription = \"staging {staging}, production {production}\"\n\
             [services.\"alinhou-staging/EvolutionService\"]\ndesired_count = {staging}\nscaling = {{ min = {staging}, max = {staging} }}\n\
             [services.\"alinhou-production/EvolutionService\"]\ndesired_count = {production}\nscaling = {{ min = {production}, max = {production} }}\n"
        ),
    )
    .unwrap();
    let lab = Lab::start_with(scenario.to_str().unwrap(), &["--auto-scan-after-ms", "300"]);
    lab.wait_settled();
    let mut evoctl = lab.evoctl();
    if both_configured_up {
        let path = lab.dir.path().join("both-up.toml");
        let config = std::fs::read_to_string(lab.config_path()).unwrap().replacen(
            "[env.staging.scaling]\nmin = 0\nmax = 0",
            "[env.staging.scaling]\nmin = 1\nmax = 1",
            1,
        );
        std::fs::write(&path, config).unwrap();
        evoctl.arg("--config").arg(&path);
    }
    let before = lab.timeline();
    lab.control("DELETE", "/journal", None);
    let output = evoctl.args(command).output().unwrap();
    let timeline = lab.timeline();
    let case = format!(
        "staging {staging}, production {production}, config {}: {command:?} -> {:?}\n{}",
        if both_configured_up { "both 1/1" } else { "0/0 + 1/1" },
        output.status.code(),
        text(&output.stderr)
    );
    assert!(!text(&output.stderr).contains("panicked"), "{case}");
    assert_eq!(timeline[..before.len()], before[..], "{case}: the timeline only grows");
    // Both environments share one number: a task created in one while the other had a live
    // task is two connections on one number, whatever the end state.
    for created in creations_since(&timeline, before.len()) {
        let cluster = timeline[created]["cluster"].as_str().unwrap();
        let others: Vec<String> = live_clusters_at(&timeline, created).into_iter().filter(|c| c != cluster).collect();
        assert!(others.is_empty(), "{case}: {} started in {cluster} while {others:?} live", timeline[created]);
    }
    match output.status.code() {
        Some(0) => {
            let after = live_clusters_at(&timeline, timeline.len());
            assert!(after.len() <= 1, "{case}: ends with {after:?} live");
        }
        // Refused as unsafe, or nothing to act on: either way before changing anything.
        Some(3) | Some(4) => {
            assert!(changes(&lab.journal()).is_empty(), "{case}: failed after changing something");
            assert_eq!(timeline.len(), before.len(), "{case}: a task changed: {:#?}", &timeline[before.len()..]);
            assert!(text(&output.stderr).contains("fix: "), "{case}");
        }
        _ => panic!("{case}: neither done nor refused"),
    }
}

#[test]
fn no_mutating_command_leaves_two_environments_live() {
    let mut cases = Vec::new();
    for staging in 0..=2 {
        for production in 0..=2 {
            for both in [false, true] {
                for command in COMMANDS {
                    cases.push((staging, production, both, *command));
                }
            }
        }
    }
    // Four at a time: each case is its own lab.
    in_parallel(&cases, 4, |&(s, p, both, command)| run_case(s, p, both, command));
}
