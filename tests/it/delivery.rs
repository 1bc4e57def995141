//! `doctor`'s layers that read Evolution's own failures (webhook-delivery, instance-health) and
//! probe the route to WhatsApp (whatsapp-reach), and `connect` giving up early without that
//! route. Oracles: the lab's log groups and receiver records, and its process table.

use crate::support::{Lab, json_stdout, text, wait_until};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn check<'a>(report: &'a Value, layer: &str) -> &'a Value {
    report["checks"].as_array().unwrap().iter().find(|c| c["layer"] == layer).unwrap()
}

fn first_failure(report: &Value) -> Option<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "FAIL")
        .map(|c| c["layer"].as_str().unwrap().to_owned())
}

#[test]
fn doctor_fails_at_webhook_delivery_with_evolutions_own_401_lines_and_the_fix() {
    let lab = Lab::start("jwt-mismatch");
    lab.link_production();
    lab.control("POST", "/phone/message", Some(&json!({"instance": "alinhou-production", "text": "oi"})));
    wait_until(Duration::from_secs(30), "Evolution's log of the refused delivery", || {
        let events = lab.control("GET", "/logs", None);
        let logged = events.as_array().unwrap().iter().any(|e| {
            e["message"].as_str().unwrap().contains("Todas as tentativas falharam: Request failed with status code 401")
        });
        logged.then_some(())
    });
    let refused = lab.control("GET", "/webhooks", None);
    let refused: Vec<&Value> =
        refused.as_array().unwrap().iter().filter(|d| d["target"] == "production/messages-upsert").collect();
    assert_eq!(refused.len(), 1, "one delivery, not retried after its 401: {refused:?}");
    assert_eq!(refused[0]["answered"], 401);

    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    assert_eq!(first_failure(&report).as_deref(), Some("webhook-delivery"), "{report}");
    let delivery = check(&report, "webhook-delivery");
    assert_eq!(
        delivery["evidence"],
        "Evolution's log, last 15 minutes: 1 deliveries lost (1 refused without retry), 0 failed tries, 0 recovered; last status 401 (Todas as tentativas falharam: Request failed with status code 401)"
    );
    // The same fix as `webhook test`.
    assert_eq!(
        delivery["fix"],
        "make the receiver verify with ssm:/alinhou/production/evolution-webhook-secret (the secret this instance signs with), or point jwt_secret under [env.production.webhook] at the parameter the receiver reads and run `evoctl webhook set production`; both sides must read one SSM parameter"
    );
    assert_eq!(check(&report, "webhook")["status"], "OK", "the row itself matches evoctl.toml");
    assert_eq!(check(&report, "instance-health")["evidence"], "alinhou-production is open, linked to 5511987654321");
}

