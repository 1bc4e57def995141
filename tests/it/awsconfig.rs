//! The user's AWS settings win, and every AWS call is bounded: the profile's `max_attempts` is
//! the number of attempts (counted in the lab's journal), invalid retry settings are usage errors
//! naming the variable or key before any call, and a stalled call ends at the attempt timeout
//! with a message that names the call and the variable that sets the bound.

use crate::support::{Lab, text};
use serde_json::json;
use std::time::{Duration, Instant};

fn attempts(lab: &Lab, action: &str) -> usize {
    lab.journal().iter().filter(|e| e["action"] == action).count()
}

#[test]
fn the_profiles_max_attempts_is_the_number_of_attempts() {
    let lab = Lab::start("seed");
    let aws_dir = lab.dir.path().join(".aws");
    std::fs::create_dir_all(&aws_dir).unwrap();
    std::fs::write(aws_dir.join("config"), "[default]\nmax_attempts = 2\n").unwrap();
    lab.control("POST", "/faults", Some(&json!({"throttle_rate": 1.0, "actions": ["DescribeServices"]})));
    let output = lab.evoctl().args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    assert_eq!(attempts(&lab, "DescribeServices"), 2, "max_attempts = 2 in the profile");

    // The environment still wins over the profile.
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().env("AWS_MAX_ATTEMPTS", "3").args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5));
    assert_eq!(attempts(&lab, "DescribeServices"), 3);
}

#[test]
fn invalid_retry_settings_are_usage_errors_before_any_call() {
    let lab = Lab::start("seed");
    let cases = [
        (
            "AWS_MAX_ATTEMPTS",
            "abc",
            "error: invalid AWS retry setting: `abc` is not a number of attempts (invalid digit found in string). source: global environment variable key: `AWS_MAX_ATTEMPTS`\n  fix: set AWS_MAX_ATTEMPTS (or max_attempts in the profile) to a whole number of at least 1, or unset it\n",
        ),
        (
            "AWS_MAX_ATTEMPTS",
            "0",
            "error: invalid AWS retry setting: max attempts must be at least 1. source: global environment variable key: `AWS_MAX_ATTEMPTS`\n  fix: set AWS_MAX_ATTEMPTS (or max_attempts in the profile) to a whole number of at least 1, or unset it\n",
        ),
        (
            "EVOCTL_AWS_OPERATION_TIMEOUT",
            "soon",
            "error: EVOCTL_AWS_OPERATION_TIMEOUT=\"soon\" is not a duration\n  fix: set EVOCTL_AWS_OPERATION_TIMEOUT to a duration above zero such as 500ms, 30s or 2m, or unset it\n",
        ),
    ];
    for (name, value, want) in cases {
        let output = lab.evoctl().env(name, value).args(["status"]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        assert_eq!(text(&output.stderr), want, "{name}={value}");
    }
    let output = lab.evoctl().env("AWS_RETRY_MODE", "bogus").args(["status"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("error: invalid AWS retry setting: `bogus`: "), "{stderr}");
    assert!(stderr.contains("source: global environment variable key: `AWS_RETRY_MODE`"), "{stderr}");

    let aws_dir = lab.dir.path().join(".aws");
    std::fs::create_dir_all(&aws_dir).unwrap();
    std::fs::write(aws_dir.join("config"), "[default]\nretry_mode = sometimes\n").unwrap();
    let output = lab.evoctl().args(["status"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("key: `retry_mode`"), "{}", text(&output.stderr));
    assert!(lab.journal().is_empty(), "no AWS call was made");
}

#[test]
fn a_stalled_call_ends_at_the_attempt_timeout_and_says_which() {
    let lab = Lab::start("seed");
    lab.control("POST", "/faults", Some(&json!({"latency_ms": 20_000, "actions": ["DescribeServices"]})));
    let started = Instant::now();
    let output = lab
        .evoctl()
        .env("EVOCTL_AWS_OPERATION_ATTEMPT_TIMEOUT", "500ms")
        .env("AWS_MAX_ATTEMPTS", "2")
        .args(["status", "production"])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("error: DescribeServices failed: Timeout: "), "{stderr}");
    assert!(stderr.contains("EVOCTL_AWS_OPERATION_ATTEMPT_TIMEOUT"), "{stderr}");
}
