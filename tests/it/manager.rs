//! `evoctl manager` and `evoctl metrics` against the lab's port sessions and its Evolution
//! stand-in: the Manager's URL answers as 2.3.7's `/manager` does through the forward, Ctrl-C
//! ends it (130, the session terminated), the API key is located and never shown; `/metrics`
//! off on seed says why (exit 1), on with basic auth (a password from SSM) prints the exposition
//! exactly and ends the session.

use crate::ending::signal;
use crate::port_forward::{
    assert_ended_by_evoctl, assert_only_session_ended_by_evoctl, port_sessions, spawn_collecting,
};
use crate::secrets::Secrets;
use crate::support::{Lab, http, text, wait_until};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PRODUCTION_KEY: &str = "lab-production-api-key-9a7c3e1f5d";
const METRICS_USER: &str = "lab-metrics-reader";
const METRICS_PASSWORD: &str = "lab-metrics-password-5e2c91";

/// The live production task's task definition ARN, as the lab holds it.
fn task_definition(lab: &Lab) -> String {
    let state = lab.control("GET", "/state", None);
    state["tasks"][0]["taskDefinitionArn"].as_str().expect("a task definition").to_owned()
}

fn no_secret(outputs: &[&[u8]], extra: &[(&str, &str)]) {
    let secrets = Secrets::new(extra.iter().map(|(name, value)| (name.to_string(), value.as_bytes().to_vec())));
    for (i, output) in outputs.iter().enumerate() {
        secrets.assert_absent(output, &format!("output #{i}"));
    }
}

/// seed, with production's `/metrics` on behind basic auth: the user plain, the password an
/// SSM parameter the task definition references.
fn metrics_scenario(dir: &Path) -> String {
    let path = dir.join("metrics-on.toml");
    std::fs::write(
        &path,
        format!(
            r#"extends = "seed"
description = "seed, production with PROMETHEUS_METRICS=true behind basic auth"
[parameters."/alinhou/production/metrics-password"]
type = "SecureString"
value = "{METRICS_PASSWORD}"
[task_definitions.alinhou-production-EvolutionService.environment]
PROMETHEUS_METRICS = "true"
METRICS_AUTH_REQUIRED = "true"
METRICS_USER = "{METRICS_USER}"
[task_definitions.alinhou-production-EvolutionService.secrets]
METRICS_PASSWORD = "/alinhou/production/metrics-password"
"#
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// `evoctl manager production EXTRA…` (with `BROWSER` when given), its output collected, once
/// it has printed its URL: the process, the URL and its stderr so far.
fn manager(lab: &Lab, extra: &[&str], browser: Option<&Path>) -> (Child, String, Arc<Mutex<Vec<u8>>>) {
    let mut command = lab.evoctl_process();
    command.args(["manager", "production"]).args(extra);
    if let Some(browser) = browser {
        command.env("BROWSER", browser);
    }
    let (child, stdout, stderr) = spawn_collecting(command);
    let url = wait_until(Duration::from_secs(30), "the manager's URL", || {
        let seen = text(&stdout.lock().unwrap());
        seen.ends_with('\n').then(|| seen.trim_end().to_owned())
    });
    (child, url, stderr)
}

#[test]
fn manager_prints_a_url_where_the_manager_answers_and_ctrl_c_ends_the_session() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let (mut child, url, stderr) = manager(&lab, &[], None);
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/manager"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a manager URL: {url:?}"));
    assert_ne!(port, 0);

    // What 2.3.7 answers on /manager (serve-static's redirect to the directory) and under it
    // (the Manager's index.html), the same through the forward as straight from the stand-in.
    let stand_in = lab.control("GET", "/evolution/processes", None)[0]["port"].as_u64().unwrap();
    let redirect = http("GET", &url, None);
    assert_eq!(
        redirect,
        (
            301,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Redirecting</title>\n</head>\n<body>\n<pre>Redirecting to /manager/</pre>\n</body>\n</html>\n".to_owned()
        )
    );
    let page = http("GET", &format!("{url}/"), None);
    assert_eq!(page, http("GET", &format!("http://127.0.0.1:{stand_in}/manager/"), None));
    assert_eq!(page.0, 200);
    assert!(page.1.starts_with("<!doctype html>"), "{}", page.1);
    assert!(page.1.contains("<title>Evolution Manager</title>"), "{}", page.1);

    let sessions = port_sessions(&lab);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = sessions[0]["session_id"].as_str().unwrap().to_owned();
    signal(&child, rustix::process::Signal::INT);
    let status = wait_until(Duration::from_secs(10), "evoctl to exit after Ctrl-C", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(130));
    let stderr = wait_until(Duration::from_secs(5), "stderr to close", || {
        let seen = text(&stderr.lock().unwrap());
        seen.contains("interrupted").then_some(seen)
    });
    assert_eq!(
        stderr,
        format!(
            "the API key is the variable AUTHENTICATION_API_KEY of task definition {}; log in with it\nforwarding to port 8080 of task {} of production (Ctrl-C to stop)\ninterrupted (Ctrl-C): port session {session} was ended\n",
            task_definition(&lab),
            lab.first_task_id()
        )
    );
    let row = port_sessions(&lab).into_iter().find(|s| s["session_id"] == session.as_str()).expect("the session");
    assert_ended_by_evoctl(&row);
    no_secret(&[url.as_bytes(), stderr.as_bytes()], &[("the production API key", PRODUCTION_KEY)]);
}

