//! Malformed evoctl.toml files: every one exits 2 naming file:line:col, the problem and a fix,
//! before any AWS call is made.

use crate::support::{Lab, text};

fn check(lab: &Lab, config: &str, expected_start: &str, fix_contains: &str) {
    let path = lab.dir.path().join("broken.toml");
    std::fs::write(&path, config).unwrap();
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["--config"]).arg(&path).args(["status"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{config}");
    let stderr = text(&output.stderr);
    let expected = format!("error: {}:{expected_start}", path.display());
    assert!(stderr.starts_with(&expected), "expected {expected:?}\n got: {stderr}");
    assert!(stderr.contains(&format!("  fix: {fix_contains}")), "{stderr}");
    assert!(lab.journal().is_empty(), "no AWS call may happen with a broken config");
}

#[test]
fn malformed_configs_name_file_line_and_column() {
    let lab = Lab::start("seed");
    check(
        &lab,
        "[env.staging]\ncluster = \"alinhou-staging\"\nscalling = { min = 0, max = 0 }\n",
        "3:1: unknown field `scalling`, expected one of",
        "remove or rename that key",
    );
    check(
        &lab,
        "[env.staging]\ncluster = \"alinhou-staging\"\nscaling = { min = \"0\", max = 0 }\n",
        "3:19: invalid type: string \"0\", expected u32",
        "give the value the type",
    );
    check(&lab, "[env.staging\ncluster = \"x\"\n", "1:13: ", "correct the value");
    check(
        &lab,
        "[env.production]\ncluster = \"p\"\nscaling = { min = 2, max = 1 }\n",
        "3:11: scaling min (2) is greater than max (1)",
        "correct the value",
    );
    check(&lab, "[env.staging]\nprotected = true\n", "1:1: missing field `cluster`", "add the missing key");
    check(&lab, "[aws]\nregion = \"us-east-1\"\n", "", "add at least one");
}

#[test]
fn a_secret_pasted_into_jwt_secret_is_not_echoed() {
    let lab = Lab::start("seed");
    let path = lab.dir.path().join("leaky.toml");
    std::fs::write(
        &path,
        "[env.p]\ncluster = \"c\"\n[env.p.webhook]\nurl = \"https://x.example\"\nevents = []\njwt_secret = \"hunter2-super-secret\"\n",
    )
    .unwrap();
    let output = lab.evoctl().arg("--config").arg(&path).arg("status").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(":6:14: jwt_secret must be a reference, ssm:/path or env:VAR (got a 20-character value)"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn server_port_was_removed_and_says_so() {
    let lab = Lab::start("seed");
    let message = "`server_port` was removed: evoctl calls Evolution on the container's own SERVER_PORT \
                   (read inside the task), so the file cannot set it";
    let service = "[service]\nname = \"EvolutionService\"\nserver_port = 8080\n\n[env.production]\ncluster = \"p\"\n";
    let env = "[env.production]\ncluster = \"p\"\nprotected = true\n  server_port = 9090\n";
    for (config, position) in [(service, "3:1"), (env, "4:3")] {
        let path = lab.dir.path().join("old.toml");
        std::fs::write(&path, config).unwrap();
        lab.control("DELETE", "/journal", None);
        let output = lab.evoctl().arg("--config").arg(&path).arg("status").output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{config}");
        assert_eq!(
            text(&output.stderr),
            format!("error: {}:{position}: {message}\n  fix: delete the `server_port` line\n", path.display()),
        );
        assert!(output.stdout.is_empty());
        assert!(lab.journal().is_empty(), "no AWS call may happen with a broken config");
    }
}
