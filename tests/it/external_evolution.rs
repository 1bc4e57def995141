//! A service whose tasks use an Evolution API server that already runs (the scenario key
//! `external_evolution = { address = "HOST:PORT" }`, or `--external-evolution
//! CLUSTER/SERVICE=HOST:PORT`): no stand-in is started for them, and exec sessions reach that
//! server at `127.0.0.1:$SERVER_PORT` through a per-task forward. A second `evoctl-lab evolution`
//! plays the external server; what evoctl does through the lab lands there, not in the lab.

use crate::support::{EVOCTL_LAB, Lab, json_stdout, text, wait_until};
use serde_json::{Value, json};
use std::process::{Child, Stdio};
use std::time::Duration;

/// The external server, killed on drop.
struct External {
    child: Child,
    ready: Value,
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl External {
    /// An Evolution server with production's API key (the operator gives the task definition the
    /// external server's key) and its own client name.
    fn start(dir: &std::path::Path) -> External {
        let env_file = dir.join("external.env");
        std::fs::write(
            &env_file,
            "AUTHENTICATION_API_KEY=lab-production-api-key-9a7c3e1f5d\nDATABASE_CONNECTION_CLIENT_NAME=evolution_external\n\
             DATABASE_CONNECTION_URI=postgresql://evolution@external.invalid:5432/evolution\nSERVER_URL=http://external.invalid:8080\n",
        )
        .unwrap();
        let ready_file = dir.join("external.json");
        let child = std::process::Command::new(EVOCTL_LAB)
            .args(["evolution", "--evolution-time-scale", "0.01"])
            .arg("--env-file")
            .arg(&env_file)
            .arg("--ready-file")
            .arg(&ready_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn evoctl-lab evolution");
        let ready = wait_until(Duration::from_secs(30), "the external server's ready file", || {
            std::fs::read_to_string(&ready_file).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
        });
        External { child, ready }
    }

    /// `HOST:PORT` of its API.
    fn address(&self) -> String {
        self.ready["url"].as_str().unwrap().trim_start_matches("http://").to_owned()
    }

    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let url = format!("{}{path}", self.ready["control"].as_str().unwrap());
        let (status, text) = crate::support::http(method, &url, body.map(Value::to_string));
        assert!(status < 300, "{method} {path}: {status} {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
    }

    /// The external server's row named `name`, or null.
    fn row(&self, name: &str) -> Value {
        self.control("GET", "/evolution", None)
            .as_object()
            .unwrap()
            .values()
            .flat_map(|rows| rows.as_array().unwrap().clone())
            .find(|row| row["name"] == name)
            .unwrap_or(Value::Null)
    }
}

/// Create, list, link and read the state of production's instance through the lab; all of it
/// happens on the external server.
fn production_goes_to(lab: &Lab, external: &External) {
    let output = lab.evoctl().args(["--output", "json", "instance", "create", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(json_stdout(&output)["instance"], "alinhou-production", "{}", text(&output.stdout));
    let row = external.row("alinhou-production");
    assert_eq!(row["clientName"], "evolution_external", "the external server holds the row: {row}");
    assert_eq!(lab.evolution_instance("alinhou-production"), Value::Null, "the lab's own hub has no row");
    let processes = lab.control("GET", "/evolution/processes", None);
    let production = processes.as_array().unwrap().iter().find(|p| p["external"] == true).cloned();
    assert!(production.is_some(), "the production task forwards to the external server: {processes}");

    let output = lab.evoctl().args(["instance", "list", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("alinhou-production"), "{}", text(&output.stdout));

    // The external server's phone links it; the lab sees it open.
    let code = wait_until(Duration::from_secs(10), "a QR on the external server", || {
        external.row("alinhou-production")["qr"]["code"].as_str().map(str::to_owned)
    });
    external.control("POST", "/phone/scan", Some(&json!({"code": code})));
    let output = lab.evoctl().args(["instance", "state", "production"]).output().unwrap();
    assert_eq!(
        (output.status.code(), text(&output.stdout)),
        (Some(0), "open\n".to_owned()),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn the_scenario_key_sends_a_service_to_an_external_evolution() {
    let dir = tempfile::tempdir().unwrap();
    let external = External::start(dir.path());
    let scenario = dir.path().join("external.toml");
    std::fs::write(
        &scenario,
        format!(
            "extends = \"seed\"\ndescription = \"production on an external Evolution\"\n\
             [services.\"alinhou-production/EvolutionService\"]\nexternal_evolution = {{ address = \"{}\" }}\n",
            external.address()
        ),
    )
    .unwrap();
    let lab = Lab::start(scenario.to_str().unwrap());
    lab.wait_settled();
    production_goes_to(&lab, &external);
}

#[test]
fn the_serve_flag_sends_a_service_to_an_external_evolution() {
    let dir = tempfile::tempdir().unwrap();
    let external = External::start(dir.path());
    let flag = format!("alinhou-production/EvolutionService={}", external.address());
    let lab = Lab::start_with("seed", &["--external-evolution", &flag]);
    lab.wait_settled();
    production_goes_to(&lab, &external);
}
