//! The lab's Port sessions driven by a client no one here wrote: aws-ssm-bridge (PyPI; its own
//! Rust implementation of the Session Manager protocol and of smux, with Python bindings), run
//! by `scripts/port-bridge/probe.py`. Neither evoctl's smux nor the lab's is its oracle.
//!
//! The library accepts only a `wss://` stream URL on an `ssmmessages` host under amazonaws.com,
//! so the lab runs over TLS with `--stream-host ssmmessages.us-east-1.amazonaws.com` (its
//! certificate names that host), and the probe runs in a private mount namespace whose
//! `/etc/hosts` maps that name to 127.0.0.1 (`unshare`; as root, or in a user namespace
//! otherwise); `SSL_CERT_FILE` makes the library trust the lab's CA. `scripts/test` installs the
//! library (there is no Linux wheel on PyPI: it builds from source).

use crate::support::{clean_command, json_stdout, text};
use crate::tls::TlsLab;
use serde_json::json;

const STREAM_HOST: &str = "ssmmessages.us-east-1.amazonaws.com";

#[test]
fn aws_ssm_bridge_forwards_a_task_port_and_a_remote_host_through_the_lab() {
    let tls = TlsLab::start_with("seed", &["--stream-host", STREAM_HOST]);
    let lab = &tls.lab;
    lab.wait_settled();
    let hosts = lab.dir.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 localhost {STREAM_HOST}\n")).unwrap();
    let probe = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/port-bridge/probe.py");
    let ready = lab.dir.path().join("ready.json");
    let namespace: &[&str] = if rustix::process::geteuid().is_root() {
        &["--mount", "--propagation", "private"]
    } else {
        &["--user", "--map-root-user", "--mount", "--propagation", "private"]
    };
    let mut command = clean_command("unshare", lab.dir.path());
    command
        .args(namespace)
        .args(["sh", "-c", r#"mount --bind "$1" /etc/hosts && exec python3 "$2" "$3""#, "sh"])
        .arg(&hosts)
        .arg(probe)
        .arg(&ready)
        .envs(lab.env())
        .env("SSL_CERT_FILE", tls.ca_bundle())
        .timeout(std::time::Duration::from_secs(120));
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let mut report = json_stdout(&output);
    let sent = report["remote_host"].as_object_mut().unwrap().remove("sent_sha256").unwrap();
    assert_eq!(sent.as_str().map(str::len), Some(64));
    let lab_row = |document: &str, host: serde_json::Value, port: &str, destination: &str, streams: u64| {
        json!({
            "document": document,
            "port_number": port,
            "host": host,
            "client_version": "1.2.764.0",
            "mode": {"mux": {"keep_alive": false}},
            "terminated": true,
            "ended": true,
            "end_reason": "terminate-session",
            "connect_errors": 0,
            "streams": streams,
            "stream_destinations": [destination],
            "stream_errors": [],
        })
    };
    assert_eq!(
        report,
        json!({
            "agent_version": "3.3.1802.0",
            "port": {
                "direct_status": 200,
                "status": 200,
                "same_as_direct": true,
                "concurrent_same_as_direct": 10,
                "lab": lab_row("AWS-StartPortForwardingSession", json!(null), "8080", "127.0.0.1:8080", 11),
            },
            "remote_host": {
                "received_bytes": 4 * 1024 * 1024,
                "received_sha256": sent,
                "lab": lab_row(
                    "AWS-StartPortForwardingSessionToRemoteHost",
                    json!("cache.internal"),
                    "6379",
                    "cache.internal:6379",
                    1
                ),
            },
        })
    );
}
