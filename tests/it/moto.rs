//! Cross-check with moto (an AWS emulator nobody here wrote): seeded with the seed scenario's
//! clusters, service, task definition, task and scalable targets, `evoctl status` must report
//! the same figures as it does against the lab, and `audit` must flag its 200/100 production
//! service. CI installs moto; a missing one fails the test.

use crate::support::{Lab, clean_command, json_stdout, text};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn status_and_audit_against_moto() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/moto_seed.py"))
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 must be installed");
    let stdout = child.stdout.take().unwrap();
    let moto = Moto(child);
    // The script prints READY once seeded, or exits (EOF here) if moto is missing or fails.
    let ready = BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line == "READY");
    assert!(ready, "moto did not come up: pip install 'moto[server]' boto3");

    let config = dir.path().join("evoctl.toml");
    std::fs::write(
        &config,
        "[env.staging]\ncluster = \"alinhou-staging\"\nscaling = { min = 0, max = 0 }\n\
         [env.production]\ncluster = \"alinhou-production\"\nscaling = { min = 1, max = 1 }\n",
    )
    .unwrap();
    let against = |args: &[&str]| {
        clean_command(env!("CARGO_BIN_EXE_evoctl"), dir.path())
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(args)
            .output()
            .unwrap()
    };
    let output = against(&["--output", "json", "status"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let against_moto = json_stdout(&output);
    // The audit over the same moto account: the 200/100 production service is reported.
    let audit = against(&["audit", "--format", "json"]);
    drop(moto);
    assert_eq!(audit.status.code(), Some(1), "{}", text(&audit.stderr));
    let report = json_stdout(&audit);
    let overlap: Vec<&serde_json::Value> =
        report["findings"].as_array().unwrap().iter().filter(|f| f["rule"] == "deployment-overlap").collect();
    assert!(overlap.iter().any(|f| f["envs"] == serde_json::json!(["production"])), "{report:#}");
    assert!(overlap[0]["evidence"].as_str().unwrap().contains("maximumPercent 200 / minimumHealthyPercent 100"));

    let lab = Lab::start("seed");
    let against_lab = json_stdout(&lab.evoctl().args(["--output", "json", "status"]).output().unwrap());

    let moto_envs = against_moto["environments"].as_array().unwrap();
    let lab_envs = against_lab["environments"].as_array().unwrap();
    assert_eq!(moto_envs.len(), 2);
    assert_eq!(lab_envs.len(), 2);
    for (moto_env, lab_env) in moto_envs.iter().zip(lab_envs) {
        // moto does not model deploymentConfiguration (it always answers 200/100), so that one
        // figure is compared against the lab alone, in the status tests.
        for field in ["env", "cluster", "service", "desired_count", "running_count", "pending_count", "scalable_target"]
        {
            assert_eq!(moto_env[field], lab_env[field], "{field} of {}", lab_env["env"]);
        }
        let statuses = |env: &serde_json::Value| {
            env["tasks"].as_array().unwrap().iter().map(|t| t["last_status"].clone()).collect::<Vec<_>>()
        };
        assert_eq!(statuses(moto_env), statuses(lab_env), "live tasks of {}", lab_env["env"]);
    }
    assert_eq!(moto_envs[1]["tasks"].as_array().unwrap().len(), 1);
}