#[test]
fn doctor_probes_the_receiver_only_when_the_log_holds_no_delivery_or_when_asked() {
    let lab = Lab::start("seed");
    lab.link_production();
    let url = format!("{}/webhooks/production/evoctl-probe", lab.ready["control"].as_str().unwrap());
    // Nothing delivered yet (the webhook takes MESSAGES_UPSERT only): the log cannot say, the
    // probe does.
    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let evidence = check(&json_stdout(&output), "webhook-delivery")["evidence"].as_str().unwrap().to_owned();
    let expected = format!("no delivery in Evolution's log in the last 15 minutes; a probe to {url} got 200 in ");
    assert!(evidence.starts_with(&expected), "{evidence}");
    let probes = lab.control("GET", "/webhooks", None);
    assert_eq!(probes.as_array().unwrap().len(), 1, "{probes:?}");
    assert_eq!(probes[0]["target"], "production/evoctl-probe");
    lab.control("DELETE", "/webhooks", None);

    lab.control("POST", "/phone/message", Some(&json!({"instance": "alinhou-production", "text": "oi"})));
    wait_until(Duration::from_secs(30), "the message delivered", || {
        let delivered = lab.control("GET", "/webhooks", None);
        delivered
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["target"] == "production/messages-upsert" && d["answered"] == 200)
            .then_some(())
    });
    lab.control("DELETE", "/webhooks", None);
    // The log holds that delivery (the image's LOG_LEVEL dumps every send): no probe is sent.
    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    assert_eq!(
        check(&report, "webhook-delivery")["evidence"],
        "1 delivery record(s) in Evolution's log in the last 15 minutes, no failure (no probe sent: the log shows deliveries; --probe sends one)"
    );
    assert_eq!(lab.control("GET", "/webhooks", None), json!([]), "nothing reached the receiver");

    // --probe sends one anyway.
    let output = lab.evoctl().args(["--output", "json", "doctor", "production", "--probe"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    let evidence = check(&report, "webhook-delivery")["evidence"].as_str().unwrap().to_owned();
    let expected = format!(
        "1 delivery record(s) in Evolution's log in the last 15 minutes, no failure; a probe to {url} got 200 in "
    );
    assert!(evidence.starts_with(&expected), "{evidence}");
    let probes = lab.control("GET", "/webhooks", None);
    let probes = probes.as_array().unwrap();
    assert_eq!(probes.len(), 1, "{probes:?}");
    assert_eq!(
        (probes[0]["target"].clone(), probes[0]["answered"].clone()),
        (json!("production/evoctl-probe"), json!(200))
    );
    assert_eq!(probes[0]["jwt_verified_with"], "/alinhou/production/evolution-webhook-secret");
    assert_eq!(check(&report, "whatsapp-reach")["status"], "OK");
}

#[test]
fn without_a_route_to_whatsapp_doctor_names_it_and_connect_stops_early_with_the_same_hint() {
    let lab = Lab::start("no-whatsapp-route");
    lab.wait_settled();
    let port = lab.ready["env"]["EVOCTL_WHATSAPP_ENDPOINT"].as_str().unwrap().rsplit(':').next().unwrap().to_owned();
    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    assert_eq!(first_failure(&report).as_deref(), Some("whatsapp-reach"));
    let reach = check(&report, "whatsapp-reach");
    let problem = format!(
        "no route from the task to WhatsApp: the TCP connection to localhost:{port} got no answer within 5 s (a private subnet without a NAT gateway, or egress blocked by a security group or NACL); Baileys cannot connect, so no QR ever comes"
    );
    assert_eq!(reach["evidence"], problem.as_str());
    let fix = "give the service's subnets a route to the internet (a NAT gateway for private subnets, or a public subnet with assignPublicIp ENABLED) and allow outbound TCP 443 in the task's security group and network ACL";
    assert_eq!(reach["fix"], fix);

    let started = Instant::now();
    let output = lab.evoctl().args(["connect", "production"]).output().unwrap();
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(took < Duration::from_secs(30), "connect took {took:?}");
    let stderr = text(&output.stderr);
    let expected = format!(
        "error: alinhou-production has shown no QR in 10 s and Evolution answers {{count:0}}: {problem}\n  fix: {fix}; then `evoctl doctor production` (whatsapp-reach) and `evoctl connect production`\n"
    );
    assert!(stderr.ends_with(&expected), "{stderr}");
    // The watch's session ended with it: nothing of it is left running in the task.
    let processes = lab.control("GET", "/processes", None);
    assert!(processes.as_array().unwrap().iter().all(|p| p["alive"] == false), "{processes}");

    // connect created the instance; it has stayed `close` and never linked since: the #2419 note.
    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    let report = json_stdout(&output);
    let health = check(&report, "instance-health");
    assert_eq!(health["status"], "WARN", "{health}");
    let evidence = health["evidence"].as_str().unwrap();
    assert!(
        evidence.starts_with(
            "alinhou-production is close and has never been linked or disconnected since it was created (20"
        ),
        "{evidence}"
    );
    assert!(health["fix"].as_str().unwrap().contains("evolution-foundation/evolution-api#2419"), "{health}");
}
