//! Why an instance's connection ended, said everywhere: `instance state` (the process's memory
//! and the database row, the last disconnect with its meaning and age, a replacement from the
//! task's log), `doctor`'s instance-health layer, `status --instances`, and `evoctl api` for any
//! other call, its answer scrubbed. The lab writes the row's disconnection columns only where
//! 2.3.7 does (a close it does not reconnect: the device removed, 401).

use crate::support::{Lab, check, json_stdout, text, wait_until};
use serde_json::json;
use std::time::Duration;

const PRODUCTION_KEY: &str = "lab-production-api-key-9a7c3e1f5d";

#[test]
fn a_linked_instance_says_both_states_and_no_disconnect() {
    let lab = Lab::start("seed");
    lab.link_production();
    let output = lab.evoctl().args(["instance", "state", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "open\n  database: open\n  last disconnect: none recorded in the row\n");
    let output = lab.evoctl().args(["--output", "json", "instance", "state", "production"]).output().unwrap();
    let report = json_stdout(&output);
    assert_eq!(report["state"], "open");
    assert_eq!(report["connection"]["database"], "open");
    assert_eq!(report["connection"]["disagreement"], serde_json::Value::Null);
    assert_eq!(report["connection"]["row_disconnect"], serde_json::Value::Null);

    // connect's already-linked path says the same.
    let output = lab.evoctl().args(["connect", "production", "--stable-for", "1s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("alinhou-production is already connected (open) to 5511987654321\n"), "{stdout}");
    assert!(stdout.ends_with("  database: open\n  last disconnect: none recorded in the row\n"), "{stdout}");
}

#[test]
fn the_conflict_shows_440_and_its_meaning_and_points_at_conflicts() {
    let lab = Lab::start("seed");
    lab.link_production();
    // A second task of the same service holds the same session: WhatsApp replaces one with
    // the other (440), and Baileys logs it; 2.3.7 reconnects and writes nothing to the row.
    lab.control("POST", "/tasks", Some(&json!({"cluster": "alinhou-production", "service": "EvolutionService"})));
    let report = wait_until(Duration::from_secs(30), "a 440 in instance state", || {
        let output = lab.evoctl().args(["--output", "json", "instance", "state", "production"]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let report = json_stdout(&output);
        (!report["connection"]["logged_disconnect"].is_null()).then_some(report)
    });
    let logged = &report["connection"]["logged_disconnect"];
    assert_eq!(logged["code"], 440);
    assert_eq!(logged["name"], "connectionReplaced");
    assert_eq!(logged["source"], "log");
    assert!(logged["age_seconds"].as_i64().unwrap() < 60, "{logged}");
    assert_eq!(report["connection"]["row_disconnect"], serde_json::Value::Null, "2.3.7 never writes a 440 to the row");
    assert_eq!(report["connection"]["database"], "open");
    assert!(report["connection"]["fix"].as_str().unwrap().contains("`evoctl conflicts production`"), "{report}");

    let output = lab.evoctl().args(["instance", "state", "production"]).output().unwrap();
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(
            "  last stream error: 440 connectionReplaced (replaced: another connection took this session (two sockets on one number)), "
        ),
        "{stdout}"
    );
    assert!(stdout.contains(" ago, from the task's log\n"), "{stdout}");
    assert!(stdout.contains("`evoctl conflicts production` says which\n"), "{stdout}");
}

#[test]
fn a_removed_device_is_401_in_the_row_and_needs_a_new_link() {
    let lab = Lab::start("seed");
    lab.link_production();
    lab.control("POST", "/phone/remove", Some(&json!({"instance": "alinhou-production"})));
    wait_until(Duration::from_secs(10), "the row to be closed", || {
        (lab.evolution_instance("alinhou-production")["connectionStatus"] == "close").then_some(())
    });
    let row = lab.evolution_instance("alinhou-production");
    assert_eq!(row["disconnectionReasonCode"], 401);
    assert!(row["disconnectionObject"].as_str().unwrap().contains("Stream Errored (conflict)"), "{row}");

    let output = lab.evoctl().args(["instance", "state", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "close");
    assert_eq!(lines[1], "  database: close");
    assert!(
        lines[2].starts_with("  last disconnect: 401 loggedOut (logged out: the linked device was removed (from the phone) or the session ended), "),
        "{stdout}"
    );
    assert!(lines[2].ends_with(" ago, from the database row"), "{stdout}");
    assert!(stdout.contains("  the device was removed: it needs a new link\n"), "{stdout}");
    assert!(
        stdout
            .ends_with("  fix: the device was removed and the number needs a new link: `evoctl connect production`\n"),
        "{stdout}"
    );
    let output = lab.evoctl().args(["--output", "json", "instance", "state", "production"]).output().unwrap();
    let report = json_stdout(&output);
    assert_eq!(report["connection"]["row_disconnect"]["code"], 401);
    assert_eq!(report["connection"]["row_disconnect"]["name"], "loggedOut");
    assert_eq!(report["connection"]["row_disconnect"]["source"], "database");
    // Baileys' own line (rc.9's shape, `code="401"` with `device_removed`) reads as the same 401.
    let logged = wait_until(Duration::from_secs(15), "the 401 from the task's log", || {
        let output = lab.evoctl().args(["--output", "json", "instance", "state", "production"]).output().unwrap();
        let report = json_stdout(&output);
        let logged = report["connection"]["logged_disconnect"].clone();
        (!logged.is_null()).then_some(logged)
    });
    assert_eq!((logged["code"].as_i64(), logged["name"].as_str()), (Some(401), Some("loggedOut")));

    // doctor's instance-health layer says the same.
    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    let report = json_stdout(&output);
    let health = check(&report, "instance-health");
    assert_eq!(health["status"], "WARN", "{health}");
    let evidence = health["evidence"].as_str().unwrap();
    assert!(
        evidence.starts_with("alinhou-production is close in the process and close in the database, last linked to 5511987654321; last disconnect: 401 loggedOut"),
        "{evidence}"
    );
    assert_eq!(health["fix"], "the device was removed and the number needs a new link: `evoctl connect production`");
}

#[test]
fn a_row_that_says_open_under_a_closed_process_is_a_dead_socket() {
    let lab = Lab::start("seed");
    lab.link_production();
    lab.control("POST", "/phone/dead", Some(&json!({"instance": "alinhou-production"})));
    let row = lab.evolution_instance("alinhou-production");
    assert_eq!((row["connectionStatus"].as_str(), row["state"].as_str()), (Some("open"), Some("close")));

    let output = lab.evoctl().args(["instance", "state", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "close\n  database: open\n  last disconnect: none recorded in the row\n  the database says open, the process says close: a dead socket (2.3.7 reconnects without writing the row, and this reconnect did not come up)\n  fix: restart its socket: `evoctl instance connect production` (a paired session comes back open without a scan)\n"
    );

    // status reads it only when asked, in one session per environment.
    let output = lab.evoctl().args(["status", "production"]).output().unwrap();
    assert!(!text(&output.stdout).contains("INSTANCE"), "{}", text(&output.stdout));
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["status", "--instances"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let sessions = lab.journal().iter().filter(|e| e["action"] == "ExecuteCommand").count();
    assert_eq!(sessions, 1, "one exec session: production's (staging is parked, no task to ask)");
    // The task's start time is the lab's: checked by its shape, the rest exactly.
    let started = regex::Regex::new(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b").unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(started.find_iter(&stdout).count(), 1, "{stdout}");
    assert_eq!(
        started.replace(&stdout, "STARTED_AT_UTC______"),
        format!(
            "ENV         CLUSTER             SERVICE           DESIRED  RUNNING  PENDING  MIN/MAX  DEPLOY MAX/MIN%  LIVE  CHECK  INSTANCE\n\
             staging     alinhou-staging     EvolutionService  0        0        0        0/0      100/0            0     ok     alinhou-staging (no live task)\n\
             production  alinhou-production  EvolutionService  1        1        0        1/1      100/0            1     ok     alinhou-production close (db open)\n\
             \n\
             ENV         TASK                              STATUS   STARTED               EXEC AGENT\n\
             production  {task}  RUNNING  STARTED_AT_UTC______  RUNNING\n\
             \n\
             ENV         WHAT      DETAIL\n\
             production  instance  the database says open, the process says close: a dead socket (2.3.7 reconnects without writing the row, and this reconnect did not come up)\n\
             production  fix       restart its socket: `evoctl instance connect production` (a paired session comes back open without a scan)\n",
            task = lab.first_task_id()
        )
    );
    let output = lab.evoctl().args(["--output", "json", "status", "production", "--instances"]).output().unwrap();
    let report = json_stdout(&output);
    assert_eq!(report["environments"][0]["instance"]["connection"]["state"], "close");
    assert_eq!(report["environments"][0]["instance"]["connection"]["database"], "open");

    // The fix works: the paired session comes back without a scan.
    let output = lab.evoctl().args(["instance", "connect", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let output = lab.evoctl().args(["instance", "state", "production"]).output().unwrap();
    assert!(text(&output.stdout).starts_with("open\n  database: open\n"), "{}", text(&output.stdout));
}

#[test]
fn api_prints_any_answer_as_json_without_a_secret() {
    let lab = Lab::start("seed");
    lab.link_production();
    let token = lab.evolution_instance("alinhou-production")["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 8, "the row has an instance token: {token}");
    let output = lab.evoctl().args(["-vvv", "api", "production", "GET", "/instance/fetchInstances"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!all.contains(PRODUCTION_KEY), "the API key is shown");
    assert!(!all.contains(&token), "the instance token is shown");
    let rows: serde_json::Value = serde_json::from_str(&text(&output.stdout)).unwrap();
    assert_eq!(rows[0]["name"], "alinhou-production");
    assert_eq!(rows[0]["connectionStatus"], "open");
    assert_eq!(rows[0]["token"], "[redacted]", "the server returns the token: it is redacted");
    let journal = serde_json::to_string(&lab.journal()).unwrap();
    assert!(!journal.contains(PRODUCTION_KEY), "the key is in the journal (a command line)");

    let output = lab
        .evoctl()
        .args(["--output", "json", "api", "production", "get", "/instance/connectionState/alinhou-production"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    assert_eq!(report["status"], 200);
    assert_eq!(report["body"]["instance"]["state"], "open");

    // A body, and an error: HTTP >= 400 exits non-zero with the status said.
    let output = lab
        .evoctl()
        .args([
            "api",
            "production",
            "POST",
            "/instance/create",
            "--data",
            r#"{"instanceName": "alinhou-production", "integration": "WHATSAPP-BAILEYS"}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).starts_with(
            "error: POST /instance/create answered HTTP 403: This name \"alinhou-production\" is already in use."
        ),
        "{}",
        text(&output.stderr)
    );
    let output = lab.evoctl().args(["api", "production", "GET", "/instance/connectionState/nope"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).starts_with("error: GET /instance/connectionState/nope answered HTTP 404"),
        "{}",
        text(&output.stderr)
    );

    // Bad input says which and exits 2 before anything runs.
    let output = lab.evoctl().args(["api", "production", "FETCH", "/"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).starts_with("error: api: unknown method `FETCH`"), "{}", text(&output.stderr));
    let output = lab.evoctl().args(["api", "production", "POST", "/x", "--data", "{nope"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).starts_with("error: --data is not JSON: "), "{}", text(&output.stderr));
}
