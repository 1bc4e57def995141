//! Evolution 2.4.0-rc2 (`--evolution-version 2.4.0-rc2`): unlicensed, every business route
//! answers 503 `LICENSE_REQUIRED` and evoctl says so once, with the ways to activate; activated
//! (`--evolution-licence activated`, or `GET /license/activate?code=` in the task), the commands
//! work as on 2.3.7.

use crate::connect::BAILEYS_WARNING;
use crate::evolution::call_in_container;
use crate::support::{Lab, check, json_stdout, text, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

const FIX: &str = "activate it once for its database: sign in at the manager's /manager/login on the service's URL, or redeem an authorization code with GET /license/activate?code=CODE, or give the task AUTHENTICATION_API_KEY set to a licensing key or (2.4.0-rc2) EVOLUTION_OPERATOR_EMAIL for headless activation and replace the task; GET /license/status then says active (https://docs.evolutionfoundation.com.br/licensing), and `evoctl doctor production` checks it";

/// doctor's `evolution` evidence on the stand-in as 2.4.0-rc2 (its image ships Baileys rc.9).
fn evolution_2_4() -> String {
    format!(
        "Evolution API 2.4.0 (client evolution_production), WhatsApp Web 2.3000.1027934701{}",
        crate::pairing::UNPATCHED_EVIDENCE
    )
}

/// What 2.4's licence gate answers, as evoctl says it (after the call it refused).
fn gated(id: &str) -> String {
    format!(
        "Evolution answered 503 LICENSE_REQUIRED: this server (2.4) is not activated (licence identity {id}), and until it is it refuses every call but /, /license/* and the manager; nothing was changed"
    )
}

/// The licence identity the server reports (`GET /license/status`, not gated).
fn identity(lab: &Lab) -> String {
    let lines = call_in_container(lab, "production", &[("GET", "/license/status", Value::Null)]);
    let body: Value = serde_json::from_str(lines[0].strip_prefix("200 ").unwrap()).unwrap();
    body["instance_id"].as_str().unwrap().to_owned()
}

#[test]
fn unlicensed_2_4_is_one_clear_error_naming_the_activation() {
    let lab = Lab::start_with("seed", &["--evolution-version", "2.4.0-rc2"]);
    lab.wait_settled();
    let id = identity(&lab);
    let output = lab.evoctl().args(["instance", "list", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), format!("error: fetchInstances: {}\n  fix: {FIX}\n", gated(&id)));

    // connect's watch meets the same gate at its first call, and says the same.
    let output = lab.evoctl().args(["connect", "production", "--timeout", "30s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        format!(
            "preflight ok: production is the only live environment on its number; task {} (exec agent RUNNING)\n\
             waiting for alinhou-production to be linked (up to 30 s)…\n{BAILEYS_WARNING}\
             error: connect: {}\n  fix: {FIX}\n",
            lab.first_task_id(),
            gated(&id)
        )
    );

    // doctor: GET / still answers (2.4.0), the next layer says the licence.
    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    let evolution = check(&report, "evolution");
    assert_eq!((&evolution["status"], &evolution["evidence"]), (&json!("OK"), &json!(evolution_2_4())), "{evolution}");
    let key = check(&report, "api-key");
    assert_eq!(
        (&key["status"], &key["evidence"], &key["fix"]),
        (&json!("FAIL"), &json!(format!("POST /verify-creds: {}", gated(&id))), &json!(FIX)),
        "{key}"
    );

    // Activated with a code (as the registration callback gives one), the same list works.
    let lines = call_in_container(&lab, "production", &[("GET", "/license/activate?code=lab-code-1", Value::Null)]);
    let answer: Value = serde_json::from_str(lines[0].strip_prefix("200 ").unwrap()).unwrap();
    assert_eq!(answer, json!({"status": "active", "message": "License activated successfully!"}));
    let output = lab.evoctl().args(["instance", "list", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn activated_2_4_works_as_2_3_7() {
    let lab = Lab::start_with(
        "seed",
        &["--evolution-version", "2.4.0-rc2", "--evolution-licence", "activated", "--auto-scan-after-ms", "1500"],
    );
    lab.wait_settled();
    let output = lab.evoctl().args(["connect", "production", "--stable-for", "1s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with("linked 5511987654321 to alinhou-production\n"),
        "{}",
        text(&output.stdout)
    );
    let output = lab.evoctl().args(["--output", "json", "instance", "list", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let listed = json_stdout(&output);
    assert_eq!(
        (
            &listed["instances"][0]["name"],
            &listed["instances"][0]["connection_status"],
            &listed["instances"][0]["number"]
        ),
        (&json!("alinhou-production"), &json!("open"), &json!("5511987654321")),
        "{listed}"
    );
    let output = lab.evoctl().args(["instance", "state", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "open\n  database: open\n  last disconnect: none recorded in the row\n");
    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    assert_eq!(check(&report, "evolution")["evidence"], evolution_2_4());
    assert_eq!(check(&report, "api-key")["status"], "OK");
}

/// On 2.4 `webhook test` sends the tracking headers 2.4 adds to every per-instance delivery
/// (the lab's own deliveries carry them as the real server's do); on 2.3.7 it does not.
#[test]
fn webhook_test_sends_the_headers_of_the_servers_version() {
    let lab = Lab::start_with("seed", &["--evolution-version", "2.4.0-rc2", "--evolution-licence", "activated"]);
    lab.link_production();
    lab.control("POST", "/phone/message", Some(&json!({"instance": "alinhou-production", "text": "oi"})));
    let delivered = wait_until(Duration::from_secs(20), "a delivery of the server", || {
        let all = lab.control("GET", "/webhooks", None);
        all.as_array().unwrap().iter().find(|d| d["body"]["event"] == "messages.upsert").cloned()
    });
    let server = &delivered["headers"];
    assert_eq!(server["user-agent"], "EvolutionAPI-Webhook/2.3.7", "{server}");
    assert_eq!(server["x-instance-name"], "alinhou-production");
    assert_eq!(server["x-event-type"], "messages.upsert");
    lab.control("DELETE", "/webhooks", None);
    let before = now_ms();
    let output = lab.evoctl().args(["webhook", "test", "production"]).output().unwrap();
    let after = now_ms();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let sent = probe_headers(&lab);
    for name in ["user-agent", "x-instance-id", "x-instance-name"] {
        assert_eq!(sent[name], server[name], "{name}: {sent} vs {server}");
    }
    assert_eq!(sent["x-event-type"], "evoctl.probe");
    let stamp: u64 = sent["x-timestamp"].as_str().unwrap().parse().unwrap();
    assert!((before..=after).contains(&stamp), "{stamp} not within the run ({before}..={after})");

    // 2.3.7: none of them, and the User-Agent of the server's own deliveries (axios's).
    let lab = Lab::start("seed");
    lab.link_production();
    lab.control("DELETE", "/webhooks", None);
    lab.control("POST", "/phone/message", Some(&json!({"instance": "alinhou-production", "text": "oi"})));
    let output = lab.evoctl().args(["webhook", "test", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let sent = probe_headers(&lab);
    for name in ["x-instance-id", "x-instance-name", "x-event-type", "x-timestamp"] {
        assert_eq!(sent.get(name), None, "{name}: {sent}");
    }
    let all = lab.control("GET", "/webhooks", None);
    let server = all
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["body"]["event"] == "messages.upsert")
        .expect("the message's delivery");
    assert_eq!(
        (&sent["user-agent"], &server["headers"]["user-agent"]),
        (&json!("axios/1.13.2"), &json!("axios/1.13.2"))
    );
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

/// The headers of the one probe delivery (event `evoctl.probe`) the lab's receiver holds.
fn probe_headers(lab: &Lab) -> Value {
    let all = lab.control("GET", "/webhooks", None);
    let probes: Vec<&Value> = all.as_array().unwrap().iter().filter(|d| d["body"]["event"] == "evoctl.probe").collect();
    assert_eq!(probes.len(), 1, "one probe delivery: {all:#}");
    probes[0]["headers"].clone()
}

/// Two environments on one database share 2.4's licence identity: the audit's shared-database
/// finding says so.
#[test]
fn a_shared_database_is_said_to_share_the_licence_identity() {
    let lab = Lab::start("shared-db-uri");
    let output = lab.evoctl().args(["--output", "json", "audit"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let audit = json_stdout(&output);
    let findings = audit["findings"].as_array().unwrap();
    let rules: Vec<&Value> = findings.iter().map(|f| &f["rule"]).collect();
    assert_eq!(rules, [&json!("shared-database")], "{audit:#}");
    assert_eq!(
        findings[0]["fix"],
        "give each environment its own database (or at least its own ?schema=): a shared one shares instance rows, sessions and names, and on Evolution 2.4 one licence identity (its RuntimeConfig table: activating one activates both, and the licence server sees one instance)"
    );
}
