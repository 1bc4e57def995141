//! `evoctl webhook test`: a delivery probe from inside the task, signed with the instance's own
//! jwt_key, against the lab's receiver (whose records are the oracle: what arrived, which
//! secret its JWT verified with, what it answered).

use crate::support::{Lab, json_stdout, text};
use serde_json::{Value, json};

fn last_delivery(lab: &Lab) -> Value {
    lab.control("GET", "/webhooks", None).as_array().unwrap().last().cloned().expect("a delivery")
}

#[test]
fn on_seed_the_probe_is_delivered_signed_with_the_instance_key() {
    let lab = Lab::start("seed");
    lab.link_production();
    lab.control("DELETE", "/webhooks", None);
    let output = lab.evoctl().args(["webhook", "test", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let url = format!("{}/webhooks/production/evoctl-probe", lab.ready["control"].as_str().unwrap());
    let stdout = text(&output.stdout);
    let expected = format!("webhook test: ok\nPOST {url} answered 200 in ");
    assert!(stdout.starts_with(&expected), "{stdout}");
    assert!(stdout.ends_with(" ms (JWT signed with the instance's jwt_key, as Evolution signs)\n"), "{stdout}");
    let deliveries = lab.control("GET", "/webhooks", None);
    assert_eq!(deliveries.as_array().unwrap().len(), 1, "one probe, no retries: {deliveries}");
    let probe = last_delivery(&lab);
    assert_eq!(probe["target"], "production/evoctl-probe");
    assert_eq!(probe["answered"], 200);
    assert_eq!(probe["jwt_verified_with"], "/alinhou/production/evolution-webhook-secret");
    let claims = &probe["jwt_claims"];
    assert_eq!((&claims["app"], &claims["action"]), (&json!("evolution"), &json!("webhook")));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 600);
    assert_eq!(probe["body"]["event"], "evoctl.probe");
    assert_eq!(probe["body"]["instance"], "alinhou-production");
    assert_eq!(probe["body"]["data"]["evoctl_probe"], true);
    assert_eq!(probe["body"]["apikey"], Value::Null);
    assert_eq!(probe["headers"]["x-evoctl-probe"], "1");
    assert!(probe["headers"].get("jwt_key").is_none(), "the key itself is not sent");
}

#[test]
fn on_jwt_mismatch_the_probe_names_the_401_and_which_secret_to_use() {
    let lab = Lab::start("jwt-mismatch");
    lab.link_production();
    let output = lab.evoctl().args(["webhook", "test", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let url = format!("{}/webhooks/production/evoctl-probe", lab.ready["control"].as_str().unwrap());
    assert_eq!(
        text(&output.stdout),
        format!(
            "webhook test: FAILED\nthe receiver at {url} answered 401 ({{\"error\":\"invalid signature\"}}): the receiver rejects the JWT: its secret differs from this instance's jwt_key\n"
        )
    );
    assert_eq!(
        text(&output.stderr),
        "fix: make the receiver verify with ssm:/alinhou/production/evolution-webhook-secret (the secret this instance signs with), or point jwt_secret under [env.production.webhook] at the parameter the receiver reads and run `evoctl webhook set production`; both sides must read one SSM parameter\n"
    );
    // The lab's own record: the probe was signed with the instance's key (the config's
    // parameter) and the receiver, verifying with the app's parameter, refused it.
    let probe = last_delivery(&lab);
    assert_eq!(probe["target"], "production/evoctl-probe");
    assert_eq!(probe["answered"], 401);
    assert_eq!(probe["jwt_verified_with"], "/alinhou/production/evolution-webhook-secret");

    let output = lab.evoctl().args(["--output", "json", "webhook", "test", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = json_stdout(&output);
    assert_eq!(report["schema"], "evoctl.webhook-test/v1");
    assert_eq!((report["ok"].clone(), report["http_status"].clone()), (json!(false), json!(401)));
    assert_eq!(report["jwt_key_matches_config"], true);
    assert!(report["latency_ms"].as_u64().is_some(), "{report}");
}

#[test]
fn a_failing_or_silent_receiver_is_its_own_message() {
    let lab = Lab::start("seed");
    lab.link_production();
    let url = format!("{}/webhooks/production/evoctl-probe", lab.ready["control"].as_str().unwrap());
    lab.control("POST", "/receiver", Some(&json!({"status": 503})));
    let output = lab.evoctl().args(["webhook", "test", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stdout),
        format!(
            "webhook test: FAILED\nthe receiver at {url} answered 503: Evolution retries such answers for about 20 minutes, then drops the event\n"
        )
    );
    lab.control("POST", "/receiver", Some(&json!({"status": 0})));
    let started = std::time::Instant::now();
    let output = lab.evoctl().args(["webhook", "test", "production", "--timeout", "2s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stdout),
        format!(
            "webhook test: FAILED\nno answer from {url} within 2 s (PROBE_TIMEOUT): Evolution's deliveries time out and are retried, then dropped\n"
        )
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "bounded by --timeout");
    // The probe's session ended with it: nothing is left running in the task.
    let processes = lab.control("GET", "/processes", None);
    assert!(processes.as_array().unwrap().iter().all(|p| p["alive"] == false), "{processes}");
}
