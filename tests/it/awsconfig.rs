//! The user's AWS settings win, and every AWS call is bounded: the profile's `max_attempts` is
//! the number of attempts (counted in the lab's journal), invalid retry settings are usage errors
//! naming the variable or key before any call, and a stalled call ends at the attempt timeout
//! with a message that names the call and the variable that sets the bound. Every retry is one
//! line on stderr, and an endpoint with nothing listening is given up within seconds.

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
    // The one retry was said as it happened, with what the first attempt met.
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("retrying DescribeServices (2/2): ThrottlingException: Rate exceeded\nerror: DescribeServices failed: ThrottlingException: "),
        "{stderr}"
    );

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
    let endpoint = lab.env().into_iter().find(|(k, _)| k == "AWS_ENDPOINT_URL").unwrap().1;
    let endpoint = endpoint.trim_end_matches('/');
    assert!(
        stderr.starts_with(&format!(
            "retrying DescribeServices (2/2): no answer from {endpoint} within 500ms\nerror: DescribeServices failed: Timeout: "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("EVOCTL_AWS_OPERATION_ATTEMPT_TIMEOUT"), "{stderr}");
}

#[test]
fn an_endpoint_with_nothing_listening_is_given_up_within_seconds_saying_each_retry() {
    let lab = Lab::start("seed");
    // A port that was just free: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let output = lab.evoctl().env("AWS_ENDPOINT_URL", &dead).args(["task", "production"]).output().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}; the SDK's own back-off alone takes about 40 s");
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let [retries @ .., error, fix] = lines.as_slice() else { panic!("{stderr}") };
    assert!(
        error.starts_with("error: ")
            && error.ends_with(
                "failed: Unreachable: dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)"
            ),
        "{stderr}"
    );
    assert!(fix.starts_with("  fix: check network access to AWS and any AWS_ENDPOINT_URL* override"), "{stderr}");
    // One line per retry of each call, numbered from the second attempt up, each naming the
    // endpoint that refused.
    let line = regex::Regex::new(r"^retrying (DescribeServices|ListTasks) \(([2-8])/8\): connection refused to (.+)$")
        .unwrap();
    let mut seen: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for retry in retries {
        let found = line.captures(retry).unwrap_or_else(|| panic!("not a retry line: {retry:?}\n{stderr}"));
        assert_eq!(&found[3], dead, "{stderr}");
        seen.entry(found[1].to_owned()).or_default().push(found[2].parse().unwrap());
    }
    assert!(!seen.is_empty(), "no retry was said: {stderr}");
    for (call, attempts) in &seen {
        let expected: Vec<u32> = (2..2 + attempts.len() as u32).collect();
        assert_eq!(attempts, &expected, "{call}: each retry once, in order: {stderr}");
    }
}
