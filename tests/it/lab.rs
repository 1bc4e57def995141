//! Lab behaviour seen through evoctl and its control API: signature checks, faults, the
//! journal, clamping on RegisterScalableTarget, and scenario loading errors.

use crate::awscli::aws;
use crate::support::{Lab, calls_by_action, json_stdout, text, wait_until};
use serde_json::json;
use std::time::Duration;

#[test]
fn a_wrong_secret_gets_aws_signature_error_and_exit_5() {
    let lab = Lab::start("seed");
    let output =
        lab.evoctl().env("AWS_SECRET_ACCESS_KEY", "wrong-secret").args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("failed: InvalidSignatureException: The request signature we calculated does not match"),
        "{stderr}"
    );
    assert!(stderr.contains("fix: check the AWS credentials in use"), "{stderr}");
    assert!(!stderr.contains("wrong-secret"), "{stderr}");

    let output = lab.evoctl().env("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000").args(["status"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5));
    assert!(text(&output.stderr).contains("UnrecognizedClientException"), "{}", text(&output.stderr));
}

#[test]
fn throttling_is_retried_and_a_persistent_one_is_exit_5() {
    let lab = Lab::start("seed");
    lab.control("POST", "/faults", Some(&json!({"throttle_rate": 1.0, "actions": ["DescribeServices"]})));
    let output = lab.evoctl().env("AWS_MAX_ATTEMPTS", "3").args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("DescribeServices failed: ThrottlingException: Rate exceeded"), "{stderr}");
    let attempts = lab.journal().iter().filter(|e| e["action"] == "DescribeServices").count();
    assert_eq!(attempts, 3, "AWS_MAX_ATTEMPTS bounds the SDK's standard retry");

    // At 30% (seeded, so the same answers are throttled on every run whatever the concurrency)
    // the retries always win: the exact answer, and per action exactly the logical calls plus
    // one retry per throttled answer.
    let id = lab.first_task_id();
    lab.reset_faults(&json!({}));
    let output = lab.evoctl().args(["task", "production"]).output().unwrap();
    assert_eq!((output.status.code(), text(&output.stdout)), (Some(0), format!("{id}\n")));
    let logical = calls_by_action(&lab.journal());
    let calls: Vec<(&str, usize)> = logical.iter().map(|(action, (calls, _))| (action.as_str(), *calls)).collect();
    assert_eq!(calls, [("DescribeServices", 1), ("DescribeTasks", 1), ("ListTasks", 2)]);
    for run in 0..3 {
        lab.reset_faults(&json!({"throttle_rate": 0.3, "seed": THROTTLE_SEED}));
        let output = lab.evoctl().args(["task", "production"]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "run {run}: {}", text(&output.stderr));
        assert_eq!(text(&output.stdout), format!("{id}\n"), "run {run}");
        crate::support::assert_throttled_exactly(&lab.journal(), &logical, TASK_THROTTLED, run);
    }
}

/// The seed the 30% throttling tests use.
pub const THROTTLE_SEED: u64 = 36;

/// What that seed throttles in `evoctl task production`: (action, throttled answers).
const TASK_THROTTLED: &[(&str, usize)] = &[("DescribeServices", 1), ("DescribeTasks", 0), ("ListTasks", 1)];

#[test]
fn missing_cluster_is_exit_3_with_the_fix() {
    let lab = Lab::start("seed");
    let path = lab.dir.path().join("other.toml");
    std::fs::write(&path, "[env.qa]\ncluster = \"alinhou-qa\"\n").unwrap();
    let output = lab.evoctl().arg("--config").arg(&path).args(["task", "qa"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("error: cluster alinhou-qa not found"), "{stderr}");
    assert!(stderr.contains("fix: check `cluster` for this environment"), "{stderr}");
}

#[test]
fn register_scalable_target_clamps_desired_count_and_tasks_stop() {
    let lab = Lab::start("staging-up");
    let output = aws(&lab)
        .args(["application-autoscaling", "register-scalable-target", "--service-namespace", "ecs"])
        .args([
            "--resource-id",
            "service/alinhou-staging/EvolutionService",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
        ])
        .args(["--min-capacity", "0", "--max-capacity", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&lab.evoctl().args(["--output", "json", "status", "staging"]).output().unwrap());
    assert_eq!(report["environments"][0]["desired_count"], 0);
    assert_eq!(report["environments"][0]["scalable_target"], json!({"min_capacity": 0, "max_capacity": 0}));
    wait_until(Duration::from_secs(20), "staging to have no live task", || {
        let output = lab.evoctl().args(["task", "staging"]).output().unwrap();
        (output.status.code() == Some(3)).then_some(())
    });
}

#[test]
fn the_journal_records_parameters_and_state_shows_tasks() {
    let lab = Lab::start("seed");
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["status", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let journal = lab.journal();
    // status reads every environment (its CHECK column judges them together) in one call.
    let targets = journal.iter().find(|e| e["action"] == "DescribeScalableTargets").unwrap();
    assert_eq!(
        targets["parameters"]["ResourceIds"],
        json!(["service/alinhou-staging/EvolutionService", "service/alinhou-production/EvolutionService"])
    );
    assert_eq!(targets["service"], "application-autoscaling");
    assert_eq!(targets["parameters"]["ScalableDimension"], "ecs:service:DesiredCount");
    let state = lab.control("GET", "/state", None);
    assert_eq!(state["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(state["services"][1]["scalable_target"], json!({"min": 1, "max": 1}));
}

#[test]
fn ready_file_carries_endpoint_credentials_and_config() {
    let lab = Lab::start("seed");
    let ready = &lab.ready;
    let endpoint = ready["aws_endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert_ne!(endpoint, "http://127.0.0.1:0");
    assert_eq!(ready["control"], format!("{endpoint}/_lab"));
    assert_eq!(ready["env"]["AWS_ENDPOINT_URL"], endpoint);
    assert_eq!(ready["env"]["AWS_REGION"], "us-east-1");
    assert_eq!(ready["env"]["EVOCTL_CONFIG"], ready["config"]);
    let config = std::fs::read_to_string(lab.config_path()).unwrap();
    assert!(config.contains("[env.production]"), "{config}");
}
