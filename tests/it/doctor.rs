//! `evoctl doctor`: every layer on the seed, and the first broken layer of each broken scenario.

use crate::support::{Lab, in_parallel, json_stdout, text};

/// The layers `doctor` reports, in order: the README's list, written out here so the code's own
/// list is not its oracle.
const LAYERS: [&str; 19] = [
    "credentials",
    "cluster",
    "service",
    "scaling",
    "tasks",
    "task-status",
    "platform",
    "exec-enabled",
    "exec-agent",
    "exec-trial",
    "evolution",
    "api-key",
    "whatsapp-reach",
    "instance",
    "instance-health",
    "webhook",
    "webhook-delivery",
    "conflicts",
    "isolation",
];

/// Scenario -> the first layer that fails (None: exit 0).
const FIRST_BROKEN: &[(&str, Option<&str>)] = &[
    ("seed", None),
    ("exec-disabled", Some("exec-enabled")),
    ("agent-stopped", Some("exec-agent")),
    ("default-api-key", Some("api-key")),
    ("conflict-loop", Some("tasks")),
    ("empty-jwt-key", Some("webhook")),
    ("staging-up", Some("isolation")),
    // Across accounts: production's own layers pass, and staging live in its own account is the
    // same isolation failure as in one account.
    ("two-accounts", None),
    ("two-accounts-both-live", Some("isolation")),
    // No route to WhatsApp: the probe from inside the task finds it.
    ("no-whatsapp-route", Some("whatsapp-reach")),
    // Staging's conflict lines in the group both stages share are not production's.
    ("shared-log-group", None),
];

#[test]
fn doctor_names_the_first_broken_layer_of_each_scenario() {
    in_parallel(FIRST_BROKEN, 6, |(scenario, first)| {
        let lab = Lab::start(scenario);
        lab.wait_settled();
        let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
        let report = json_stdout(&output);
        assert_eq!(report["schema"], "evoctl.doctor/v1");
        assert_eq!(report["first_broken"], serde_json::json!(first), "{scenario}: {report:#}");
        assert_eq!(output.status.code(), Some(if first.is_some() { 1 } else { 0 }), "{scenario}");
        let layers: Vec<&str> =
            report["checks"].as_array().unwrap().iter().map(|c| c["layer"].as_str().unwrap()).collect();
        assert_eq!(layers, LAYERS, "{scenario}: every layer is reported, in order");
        if *scenario == "exec-disabled" || *scenario == "agent-stopped" {
            // No exec is attempted without a running agent.
            assert!(lab.journal().iter().all(|e| e["action"] != "ExecuteCommand"), "{scenario}");
            let status_of = |layer: &str| {
                report["checks"].as_array().unwrap().iter().find(|c| c["layer"] == layer).unwrap()["status"].clone()
            };
            assert_eq!(status_of("exec-trial"), "SKIP");
            assert_eq!(status_of("isolation"), "FAIL", "the AWS-only layers still run");
        }
    });
}

#[test]
fn doctor_on_the_seed_reports_every_layer() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let output = lab.evoctl().args(["doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let statuses: Vec<(String, String)> = stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with("warn "))
        .map(|l| {
            let mut cells = l.split_whitespace();
            (cells.next().unwrap().to_owned(), cells.next().unwrap().to_owned())
        })
        .collect();
    let expected: Vec<(String, String)> = LAYERS
        .iter()
        .map(|l| {
            let status = match *l {
                "instance" => "WARN",
                "instance-health" => "SKIP",
                _ => "OK",
            };
            (l.to_string(), status.to_string())
        })
        .collect();
    assert_eq!(statuses, expected, "{stdout}");
    assert!(stdout.contains("exec-trial        OK      `node -v` answered v"), "{stdout}");
    assert!(
        stdout.contains("evolution         OK      Evolution API 2.3.7 (client evolution_production)\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with(
        "warn instance: create and link it: `evoctl connect production`\n\nproduction: no layer failed (1 warning(s))\n"
    ));
}