#[test]
fn manager_json_names_the_url_and_where_a_secret_key_lives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key-in-ssm.toml");
    std::fs::write(
        &path,
        r#"extends = "seed"
description = "seed, production's API key from SSM"
[parameters."/alinhou/production/evolution-api-key"]
type = "SecureString"
value = "lab-ssm-production-api-key-31c8e2"
[task_definitions.alinhou-production-EvolutionService.secrets]
AUTHENTICATION_API_KEY = "/alinhou/production/evolution-api-key"
"#,
    )
    .unwrap();
    let lab = Lab::start(path.to_str().unwrap());
    lab.wait_settled();
    let mut command = lab.evoctl_process();
    command.args(["--output", "json", "manager", "production"]);
    let (mut child, stdout, stderr) = spawn_collecting(command);
    let doc = wait_until(Duration::from_secs(30), "the manager's document", || {
        serde_json::from_slice::<Value>(&stdout.lock().unwrap()).ok()
    });
    let local = doc["local"].as_str().unwrap().to_owned();
    let session = doc["session_id"].as_str().unwrap().to_owned();
    let definition = task_definition(&lab);
    let account_region = definition.split(':').skip(3).take(2).collect::<Vec<_>>().join(":");
    assert_eq!(
        doc,
        json!({
            "schema": "evoctl.manager/v1",
            "env": "production",
            "task_id": lab.first_task_id(),
            "container": "EvolutionService",
            "url": format!("http://{local}/manager"),
            "local": local,
            "remote_port": 8080,
            "session_id": session,
            "api_key": {
                "source": "secret",
                "variable": "AUTHENTICATION_API_KEY",
                "secret_arn": format!("arn:aws:ssm:{account_region}:parameter/alinhou/production/evolution-api-key"),
            },
        })
    );
    assert_eq!(http("GET", &format!("http://{local}/manager/login"), None).0, 200);
    signal(&child, rustix::process::Signal::INT);
    let status = wait_until(Duration::from_secs(10), "evoctl to exit after Ctrl-C", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(130));
    let stderr = wait_until(Duration::from_secs(5), "stderr to close", || {
        let seen = text(&stderr.lock().unwrap());
        seen.contains("interrupted").then_some(seen)
    });
    assert!(
        stderr.starts_with(&format!(
            "the API key (AUTHENTICATION_API_KEY) is the secret arn:aws:ssm:{account_region}:parameter/alinhou/production/evolution-api-key; log in with it\n"
        )),
        "{stderr}"
    );
    no_secret(
        &[&stdout.lock().unwrap(), stderr.as_bytes()],
        &[("the production API key", "lab-ssm-production-api-key-31c8e2")],
    );
}

