//! KMS-encrypted exec sessions on the `kms-exec` scenario (both clusters have an exec KMS key):
//! exec, node over stdin, a large faulty transfer and the connect runbook all pass through the
//! handshake; the journal shows one GenerateDataKey (caller) and one Decrypt (task role) per
//! session with the session/target/challenge context; nothing on the wire is plaintext; and
//! each KMS refusal is a clear exit 125 naming the key and the permission.

use crate::support::{Lab, assert_checksummed_among_logs, path_with, random_writer, text};
use serde_json::{Value, json};

const PRODUCTION_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/6f1c2d34-production-exec";

fn calls<'a>(journal: &'a [Value], action: &str) -> Vec<&'a Value> {
    journal.iter().filter(|e| e["action"] == action).collect()
}

/// Every session had exactly one successful GenerateDataKey and one Decrypt, with the context
/// the agent checks (the session id, the container's target id, the acknowledged challenge).
fn assert_every_session_encrypted(lab: &Lab, sessions: usize) {
    let journal = lab.journal();
    assert_eq!(calls(&journal, "ExecuteCommand").len(), sessions);
    let generated = calls(&journal, "GenerateDataKey");
    let decrypted = calls(&journal, "Decrypt");
    assert_eq!((generated.len(), decrypted.len()), (sessions, sessions));
    let state = lab.control("GET", "/state", None);
    let task = state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["clusterArn"].as_str().unwrap().ends_with("/alinhou-production"))
        .unwrap();
    let task_id = task["taskArn"].as_str().unwrap().rsplit('/').next().unwrap();
    let runtime = task["containers"][0]["runtimeId"].as_str().unwrap();
    for (generate, decrypt) in generated.iter().zip(&decrypted) {
        assert_eq!((generate["status"].as_u64(), decrypt["status"].as_u64()), (Some(200), Some(200)));
        let params = &generate["parameters"];
        assert_eq!(params["KeyId"], PRODUCTION_KEY);
        assert_eq!(params["NumberOfBytes"], 64);
        let context = params["EncryptionContext"].as_object().unwrap();
        assert!(context["aws:ssm:SessionId"].as_str().unwrap().starts_with("ecs-execute-command-"), "{context:?}");
        assert_eq!(context["aws:ssm:TargetId"], format!("ecs:alinhou-production_{task_id}_{runtime}"));
        assert_eq!(context["aws:ssm:RandomChallenge"].as_str().map(str::len), Some(24), "16 bytes, base64");
        assert_eq!(decrypt["parameters"]["EncryptionContext"], params["EncryptionContext"]);
    }
}

#[test]
fn exec_and_node_run_encrypted_with_the_real_exit_status() {
    let lab = Lab::start("kms-exec");
    let output =
        lab.evoctl().args(["exec", "production", "--", "sh", "-c", "echo out; echo err >&2; exit 5"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "out\n");
    assert_eq!(text(&output.stderr), "err\n");

    // A script over the command-string budget travels over stdin: client-to-agent sealing.
    let script = format!("const pad = '{}';\nconsole.log(pad.length); process.exit(4);\n", "y".repeat(20_000));
    let path = lab.dir.path().join("big.js");
    std::fs::write(&path, script).unwrap();
    let output = lab.evoctl().args(["node", "production"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "20000\n");
    assert_every_session_encrypted(&lab, 2);

    // The official plugin's way (no challenge acknowledgement) works too, and prints nothing extra.
    let plugin_dir = lab.fake_plugin_dir();
    let output = lab
        .evoctl()
        .args(["exec", "production", "--backend", "aws-cli", "--", "sh", "-c", "echo via plugin; exit 6"])
        .env("PATH", path_with(&plugin_dir))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "via plugin\n");
    let journal = lab.journal();
    let last = calls(&journal, "GenerateDataKey").last().unwrap()["parameters"]["EncryptionContext"].clone();
    assert_eq!(last.as_object().unwrap().len(), 2, "no RandomChallenge without the acknowledgement: {last}");
}

#[test]
fn one_mib_survives_faults_on_an_encrypted_channel_and_no_key_leaks() {
    let lab = Lab::start("kms-exec");
    // Loss the real agent's oldest-only resend (about 10 frames/s) recovers within its 2 s drain.
    lab.control("POST", "/faults", Some(&json!({"drop_rate": 0.003, "duplicate_rate": 0.05, "reorder_window": 8})));
    let size = 1024 * 1024;
    let output =
        lab.evoctl().args(["-vvv", "exec", "production", "--", "node", "-e", &random_writer(size)]).output().unwrap();
    assert_checksummed_among_logs(&output, size);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("handshake complete") && stderr.contains("encrypted=true"), "{stderr}");
    let secrets = lab.control("GET", "/tokens", None);
    let secrets: Vec<&str> = secrets.as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(secrets.len(), 3, "a session token and the data key (base64, hex)");
    let journal = serde_json::to_string(&lab.journal()).unwrap();
    for secret in secrets {
        assert!(!stderr.contains(secret) && !text(&output.stdout).contains(secret), "a secret reached the output");
        assert!(!journal.contains(secret), "a secret reached the journal");
    }
}

#[test]
fn connect_production_links_over_encrypted_sessions() {
    let lab = Lab::start_with("kms-exec", &["--auto-scan-after-ms", "1200"]);
    lab.wait_settled();
    let output = lab.evoctl().args(["connect", "production", "--stable-for", "1s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("linked 5511987654321 to alinhou-production\n"));
    assert!(text(&output.stderr).contains("\nQR 1 of 30: no terminal to draw it on; "), "{}", text(&output.stderr));
    assert_eq!(lab.evolution_instance("alinhou-production")["state"], "open");
    assert_every_session_encrypted(&lab, 2);

    let output = lab.evoctl().args(["doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}{}", text(&output.stdout), text(&output.stderr));
}

#[test]
fn kms_refusals_name_the_key_and_the_missing_permission() {
    let lab = Lab::start("kms-exec");
    lab.control("POST", "/faults", Some(&json!({"kms_denied": true})));
    let output = lab.evoctl().args(["exec", "production", "--", "true"]).output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: this exec session is KMS-encrypted and the caller may not use key {PRODUCTION_KEY} (User: arn:aws:sts::123456789012:assumed-role/Operator/evoctl is not authorized to perform: kms:GenerateDataKey on resource: {PRODUCTION_KEY} because no identity-based policy allows the kms:GenerateDataKey action)\n  \
             fix: grant your IAM principal kms:GenerateDataKey on {PRODUCTION_KEY} (the task role needs kms:Decrypt on it), or use another --profile\n"
        )
    );
    assert_eq!(calls(&lab.journal(), "GenerateDataKey").len(), 1, "an access denial is not retried");

    lab.control("POST", "/faults", Some(&json!({"kms_decrypt_denied": true})));
    let output = lab.evoctl().args(["exec", "production", "--", "true"]).output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: the agent ended the session during the KMS handshake: Encountered error while initiating handshake. Fetching data key failed: Unable to retrieve data key, Error when decrypting data key AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/EvolutionTaskRole/"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(&format!("is not authorized to perform: kms:Decrypt on resource: {PRODUCTION_KEY}\n  fix: the task role needs kms:Decrypt on the cluster's exec KMS key (executeCommandConfiguration.kmsKeyId), and the task must reach KMS; `evoctl doctor production` checks the rest\n")),
        "{stderr}"
    );
}
