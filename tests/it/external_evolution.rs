//! A service whose tasks use an Evolution API server that already runs (the scenario key
//! `external_evolution = { address = "HOST:PORT" }`, or `--external-evolution
//! CLUSTER/SERVICE=HOST:PORT`): no stand-in is started for them, and exec sessions reach that
//! server at `127.0.0.1:$SERVER_PORT` through a per-task forward. A second `evoctl-lab evolution`
//! plays the external server; what evoctl does through the lab lands there, not in the lab.

use crate::support::{Lab, StandIn, json_stdout, text, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

/// The external server: an Evolution with production's API key (the operator gives the task
/// definition the external server's key) and its own client name.
fn external(dir: &std::path::Path) -> StandIn {
    StandIn::start(
        dir,
        "external",
        "AUTHENTICATION_API_KEY=lab-production-api-key-9a7c3e1f5d\nDATABASE_CONNECTION_CLIENT_NAME=evolution_external\n\
         DATABASE_CONNECTION_URI=postgresql://evolution@external.invalid:5432/evolution\nSERVER_URL=http://external.invalid:8080\n",
        &["--evolution-time-scale", "0.01"],
    )
}

/// `HOST:PORT` of its API.
fn address(external: &StandIn) -> String {
    external.url.trim_start_matches("http://").to_owned()
}

/// Create, list, link and read the state of production's instance through the lab; all of it
/// happens on the external server.
fn production_goes_to(lab: &Lab, external: &StandIn) {
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
        (output.status.code(), text(&output.stdout).lines().next().map(str::to_owned)),
        (Some(0), Some("open".to_owned())),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn the_scenario_key_sends_a_service_to_an_external_evolution() {
    let dir = tempfile::tempdir().unwrap();
    let external = external(dir.path());
    let scenario = dir.path().join("external.toml");
    std::fs::write(
        &scenario,
        format!(
            "extends = \"seed\"\ndescription = \"production on an external Evolution\"\n\
             [services.\"alinhou-production/EvolutionService\"]\nexternal_evolution = {{ address = \"{}\" }}\n",
            address(&external)
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
    let external = external(dir.path());
    let flag = format!("alinhou-production/EvolutionService={}", address(&external));
    let lab = Lab::start_with("seed", &["--external-evolution", &flag]);
    lab.wait_settled();
    production_goes_to(&lab, &external);
}
