//! `evoctl conflicts`: the conflict/replaced loop read from the environment's own streams of
//! the task log group.

use crate::support::{Lab, json_stdout, text, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

#[test]
fn conflicts_finds_the_loop_its_two_second_period_and_the_flapping_state() {
    let lab = Lab::start("seed");
    lab.link_production();

    let output = lab.evoctl().args(["conflicts", "production", "--sample", "2s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with(
            "conflict loop: no\nno conflict/replaced lines in /sst/cluster/alinhou-production-Cluster/EvolutionService/EvolutionService (streams EvolutionService/EvolutionService/*) in the last 15m\nstate:   0 change(s) in "
        ),
        "{stdout}"
    );
    assert!(stdout.contains(" of alinhou-production (open; "), "{stdout}");

    // A second task of the same service holds the same session: the loop starts.
    lab.control("POST", "/tasks", Some(&json!({"cluster": "alinhou-production", "service": "EvolutionService"})));
    let report = wait_until(Duration::from_secs(30), "six conflict lines", || {
        let output = lab
            .evoctl()
            .args(["--output", "json", "conflicts", "production", "--since", "5m", "--sample", "0"])
            .output()
            .unwrap();
        let report = json_stdout(&output);
        (report["logs"]["events"].as_u64().unwrap() >= 6).then_some((
            output.status.code(),
            report,
            text(&output.stderr),
        ))
    });
    let (code, report, stderr) = report;
    assert_eq!(code, Some(1));
    assert_eq!(report["loop"], true);
    assert_eq!(report["sampled"], serde_json::Value::Null);
    assert_eq!(report["logs"]["since_seconds"], 300);
    assert_eq!(report["logs"]["tasks"].as_array().unwrap().len(), 2, "{report}");
    let period = report["logs"]["period_seconds"].as_f64().unwrap();
    assert!((1.5..=2.6).contains(&period), "period {period}");
    assert_eq!(report["ongoing"], true);
    let extra = report["live_tasks"][1].as_str().unwrap().to_owned();
    let fix = format!(
        "two connections hold this number: stop the extra task: `evoctl task stop production {extra}` (keeps {}, the longest-running)",
        report["live_tasks"][0].as_str().unwrap()
    );
    assert_eq!(report["fix"], json!(fix));
    assert_eq!(stderr, format!("fix: {fix}\n"));

    // Sampled from one exec session, the live state flips between open and connecting.
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["--output", "json", "conflicts", "production", "--sample", "4s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let sampled = &json_stdout(&output)["sampled"];
    assert!(sampled["changes"].as_u64().unwrap() >= 2, "{sampled}");
    let mut states: Vec<&str> = sampled["states"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    states.sort_unstable();
    assert_eq!(states, ["connecting", "open"]);
    assert!(sampled["samples"].as_u64().unwrap() >= 8, "{sampled}");
    let executes = lab.journal().iter().filter(|e| e["action"] == "ExecuteCommand").count();
    assert_eq!(executes, 1, "the whole sample is one exec session");
}

#[test]
fn a_bad_since_is_a_usage_error() {
    let lab = Lab::start("seed");
    let output = lab.evoctl().args(["conflicts", "production", "--since", "15 minuets"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("`15 minuets` has an unknown unit `minuets`: use ms, s, m, h or d"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_loop_logged_by_staging_in_a_shared_group_is_staging_s_alone() {
    let lab = Lab::start("shared-log-group");
    lab.wait_settled();
    let output = lab.evoctl().args(["conflicts", "production", "--sample", "0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "conflict loop: no\nno conflict/replaced lines in /ecs/alinhou/EvolutionService (streams production/EvolutionService/*) in the last 15m\n"
    );
    assert_eq!(text(&output.stderr), "");

    // The loop in the window ended two minutes ago with the staging task that logged it: it
    // is reported, and nothing is to be done (exit 0).
    let output = lab.evoctl().args(["--output", "json", "conflicts", "staging", "--sample", "0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    let report = json_stdout(&output);
    assert_eq!(report["loop"], true);
    assert_eq!((&report["ongoing"], &report["fix"], &report["live_tasks"]), (&json!(false), &Value::Null, &json!([])));
    assert_eq!(report["logs"]["log_group"], "/ecs/alinhou/EvolutionService");
    assert_eq!(report["logs"]["log_streams"], json!({"prefix": "staging/EvolutionService/"}));
    assert_eq!(report["logs"]["events"], 4);
    assert_eq!(report["logs"]["tasks"], json!([{"task": "5a7c0e3d9b1f42c68e2d7a4b6c8f0e13", "events": 4}]));
    assert_eq!(report["logs"]["period_seconds"], 2.0);
    let last_seen = report["logs"]["last_seen"].as_str().unwrap();
    let output = lab.evoctl().args(["conflicts", "staging", "--sample", "0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with(&format!("conflict loop: ended (the last line at {last_seen}; none since)\n")),
        "{}",
        text(&output.stdout)
    );
}