#[test]
fn open_hands_the_url_to_the_browser_named_by_browser() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let dir = tempfile::tempdir().unwrap();
    let opened = dir.path().join("opened.txt");
    let browser = dir.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}.tmp' && mv '{0}.tmp' '{0}'\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&browser, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (mut child, url, _stderr) = manager(&lab, &["--open"], Some(&browser));
    let handed =
        wait_until(Duration::from_secs(10), "the browser to be started", || std::fs::read_to_string(&opened).ok());
    assert_eq!(handed, format!("{url}\n"));
    signal(&child, rustix::process::Signal::INT);
    let status = wait_until(Duration::from_secs(10), "evoctl to exit after Ctrl-C", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(130));
}

#[test]
fn metrics_off_on_seed_says_why_and_exits_1() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let output = lab.evoctl().args(["metrics", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: metrics are off in production: Evolution serves /metrics only when PROMETHEUS_METRICS=true, and task definition {} does not set PROMETHEUS_METRICS (GET /metrics answered 404)\n  fix: set PROMETHEUS_METRICS=true in the task definition (and METRICS_AUTH_REQUIRED=true with METRICS_USER and METRICS_PASSWORD to protect it), deploy, and run `evoctl metrics` again\n",
            task_definition(&lab)
        )
    );
    // The one session was ended by evoctl once it had its answer.
    assert_only_session_ended_by_evoctl(&lab);
}

#[test]
fn metrics_on_behind_basic_auth_prints_the_exposition_and_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start(&metrics_scenario(dir.path()));
    lab.wait_settled();
    let output = lab.evoctl().args(["metrics", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "# HELP evolution_environment_info Environment information\n\
         # TYPE evolution_environment_info gauge\n\
         evolution_environment_info{version=\"2.3.7\",clientName=\"evolution_production\",serverUrl=\"https://evolution.alinhou.example\"} 1\n\
         # HELP evolution_instances_total Total number of instances\n\
         # TYPE evolution_instances_total gauge\n\
         evolution_instances_total 0\n\
         # HELP evolution_instance_up 1 if instance state is open, else 0\n\
         # TYPE evolution_instance_up gauge\n\
         # HELP evolution_instance_state Instance state as a labelled metric\n\
         # TYPE evolution_instance_state gauge\n"
    );
    assert_eq!(text(&output.stderr), "");
    assert_only_session_ended_by_evoctl(&lab);
    no_secret(&[&output.stdout, &output.stderr], &[("the metrics password", METRICS_PASSWORD)]);

    // `--output json`: the same text in an `evoctl.metrics/v1` document.
    let json = lab.evoctl().args(["--output", "json", "metrics", "production"]).output().unwrap();
    assert_eq!(json.status.code(), Some(0), "{}", text(&json.stderr));
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        doc,
        json!({
            "schema": "evoctl.metrics/v1",
            "env": "production",
            "task_id": lab.first_task_id(),
            "status": 200,
            "metrics": text(&output.stdout),
        })
    );
    no_secret(&[&json.stdout, &json.stderr], &[("the metrics password", METRICS_PASSWORD)]);
}

#[test]
fn metrics_on_without_credentials_in_the_task_definition_explains_the_401() {
    // PROMETHEUS_METRICS=true alone: the image's .env keeps METRICS_AUTH_REQUIRED=true with its
    // own user and password, which evoctl does not know (it reads the task definition only).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics-bare.toml");
    std::fs::write(
        &path,
        "extends = \"seed\"\ndescription = \"seed, PROMETHEUS_METRICS=true alone\"\n[task_definitions.alinhou-production-EvolutionService.environment]\nPROMETHEUS_METRICS = \"true\"\n",
    )
    .unwrap();
    let lab = Lab::start(path.to_str().unwrap());
    lab.wait_settled();
    let output = lab.evoctl().args(["metrics", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: Evolution asks for a user and password on /metrics (METRICS_AUTH_REQUIRED=true) and answered 401 \"Authentication required\": evoctl has no credentials to send: the task definition does not set METRICS_USER\n  fix: give task definition {} METRICS_USER and METRICS_PASSWORD (plain, or SSM parameters you may read) and deploy\n",
            task_definition(&lab)
        )
    );
    assert_only_session_ended_by_evoctl(&lab);
}
