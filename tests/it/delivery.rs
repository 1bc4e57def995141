//! `doctor`'s layers that read Evolution's own failures (webhook-delivery, instance-health) and
//! probe the route to WhatsApp (whatsapp-reach), and `connect` giving up early without that
//! route. Oracles: the lab's log groups and receiver records, and its process table.

use crate::evolution::{call_in_container, scenario};
use crate::support::{Lab, check, json_stdout, text, wait_until};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

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
    // The log shows the refusal and nothing delivered after it, so a probe checks it now.
    let probe = format!("{}/webhooks/production/evoctl-probe", lab.ready["control"].as_str().unwrap());
    assert_eq!(
        delivery["evidence"],
        format!(
            "Evolution's log, last 15 minutes: 1 deliveries of alinhou-production lost (1 refused without retry), 0 failed tries, 0 recovered; last status 401 (Todas as tentativas falharam: Request failed with status code 401); a probe: the receiver at {probe} answered 401 ({{\"error\":\"invalid signature\"}}): the receiver rejects the JWT: its secret differs from this instance's jwt_key"
        )
    );
    // The same fix as `webhook test`.
    assert_eq!(
        delivery["fix"],
        "make the receiver verify with ssm:/alinhou/production/evolution-webhook-secret (the secret this instance signs with), or point jwt_secret under [env.production.webhook] at the parameter the receiver reads and run `evoctl webhook set production`; both sides must read one SSM parameter"
    );
    assert_eq!(check(&report, "webhook")["status"], "OK", "the row itself matches evoctl.toml");
    assert_eq!(
        check(&report, "instance-health")["evidence"],
        "alinhou-production is open in the process and open in the database, linked to 5511987654321; no disconnect recorded in the row"
    );
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
    let expected = format!(
        "no delivery of alinhou-production in Evolution's log in the last 15 minutes; a probe to {url} got 200 in "
    );
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
        "1 delivery record(s) of alinhou-production in Evolution's log in the last 15 minutes, no failure (no probe sent: Evolution's log shows deliveries; --probe sends one)"
    );
    assert_eq!(lab.control("GET", "/webhooks", None), json!([]), "nothing reached the receiver");

    // --probe sends one anyway.
    let output = lab.evoctl().args(["--output", "json", "doctor", "production", "--probe"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    let evidence = check(&report, "webhook-delivery")["evidence"].as_str().unwrap().to_owned();
    let expected = format!(
        "1 delivery record(s) of alinhou-production in Evolution's log in the last 15 minutes, no failure; a probe to {url} got 200 in "
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
        "error: alinhou-production has shown no code in 10 s and Evolution answers {{count:0}}: {problem}\n  fix: {fix}; then `evoctl doctor production` checks the route again (whatsapp-reach)\n"
    );
    assert!(stderr.ends_with(&expected), "{stderr}");
    // The watch's session ended with it: nothing of it is left running in the task.
    let processes = lab.control("GET", "/processes", None);
    assert!(processes.as_array().unwrap().iter().all(|p| p["alive"] == false), "{processes}");

    // connect created the instance; it has stayed `close` and never linked since.
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
    // Without the route no QR can come: that is the cause, not 2.3.7's #2419, and no link helps.
    assert_eq!(
        health["fix"],
        "no QR can come while the task cannot reach WhatsApp (whatsapp-reach above): link it once it can"
    );
    assert_eq!(check(&report, "instance")["fix"], "link it once the task reaches WhatsApp (whatsapp-reach above)");
}

/// Wait until the lab's log groups hold a line containing every one of `needles`.
fn logged(lab: &Lab, what: &str, needles: &[&str]) {
    wait_until(Duration::from_secs(30), what, || {
        let events = lab.control("GET", "/logs", None);
        let lines: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
        needles.iter().all(|needle| lines.iter().any(|line| line.contains(needle))).then_some(())
    });
}

/// doctor's report on a delivery that recovered (exit 0, webhook-delivery WARN with no fix to
/// run), and that layer's evidence.
fn recovered(lab: &Lab) -> (Value, String) {
    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    let delivery = check(&report, "webhook-delivery");
    assert_eq!((&delivery["status"], &delivery["fix"]), (&json!("WARN"), &Value::Null), "{delivery}");
    let evidence = delivery["evidence"].as_str().unwrap().to_owned();
    (report, evidence)
}

/// After the JWT fix (the instance signs with the secret the receiver verifies), the 401 of a
/// moment ago is a warning that says when it recovered, with no fix to run: the probe got 200.
#[test]
fn a_refusal_followed_by_a_working_probe_is_a_recovery_without_a_fix() {
    let lab = Lab::start("jwt-mismatch");
    lab.link_production();
    lab.control("POST", "/phone/message", Some(&json!({"instance": "alinhou-production", "text": "oi"})));
    logged(&lab, "the refused delivery", &["Todas as tentativas falharam: Request failed with status code 401"]);
    // The fix the doctor gave: point jwt_secret at the parameter the receiver reads, then set.
    let config = std::fs::read_to_string(lab.config_path()).unwrap().replace(
        "jwt_secret = \"ssm:/alinhou/production/evolution-webhook-secret\"",
        "jwt_secret = \"ssm:/alinhou/production/app-webhook-secret\"",
    );
    std::fs::write(lab.config_path(), config).unwrap();
    let output = lab.evoctl().args(["webhook", "set", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));

    let (report, evidence) = recovered(&lab);
    let evidence = evidence.as_str();
    let probe = format!("{}/webhooks/production/evoctl-probe", lab.ready["control"].as_str().unwrap());
    assert!(
        evidence.starts_with(
            "Evolution's log, last 15 minutes: 1 deliveries of alinhou-production lost (1 refused without retry), 0 failed tries, 0 recovered; last status 401 (Todas as tentativas falharam: Request failed with status code 401); recovered at 20"
        ) && evidence.contains(&format!(": a probe to {probe} got 200 in ")),
        "{evidence}"
    );
    assert_eq!(report["ok"], true);
    let output = lab.evoctl().args(["doctor", "production"]).output().unwrap();
    let stdout = text(&output.stdout);
    assert!(stdout.ends_with("\n\ndoctor: OK, 1 warning(s)\n"), "{stdout}");
    assert!(!stdout.contains("warn webhook-delivery"), "a recovery has no fix to print: {stdout}");
}

/// Retries that ended in `Sucesso no envio` after the last failure: recovered, as the log says.
#[test]
fn retries_that_got_through_are_a_recovery_the_log_dates() {
    let lab = Lab::start("seed");
    lab.link_production();
    lab.control("POST", "/receiver", Some(&json!({"status": 503})));
    lab.control("POST", "/phone/message", Some(&json!({"instance": "alinhou-production", "text": "oi"})));
    logged(&lab, "a failed try", &["Tentativa 1/10 falhou: Request failed with status code 503"]);
    lab.control("POST", "/receiver", Some(&json!({"status": 200})));
    logged(&lab, "the delivery after its retries", &["Sucesso no envio após"]);
    lab.control("DELETE", "/webhooks", None);

    let (_, evidence) = recovered(&lab);
    let evidence = evidence.as_str();
    assert!(
        evidence.starts_with(
            "Evolution's log, last 15 minutes: 0 deliveries of alinhou-production lost (0 refused without retry), "
        ),
        "{evidence}"
    );
    assert!(evidence.contains(", 1 recovered; last status 503 (Tentativa "), "{evidence}");
    assert!(
        evidence.contains("); recovered at 20") && evidence.ends_with(": a later delivery got through"),
        "{evidence}"
    );
    // The log said it: no probe was sent.
    assert_eq!(lab.control("GET", "/webhooks", None), json!([]));
}

/// One Evolution server logs every instance's webhook records, and its failure records name a URL
/// but no instance (a JWT failure names neither). With another instance refused (401) at
/// production's own URL, one whose empty jwt_key cannot sign, and one whose receiver refuses
/// connections, production's doctor counts none of theirs, and the wait of production's delete
/// quotes only its own REMOVE_INSTANCE retries.
#[test]
fn other_instances_webhook_records_are_never_counted_as_production_s() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start(&scenario(&dir, "all-events", "[evoctl.env.production.webhook]\nevents = []\n"));
    lab.link_production();
    let hook = format!("{}/webhooks/production", lab.ready["control"].as_str().unwrap());
    let create = |name: &str, url: &str, jwt_key: &str| {
        let body = json!({"instanceName": name, "integration": "WHATSAPP-BAILEYS", "qrcode": true,
            "webhook": {"enabled": true, "url": url, "byEvents": true, "base64": false,
                        "events": ["QRCODE_UPDATED", "CONNECTION_UPDATE"], "headers": {"jwt_key": jwt_key}}});
        let lines = call_in_container(&lab, "production", &[("POST", "/instance/create", body)]);
        assert!(lines[0].starts_with("201 "), "{lines:?}");
    };
    create("twin", &hook, "not-the-secret-the-receiver-verifies-with");
    create("emptyjwt", &hook, "");
    logged(
        &lab,
        "the other instances' failures",
        &[
            "JWT generation failed",
            "Erro não recuperável (401)",
            &format!("  url: '{hook}/qrcode-updated',"),
            "  instance: 'twin',",
        ],
    );
    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    let delivery = check(&report, "webhook-delivery");
    assert_eq!(delivery["status"], "OK", "{delivery}");
    let evidence = delivery["evidence"].as_str().unwrap();
    // The others' failures are the log's latest word, so a probe says whether production's work.
    let said = regex::Regex::new(&format!(
        "^[1-9][0-9]* delivery record\\(s\\) of alinhou-production in Evolution's log in the last 15 minutes, no failure; a probe to {} got 200 in [0-9]+ ms$",
        regex::escape(&format!("{hook}/evoctl-probe"))
    ))
    .unwrap();
    assert!(said.is_match(evidence), "{evidence}");

    // A fourth instance's receiver refuses connections: its retries go on during the delete.
    create("refused", "http://127.0.0.1:1/hook", "a-key");
    logged(&lab, "the refused connections' retries", &["falhou: connect ECONNREFUSED 127.0.0.1:1"]);
    lab.control("POST", "/receiver", Some(&json!({"status": 503})));
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let began = now_ms();
    let output = lab.evoctl().args(["instance", "delete", "production", "--yes"]).output().unwrap();
    let ended = now_ms();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let quoted: Vec<&str> =
        stderr.lines().filter_map(|l| l.split("the task's log: ").nth(1)).map(|q| q.trim_end_matches(')')).collect();
    assert!(!quoted.is_empty(), "the wait quoted the retries: {stderr}");
    assert!(
        quoted
            .iter()
            .all(|q| q.starts_with("attempt ") && q.ends_with("/10 failed: Request failed with status code 503")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("REMOVE_INSTANCE webhook to {hook}/remove-instance is delivered")), "{stderr}");
    // The other instance's failed tries were logged beside them during the wait.
    let events = lab.control("GET", "/logs", None);
    let during = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| (began..=ended).contains(&e["timestamp_ms"].as_u64().unwrap()))
        .filter(|e| e["message"].as_str().unwrap().contains("falhou: connect ECONNREFUSED 127.0.0.1:1"))
        .count();
    assert!(during >= 1, "no other instance's retry during the wait");
}
