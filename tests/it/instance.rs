//! `evoctl instance …` against the lab's Evolution 2.3.7 stand-in: the lifecycle, a QR a real
//! decoder reads, the simulated phone, the webhook secret kept out of every record, and each
//! error shape of the API mapped to its message and exit code.

use crate::qr::zbar_decode;
use crate::support::{Lab, json_stdout, text, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

const PRODUCTION_SECRET: &str = "lab-production-webhook-secret-77c1e0";

fn production_task(lab: &Lab) -> String {
    text(&lab.evoctl().args(["task", "production"]).output().unwrap().stdout).trim().to_owned()
}

#[test]
fn create_connect_scan_and_list() {
    let lab = Lab::start("seed");
    let output = lab.evoctl().args(["-vvv", "instance", "create", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "created instance alinhou-production (connecting); link it with `evoctl instance connect production`\n"
    );
    // The webhook secret reached Evolution, and nothing else.
    let created = lab.evolution_instance("alinhou-production");
    assert_eq!(created["webhook"]["headers"]["jwt_key"], PRODUCTION_SECRET);
    assert_eq!(created["webhook"]["events"], json!(["MESSAGES_UPSERT"]));
    assert_eq!(created["webhook"]["webhookByEvents"], true);
    let journal = serde_json::to_string(&lab.journal()).unwrap();
    assert!(!journal.contains(PRODUCTION_SECRET), "the secret is in the journal");
    assert!(!text(&output.stdout).contains(PRODUCTION_SECRET) && !text(&output.stderr).contains(PRODUCTION_SECRET));

    let again = lab.evoctl().args(["instance", "create", "production"]).output().unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(text(&again.stdout), "instance alinhou-production already exists (connecting); nothing changed\n");

    let png = lab.dir.path().join("qr.png");
    let output = lab.evoctl().args(["instance", "connect", "production", "--png"]).arg(&png).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let code = lab.evolution_instance("alinhou-production")["qr"]["code"].as_str().unwrap().to_owned();
    assert_eq!(zbar_decode(&png), code, "the PNG must decode to the simulator's current code");
    // No terminal here: the code is said on stderr; stdout has nothing (a code is no data).
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        format!("QR 1 of 30: no terminal to draw it on; scan {}. Its code: {code}\n", png.display())
    );

    lab.control("POST", "/phone/scan", Some(&json!({"code": code, "number": "5511912345678"})));
    let output = lab.evoctl().args(["instance", "state", "production"]).output().unwrap();
    assert_eq!(text(&output.stdout).lines().next(), Some("open"), "the first line is the live state");
    let output = lab.evoctl().args(["--output", "json", "instance", "list", "production"]).output().unwrap();
    let list = json_stdout(&output);
    assert_eq!(list["instances"][0]["name"], "alinhou-production");
    assert_eq!(list["instances"][0]["connection_status"], "open");
    assert_eq!(list["instances"][0]["number"], "5511912345678");
    let output = lab.evoctl().args(["instance", "connect", "production"]).output().unwrap();
    assert_eq!(
        text(&output.stdout),
        "instance alinhou-production is already connected (open) to 5511912345678\n  database: open\n  last disconnect: none recorded in the row\n"
    );
}

#[test]
fn pairing_codes_and_protected_deletes() {
    let lab = Lab::start("seed");
    assert_eq!(lab.evoctl().args(["instance", "create", "production"]).output().unwrap().status.code(), Some(0));
    lab.evoctl().args(["instance", "logout", "production", "--yes"]).output().unwrap();
    let output = lab
        .evoctl()
        .args(["--output", "json", "instance", "connect", "production", "--pairing-number", "5511912345678"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    let pairing = report["pairing_code"].as_str().unwrap();
    assert_eq!(pairing.len(), 8);
    let count = report["count"].as_u64().unwrap();
    let event = json!({"schema": "evoctl.connect.event/v1", "kind": "pairing_code", "env": "production",
                       "instance": "alinhou-production", "code": pairing, "count": count, "limit": 30, "png": null});
    assert_eq!(
        text(&output.stderr),
        format!(
            "{event}\npairing code: {pairing}  (WhatsApp > Linked devices > Link with phone number instead; pairing code {count} of 30)\n"
        )
    );

    let output = lab.evoctl().args(["instance", "delete", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr)
            .starts_with("error: production is protected: `instance delete` on alinhou-production needs --yes")
    );
    let output = lab.evoctl().args(["instance", "delete", "production", "--yes"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "instance alinhou-production deleted\n");
    assert_eq!(lab.evolution_instance("alinhou-production"), Value::Null);
}

#[test]
fn every_api_error_shape_has_its_message_and_exit_code() {
    let lab = Lab::start("seed");
    let run = |args: &[&str]| lab.evoctl().args(args).output().unwrap();
    // 404 unknown instance (string inside an array).
    let output = run(&["instance", "state", "production", "nope"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        text(&output.stderr),
        "error: connectionState: The \"nope\" instance does not exist\n  fix: check the instance name (`evoctl instance list production`)\n"
    );
    assert_eq!(run(&["instance", "create", "production"]).status.code(), Some(0));
    // 401 (string message) when the process expects another key.
    let task = production_task(&lab);
    lab.control("POST", "/evolution/faults", Some(&json!({"task": task, "reject_key": true})));
    let output = run(&["instance", "state", "production"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).starts_with(
            "error: connectionState: Unauthorized\n  fix: the API key evoctl read in the container was refused"
        ),
        "{}",
        text(&output.stderr)
    );
    // 500 with a plain string message.
    lab.control(
        "POST",
        "/evolution/faults",
        Some(&json!({"task": task, "fail_next": "Cannot read properties of undefined (reading 'length')"})),
    );
    let output = run(&["instance", "state", "production"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr)
            .starts_with("error: connectionState: Cannot read properties of undefined (reading 'length')\n"),
        "{}",
        text(&output.stderr)
    );
}

/// 2.3.7 refuses a logout of a `close` instance (400 "is not connected") and cannot restart one
/// (200 `{error:true, message:"[object Object]"}`, the refusal in its log): each is said as it
/// is, with the way forward, for the instance acted on.
#[test]
fn logout_and_restart_of_a_closed_instance_say_so_and_the_way_forward() {
    let lab = Lab::start("seed");
    let run = |args: &[&str]| lab.evoctl().args(args).output().unwrap();
    let output = run(&["instance", "create", "production", "named1"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "created instance named1 (connecting); link it with `evoctl instance connect production named1`\n"
    );
    let output = run(&["instance", "logout", "production", "named1", "--yes"]);
    assert_eq!((output.status.code(), text(&output.stdout)), (Some(0), "instance named1 logged out\n".into()));
    assert_eq!(lab.evolution_instance("named1")["state"], "close");

    let output = run(&["instance", "logout", "production", "named1", "--yes"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "instance named1 is not connected (close): there is no WhatsApp session to log out; nothing was changed\n"
    );
    assert_eq!(
        text(&output.stderr),
        "to link it again: `evoctl connect production named1`; to remove it: `evoctl instance delete production named1 --yes`\n"
    );
    let output = run(&["--output", "json", "instance", "logout", "production", "named1", "--yes"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        json_stdout(&output),
        json!({"schema": "evoctl.instance/v1", "env": "production", "instance": "named1", "action": "logout", "logged_out": false, "state": "close"})
    );

    let output = run(&["instance", "restart", "production", "named1"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        "error: restart: named1 is close (not connected), and Evolution 2.3.7 cannot restart a closed instance (it answered \"[object Object]\"); nothing was changed\n  \
         fix: start its socket with `evoctl instance connect production named1` (a QR to scan when the number is not linked)\n"
    );
    assert_eq!(lab.evolution_instance("named1")["state"], "close", "nothing was changed");
    // The server logged what it refused, as 2.3.7 does.
    let logged = wait_until(Duration::from_secs(10), "the refusal in the task's log", || {
        let output = run(&["logs", "production", "--kind", "error", "--since", "5m"]);
        let stdout = text(&output.stdout);
        stdout.contains("message: [ 'The \"named1\" instance is not connected' ]").then_some(stdout)
    });
    assert!(logged.contains("ERROR   [InstanceController]  [object]"), "{logged}");

    // The way forward works: connect starts the socket and shows a code.
    let output = run(&["instance", "connect", "production", "named1"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(lab.evolution_instance("named1")["state"], "connecting");
}

#[test]
fn an_empty_webhook_secret_writes_nothing() {
    let lab = Lab::start("seed");
    let path = lab.dir.path().join("empty-secret.toml");
    let config = std::fs::read_to_string(lab.config_path()).unwrap().replace(
        "jwt_secret = \"ssm:/alinhou/production/evolution-webhook-secret\"",
        "jwt_secret = \"env:EVOCTL_TEST_EMPTY_SECRET\"",
    );
    std::fs::write(&path, config).unwrap();
    lab.control("DELETE", "/journal", None);
    let output = lab
        .evoctl()
        .arg("--config")
        .arg(&path)
        .env("EVOCTL_TEST_EMPTY_SECRET", "")
        .args(["instance", "create", "production"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr)
            .starts_with("error: the webhook secret env:EVOCTL_TEST_EMPTY_SECRET is empty; nothing was written\n"),
        "{}",
        text(&output.stderr)
    );
    assert!(lab.journal().iter().all(|e| e["action"] != "ExecuteCommand"), "nothing may be sent to the container");
    assert_eq!(lab.evolution_instance("alinhou-production"), Value::Null);
}

#[test]
fn webhook_show_hides_the_secret_and_set_writes_only_changes() {
    let lab = Lab::start("seed");
    assert_eq!(lab.evoctl().args(["instance", "create", "production"]).output().unwrap().status.code(), Some(0));
    let output = lab.evoctl().args(["-vvv", "webhook", "show", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let url = format!("{}/_lab/webhooks/production", lab.ready["aws_endpoint"].as_str().unwrap());
    assert_eq!(
        text(&output.stdout),
        format!(
            "url        {url}\nenabled    true\nevents     MESSAGES_UPSERT\n\
             by_events  true\nbase64     false\njwt_key    set (36 chars)\n"
        )
    );
    assert!(!text(&output.stderr).contains(PRODUCTION_SECRET));

    let output = lab.evoctl().args(["webhook", "set", "production"]).output().unwrap();
    assert_eq!(text(&output.stdout), "webhook of alinhou-production already matches evoctl.toml; nothing written\n");

    let path = lab.dir.path().join("more-events.toml");
    let config = std::fs::read_to_string(lab.config_path()).unwrap().replacen(
        "events = [\"MESSAGES_UPSERT\"]",
        "events = [\"MESSAGES_UPSERT\", \"CONNECTION_UPDATE\"]",
        2,
    );
    std::fs::write(&path, config).unwrap();
    let output =
        lab.evoctl().arg("--config").arg(&path).args(["-vvv", "webhook", "set", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!("webhook of alinhou-production set to {url} (events: MESSAGES_UPSERT, CONNECTION_UPDATE)\n")
    );
    assert!(!text(&output.stderr).contains(PRODUCTION_SECRET));
    let stored = lab.evolution_instance("alinhou-production");
    assert_eq!(stored["webhook"]["events"], json!(["MESSAGES_UPSERT", "CONNECTION_UPDATE"]));
    assert_eq!(stored["webhook"]["headers"]["jwt_key"], PRODUCTION_SECRET);
    let journal = serde_json::to_string(&lab.journal()).unwrap();
    assert!(!journal.contains(PRODUCTION_SECRET), "the secret is in the journal");
}

#[test]
fn webhooks_arrive_signed_with_the_ssm_secret() {
    let lab = Lab::start("seed");
    lab.link_production();
    lab.control("POST", "/phone/message", Some(&json!({"instance": "alinhou-production", "text": "oi"})));
    let delivered = crate::support::wait_until(std::time::Duration::from_secs(10), "the webhook delivery", || {
        let all = lab.control("GET", "/webhooks", None);
        all.as_array().unwrap().iter().find(|w| w["body"]["event"] == "messages.upsert").cloned()
    });
    assert_eq!(delivered["target"], "production/messages-upsert", "byEvents appends the event path");
    assert_eq!(delivered["jwt_verified_with"], "/alinhou/production/evolution-webhook-secret");
    assert_eq!(delivered["jwt_claims"]["app"], "evolution");
    assert_eq!(delivered["jwt_claims"]["action"], "webhook");
    assert_eq!(delivered["body"]["instance"], "alinhou-production");
    assert_eq!(delivered["body"]["data"]["message"]["conversation"], "oi");
    // Only subscribed events are sent (the config asks for MESSAGES_UPSERT alone).
    let all = lab.control("GET", "/webhooks", None);
    assert!(all.as_array().unwrap().iter().all(|w| w["body"]["event"] == "messages.upsert"), "{all}");
}

fn conflict_lines(lab: &Lab) -> usize {
    let group = "/sst/cluster/alinhou-production-Cluster/EvolutionService/EvolutionService";
    let output = crate::awscli::aws(lab)
        .args(["logs", "filter-log-events", "--log-group-name", group])
        .args(["--filter-pattern", "\"stream errored out\" conflict replaced"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    serde_json::from_slice::<Value>(&output.stdout).unwrap()["events"].as_array().unwrap().len()
}

#[test]
fn two_tasks_on_one_database_kick_each_other_and_one_does_not() {
    let lab = Lab::start("seed");
    lab.link_production();
    let state = || text(&lab.evoctl().args(["instance", "state", "production"]).output().unwrap().stdout);
    assert_eq!(state(), "open\n  database: open\n  last disconnect: none recorded in the row\n");
    assert_eq!(state(), "open\n  database: open\n  last disconnect: none recorded in the row\n");
    assert_eq!(conflict_lines(&lab), 0, "one task holds the session alone");

    // A second task of the same service (a stuck deploy): same database, same credentials.
    lab.control("POST", "/tasks", Some(&json!({"cluster": "alinhou-production", "service": "EvolutionService"})));
    crate::support::wait_until(std::time::Duration::from_secs(20), "conflict lines in the log group", || {
        (conflict_lines(&lab) >= 2).then_some(())
    });
    // The live state now alternates between open and connecting.
    let mut seen = std::collections::BTreeSet::new();
    crate::support::wait_until(std::time::Duration::from_secs(20), "connectionState to flap", || {
        seen.insert(lab.evolution_instance("alinhou-production")["state"].as_str().unwrap().to_owned());
        (seen.len() == 2).then_some(())
    });
}

#[test]
fn a_name_taken_through_a_shared_database_is_refused() {
    let lab = Lab::start("shared-db");
    // Both environments run here, so they are declared as using different phone numbers (with
    // one number, creating an instance while the other environment is live is refused first).
    let path = lab.dir.path().join("two-numbers.toml");
    let config = std::fs::read_to_string(lab.config_path()).unwrap().replacen(
        "[env.staging]\n",
        "[env.staging]\nnumber = \"staging-phone\"\n",
        1,
    );
    std::fs::write(&path, config).unwrap();
    let create =
        |args: &[&str]| lab.evoctl().arg("--config").arg(&path).args(["instance", "create"]).args(args).output();
    let refused = lab.evoctl().args(["instance", "create", "production"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(4), "one number: staging is live");
    assert!(
        text(&refused.stderr)
            .starts_with("error: refused: staging has 1 live task(s) (desired 1) on the number production uses")
    );
    assert_eq!(create(&["production"]).unwrap().status.code(), Some(0));
    let output = create(&["staging", "alinhou-production"]).unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).starts_with(
            "error: another Evolution process owns instance alinhou-production: the database is shared (the row is in this deployment's database but another DATABASE_CONNECTION_CLIENT_NAME loaded it); nothing was changed\n"
        ),
        "{}",
        text(&output.stderr)
    );
    // The webhook probe is refused the same way before anything is sent.
    lab.control("DELETE", "/webhooks", None);
    let probe = lab
        .evoctl()
        .arg("--config")
        .arg(&path)
        .args(["webhook", "test", "staging", "alinhou-production"])
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(4), "{}", text(&probe.stderr));
    assert!(text(&probe.stderr).starts_with("error: another Evolution process owns instance alinhou-production"));
    assert_eq!(lab.control("GET", "/webhooks", None), serde_json::json!([]), "no probe was sent");
}

#[test]
fn the_qr_limit_closes_the_instance() {
    let lab = Lab::start_with("seed", &["--qr-rotate-ms", "40"]);
    assert_eq!(lab.evoctl().args(["instance", "create", "production"]).output().unwrap().status.code(), Some(0));
    crate::support::wait_until(std::time::Duration::from_secs(20), "the QR limit (30 QRs)", || {
        (lab.evolution_instance("alinhou-production")["state"] == "close").then_some(())
    });
    assert_eq!(lab.evolution_instance("alinhou-production")["qr"]["count"], 0, "the count resets at the limit");
    let output = crate::awscli::aws(&lab)
        .args([
            "logs",
            "filter-log-events",
            "--log-group-name",
            "/sst/cluster/alinhou-production-Cluster/EvolutionService/EvolutionService",
        ])
        .args(["--filter-pattern", "\"NOT CONNECTION\""])
        .output()
        .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&output.stdout).unwrap()["events"].as_array().unwrap().len(), 1);
}

#[test]
fn webhook_set_makes_deliveries_carry_a_jwt_signed_with_the_ssm_secret() {
    let lab = Lab::start("seed");
    // Create with a webhook pointing elsewhere, then let `webhook set` fix it from the config.
    let elsewhere = lab.dir.path().join("elsewhere.toml");
    let config = std::fs::read_to_string(lab.config_path()).unwrap();
    let lab_url = format!("{}/_lab/webhooks/production", lab.ready["aws_endpoint"].as_str().unwrap());
    std::fs::write(&elsewhere, config.replace(&lab_url, "https://hooks.example.invalid/evolution")).unwrap();
    let output =
        lab.evoctl().arg("--config").arg(&elsewhere).args(["instance", "create", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let output = lab.evoctl().args(["-vvv", "webhook", "set", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!("webhook of alinhou-production set to {lab_url} (events: MESSAGES_UPSERT)\n")
    );
    for text in [text(&output.stdout), text(&output.stderr), serde_json::to_string(&lab.journal()).unwrap()] {
        assert!(!text.contains(PRODUCTION_SECRET));
    }
    lab.scan("alinhou-production");
    lab.control("POST", "/phone/message", Some(&json!({"instance": "alinhou-production", "text": "after set"})));
    let delivered = crate::support::wait_until(std::time::Duration::from_secs(10), "the webhook delivery", || {
        lab.control("GET", "/webhooks", None).as_array().unwrap().first().cloned()
    });
    assert_eq!(delivered["jwt_verified_with"], "/alinhou/production/evolution-webhook-secret");
    assert_eq!(delivered["body"]["data"]["message"]["conversation"], "after set");
}
