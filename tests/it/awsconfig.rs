//! The user's AWS settings win, and every AWS call is bounded: the profile's `max_attempts` is
//! the number of attempts (counted in the lab's journal), invalid retry settings are usage errors
//! naming the variable or key before any call, and a stalled call ends at the attempt timeout
//! with a message that names the call and the variable that sets the bound. Credentials are said
//! plainly: a named profile in neither AWS file is refused with where it was named, and no
//! credentials at all is one line naming where the chain looked. Every retry is one line on
//! stderr, and an endpoint with nothing listening is given up within seconds.

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
    // status reads every environment (the CHECK column judges them together): one retry each.
    let retry = format!("retrying DescribeServices (2/2): no answer from {endpoint} within 500ms\n");
    assert!(stderr.starts_with(&format!("{retry}{retry}error: DescribeServices failed: Timeout: ")), "{stderr}");
    assert!(stderr.contains("EVOCTL_AWS_OPERATION_ATTEMPT_TIMEOUT"), "{stderr}");
}

/// The lab's AWS files: `[default]` and `prod` (regions only, no credentials).
fn write_profiles(lab: &Lab) {
    let aws_dir = lab.dir.path().join(".aws");
    std::fs::create_dir_all(&aws_dir).unwrap();
    std::fs::write(aws_dir.join("config"), "[default]\nregion = us-east-1\n[profile prod]\nregion = us-east-1\n")
        .unwrap();
}

/// A profile named by `--profile`, `AWS_PROFILE` or `env.NAME.aws.profile` that is in neither AWS
/// file is a usage error naming it and where it was named, before any AWS call; an unknown
/// `AWS_PROFILE` is refused even with keys in the environment, as the AWS CLI does.
#[test]
fn a_profile_in_neither_aws_file_is_refused_naming_where_it_was_named() {
    let lab = Lab::start("seed");
    write_profiles(&lab);
    let known = "  fix: the profiles there: default, prod; ";
    let output = lab.evoctl().args(["--profile", "nosuch", "status"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: AWS profile `nosuch` (named by --profile) is in neither ~/.aws/config nor ~/.aws/credentials\n{known}name one of them with --profile, or create it (`aws configure sso --profile nosuch`)\n"
        )
    );
    // The lab's keys are in the environment: the typo is refused all the same.
    let output = lab.evoctl().env("AWS_PROFILE", "nosuch").args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let from_env = format!(
        "error: AWS profile `nosuch` (named by AWS_PROFILE) is in neither ~/.aws/config nor ~/.aws/credentials\n{known}fix or unset AWS_PROFILE (the AWS CLI refuses an unknown profile too, even with keys in the environment)\n"
    );
    assert_eq!(text(&output.stderr), from_env);
    // exec keeps its own code for evoctl's failures, with the same words.
    let output = lab.evoctl().env("AWS_PROFILE", "nosuch").args(["exec", "production", "--", "true"]).output().unwrap();
    assert_eq!((output.status.code(), text(&output.stderr)), (Some(125), from_env));
    let elsewhere = lab.dir.path().join("aws-config");
    std::fs::write(&elsewhere, "[profile ops]\n").unwrap();
    let output = lab
        .evoctl()
        .env("AWS_CONFIG_FILE", &elsewhere)
        .env("AWS_PROFILE", "prod")
        .args(["task", "production"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: AWS profile `prod` (named by AWS_PROFILE) is in neither {} nor ~/.aws/credentials\n  fix: the profiles there: ops; fix or unset AWS_PROFILE (the AWS CLI refuses an unknown profile too, even with keys in the environment)\n",
            elsewhere.display()
        )
    );

    let config = lab.config_path();
    let text_of = std::fs::read_to_string(&config).unwrap();
    let typo = text_of.replacen("[env.staging]\n", "[env.staging]\naws = { profile = \"stagng\" }\n", 1);
    assert_ne!(typo, text_of, "the lab's config has [env.staging]");
    std::fs::write(&config, typo).unwrap();
    let named = format!(
        "error: AWS profile `stagng` (named by env.staging.aws.profile in {}) is in neither ~/.aws/config nor ~/.aws/credentials",
        config.display()
    );
    let fix = format!(
        "{known}fix env.staging.aws.profile in {}, or create it (`aws configure sso --profile stagng`)\n",
        config.display()
    );
    let output = lab.evoctl().args(["task", "staging"]).output().unwrap();
    assert_eq!((output.status.code(), text(&output.stderr)), (Some(2), format!("{named}\n{fix}")));
    // Read together with production (another chain), the error says which environment it is for.
    let output = lab.evoctl().args(["status"]).output().unwrap();
    assert_eq!((output.status.code(), text(&output.stderr)), (Some(2), format!("{named} (for staging)\n{fix}")));
    assert!(lab.journal().is_empty(), "no AWS call was made: {:?}", lab.journal());
    // The other environments are read as before.
    let output = lab.evoctl().args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

/// No credentials at all: one line naming where the chain looked, and the usual fixes; a named
/// profile that holds none says so. The exit code is the AWS failure's, as before.
#[test]
fn no_credentials_are_said_plainly() {
    let lab = Lab::start("seed");
    let fix = "  fix: log in with `aws sso login --profile NAME` and pass --profile NAME (or export AWS_PROFILE=NAME), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n";
    let without_keys = || {
        let mut command = lab.evoctl();
        command.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
        command
    };
    let output = without_keys().args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: DescribeServices failed: NoCredentials: no AWS credentials found: none in the environment (AWS_ACCESS_KEY_ID), in profile `default` of ~/.aws/credentials and ~/.aws/config, from web identity (AWS_WEB_IDENTITY_TOKEN_FILE), the ECS container endpoint or EC2 instance metadata\n{fix}"
        )
    );
    write_profiles(&lab);
    let output = without_keys().env("AWS_PROFILE", "prod").args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: DescribeServices failed: NoCredentials: no AWS credentials found: none in the environment (AWS_ACCESS_KEY_ID), in profile `prod` (AWS_PROFILE) of ~/.aws/credentials and ~/.aws/config, from web identity (AWS_WEB_IDENTITY_TOKEN_FILE), the ECS container endpoint or EC2 instance metadata\n{fix}"
        )
    );
    let output = lab.evoctl().args(["--profile", "prod", "task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: DescribeServices failed: NoCredentials: AWS profile `prod` (named by --profile) holds no credentials: no keys, role_arn, SSO, credential_process or web identity for it in ~/.aws/config or ~/.aws/credentials\n{fix}"
        )
    );
    assert!(lab.journal().is_empty(), "no call was signed: {:?}", lab.journal());
    // As with the AWS CLI, keys in the environment come before a known AWS_PROFILE's.
    let output = lab.evoctl().env("AWS_PROFILE", "prod").args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
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
