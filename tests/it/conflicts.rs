//! `evoctl conflicts`: the conflict/replaced loop read from the task log group.

use crate::support::{Lab, json_stdout, text, wait_until};
use serde_json::json;
use std::time::Duration;

#[test]
fn conflicts_finds_the_loop_and_its_two_second_period() {
    let lab = Lab::start("seed");
    lab.link_production();

    let output = lab.evoctl().args(["conflicts", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "no conflict/replaced lines in /sst/cluster/alinhou-production-Cluster/EvolutionService/EvolutionService in the last 15m: no loop\n"
    );

    // A second task of the same service holds the same session: the loop starts.
    lab.control("POST", "/tasks", Some(&json!({"cluster": "alinhou-production", "service": "EvolutionService"})));
    let report = wait_until(Duration::from_secs(30), "six conflict lines", || {
        let output =
            lab.evoctl().args(["--output", "json", "conflicts", "production", "--since", "5m"]).output().unwrap();
        let report = json_stdout(&output);
        (report["events"].as_u64().unwrap() >= 6).then_some((output.status.code(), report, text(&output.stderr)))
    });
    let (code, report, stderr) = report;
    assert_eq!(code, Some(1));
    assert_eq!(report["loop"], true);
    assert_eq!(report["since_seconds"], 300);
    assert_eq!(report["tasks"].as_array().unwrap().len(), 2, "{report}");
    let period = report["period_seconds"].as_f64().unwrap();
    assert!((1.5..=2.6).contains(&period), "period {period}");
    assert!(stderr.contains("fix: two live connections hold this number"), "{stderr}");
}

#[test]
fn a_bad_since_is_a_usage_error() {
    let lab = Lab::start("seed");
    let output = lab.evoctl().args(["conflicts", "production", "--since", "15 minutes"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("has an unknown unit ` minutes`"), "{}", text(&output.stderr));
}
