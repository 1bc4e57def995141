//! Evolution API 2.3.7 as it really behaves (`../shared/docs/evolution-api-2.3.7.md` §10, the
//! recorded answers in `../shared/fixtures/evolution-2.3.7/`), one test per way the driver and
//! the stand-in used to agree with each other but not with the real server: a webhook written
//! without `headers`, "all events" stored as 31 names, a pairing flow for a missing instance,
//! a delete whose cleanup waits on a failing REMOVE_INSTANCE webhook, a paired instance whose
//! socket is down, a row another Evolution process owns, the last flow's stale QR, environment
//! values read as the real parser reads them, and the real validation answers.

use crate::qr::zbar_decode;
use crate::support::{Lab, json_stdout, text, wait_until};
use serde_json::{Value, json};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A spawned evoctl whose stdout is collected as it arrives, so a test can wait for what it
/// has printed before it acts (the phone scans only what evoctl has shown).
struct Streamed {
    child: std::process::Child,
    stderr: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Streamed {
    /// `evoctl` with no terminal, its stderr (where it says the codes) followed as it comes.
    fn spawn(lab: &Lab, args: &[&str]) -> Streamed {
        let mut child = lab.spawn(args);
        let mut pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Streamed { child, stderr, reader }
    }

    /// What it said on stderr so far.
    fn said(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait for the exit; the exit code, all of stdout and all of stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let mut stdout = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        self.reader.join().unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        (status.code(), stdout, stderr)
    }
}

/// zbarimg's reading of `path`, or None while it cannot decode one.
fn try_decode(path: &std::path::Path) -> Option<String> {
    path.exists().then(|| zbar_decode(path))
}

const PRODUCTION_SECRET: &str = "lab-production-webhook-secret-77c1e0";

/// A node program run in the container that calls the Evolution API the way the Manager UI or
/// a curl example does (the key read there, never on the command line); one `STATUS BODY` line
/// per call.
fn api_calls(calls: &[(&str, &str, Value)]) -> String {
    let calls: Vec<Value> = calls.iter().map(|(method, path, body)| json!([method, path, body])).collect();
    format!(
        "const h={{apikey:process.env.AUTHENTICATION_API_KEY,'content-type':'application/json'}};\
         const u='http://127.0.0.1:'+process.env.SERVER_PORT;\
         (async()=>{{for(const [m,p,b] of {}){{const r=await fetch(u+p,{{method:m,headers:h,body:b===null?undefined:JSON.stringify(b)}});\
         console.log(r.status+' '+await r.text());}}}})();",
        Value::Array(calls)
    )
}

/// Run `api_calls` in production's container; the output lines.
pub(crate) fn call_in_container(lab: &Lab, env: &str, calls: &[(&str, &str, Value)]) -> Vec<String> {
    let output = lab.evoctl().args(["node", env, "-e", &api_calls(calls)]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    text(&output.stdout).lines().map(str::to_owned).collect()
}

/// `alinhou-production` created the way a curl example does: no webhook, no QR yet.
fn create_without_webhook() -> (&'static str, &'static str, Value) {
    (
        "POST",
        "/instance/create",
        json!({"instanceName": "alinhou-production", "integration": "WHATSAPP-BAILEYS", "qrcode": false}),
    )
}

/// A scenario file extending `seed` with `extra` TOML, in its own directory.
pub(crate) fn scenario(dir: &tempfile::TempDir, name: &str, extra: &str) -> String {
    let path = dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, format!("extends = \"seed\"\ndescription = \"{name}\"\n{extra}")).unwrap();
    path.display().to_string()
}

/// Point 1: A webhook first written without `headers` (the Manager UI's body) is stored with
/// `"headers": null`; `webhook show` reads it and `webhook set` repairs it, once.
#[test]
fn a_webhook_written_without_headers_is_shown_and_repaired() {
    let lab = Lab::start("seed");
    let manager_ui = json!({"webhook": {"enabled": true, "url": "https://hooks.example/evolution",
                                        "events": ["MESSAGES_UPSERT"], "base64": false, "byEvents": false}});
    let lines = call_in_container(
        &lab,
        "production",
        &[
            create_without_webhook(),
            ("GET", "/webhook/find/alinhou-production", Value::Null),
            ("POST", "/webhook/set/alinhou-production", manager_ui),
            ("GET", "/webhook/find/alinhou-production", Value::Null),
        ],
    );
    assert!(lines[0].starts_with("201 "), "{lines:?}");
    assert_eq!(lines[1], "200 null");
    assert!(lines[2].starts_with("201 "), "{lines:?}");
    let row: Value = serde_json::from_str(lines[3].strip_prefix("200 ").unwrap()).unwrap();
    assert_eq!(row["headers"], Value::Null, "{row}");

    let output = lab.evoctl().args(["webhook", "show", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "url        https://hooks.example/evolution\nenabled    true\nevents     MESSAGES_UPSERT\nby_events  false\nbase64     false\njwt_key    not set\n"
    );
    let output = lab.evoctl().args(["--output", "json", "webhook", "set", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(json_stdout(&output)["webhook"], "set");
    let stored = lab.evolution_instance("alinhou-production")["webhook"].clone();
    assert_eq!(stored["headers"], json!({"jwt_key": PRODUCTION_SECRET}));
    let output = lab.evoctl().args(["--output", "json", "webhook", "set", "production"]).output().unwrap();
    assert_eq!(json_stdout(&output)["webhook"], "unchanged");
}

/// Point 2: `events = []` is stored as the 31 names; the next `webhook set` sees it as unchanged.
#[test]
fn all_events_stored_as_the_31_names_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start(&scenario(&dir, "all-events", "[evoctl.env.production.webhook]\nevents = []\n"));
    lab.link_production();
    let stored = lab.evolution_instance("alinhou-production")["webhook"]["events"].clone();
    assert_eq!(stored.as_array().map(Vec::len), Some(31), "create stores [] as every event: {stored}");
    assert!(stored.as_array().unwrap().iter().any(|e| e == "REMOVE_INSTANCE"));
    let output = lab.evoctl().args(["--output", "json", "webhook", "set", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(json_stdout(&output)["webhook"], "unchanged");
    let output = lab.evoctl().args(["webhook", "show", "production"]).output().unwrap();
    assert!(text(&output.stdout).contains("events     (all)\n"), "{}", text(&output.stdout));
    let output = lab.evoctl().args(["--output", "json", "webhook", "show", "production"]).output().unwrap();
    assert_eq!(json_stdout(&output)["webhook"]["all_events"], true);
}

/// Point 3: `connect --pairing-number` on the seed lab (no instance yet) creates the instance with the
/// number, so the first code is a pairing code, and no QR is ever drawn.
#[test]
fn a_pairing_flow_for_a_missing_instance_prints_a_pairing_code_never_a_qr() {
    let lab = Lab::start("seed");
    let run =
        Streamed::spawn(&lab, &["connect", "production", "--pairing-number", "5511987654321", "--timeout", "60s"]);
    let pairing = wait_until(Duration::from_secs(30), "a pairing code printed", || {
        let said = run.said();
        let rest = said.split("pairing code: ").nth(1)?;
        Some(rest.split_whitespace().next()?.to_owned())
    });
    let instance = lab.evolution_instance("alinhou-production");
    assert_eq!(instance["number"], "5511987654321", "the number went in at create: {instance}");
    assert_eq!(instance["qr"]["pairingCode"], pairing.as_str(), "the code shown is the server's current one");
    // The phone links with the code on screen (the lab's phone takes the QR payload behind it).
    let code = instance["qr"]["code"].as_str().unwrap().to_owned();
    lab.control("POST", "/phone/scan", Some(&json!({"code": code})));
    let (status, stdout, stderr) = run.finish();
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        stderr.ends_with(&format!(
            "\npairing code: {pairing}  (WhatsApp > Linked devices > Link with phone number instead; pairing code 1 of 30)\n"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("QR") && !stderr.contains('█') && !stderr.contains('▀'),
        "a QR was drawn or spoken of: {stderr}"
    );
    assert!(stdout.starts_with("linked 5511987654321 to alinhou-production\n"), "{stdout}");
}

/// Point 4: A delete whose REMOVE_INSTANCE webhook gets 503: evoctl waits through the retries (scaled
/// in the lab), says what it waits for, and succeeds once they end; the receiver saw them all.
#[test]
fn a_delete_waits_through_the_remove_instance_retries() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start(&scenario(&dir, "all-events", "[evoctl.env.production.webhook]\nevents = []\n"));
    lab.link_production();
    lab.control("POST", "/receiver", Some(&json!({"status": 503})));
    let started = std::time::Instant::now();
    let output = lab.evoctl().args(["--output", "json", "instance", "delete", "production", "--yes"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(json_stdout(&output)["action"], "delete");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("deleted alinhou-production; waiting for Evolution's cleanup…\n"), "{stderr}");
    assert!(
        stderr.contains("alinhou-production still listed after ")
            && stderr.contains("s: Evolution removes it once its REMOVE_INSTANCE webhook to http://127.0.0.1:"),
        "{stderr}"
    );
    // What the receiver answers, read from the task's log (2.3.7's `Tentativa N/10 falhou` lines).
    assert!(
        stderr.contains("the task's log: attempt ")
            && stderr.contains("/10 failed: Request failed with status code 503"),
        "{stderr}"
    );
    let removes: Vec<Value> = lab
        .control("GET", "/webhooks", None)
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["body"]["event"] == "remove.instance")
        .cloned()
        .collect();
    assert_eq!(removes.len(), 10, "every try of the REMOVE_INSTANCE webhook: {removes:?}");
    assert!(removes.iter().all(|w| w["answered"] == 503));
    assert_eq!(lab.evolution_instance("alinhou-production"), Value::Null, "the cleanup ran once the retries ended");
    // The retries' backoff (5 s, 10 s, … about 20 min, scaled by 0.01) bounds the wait from below.
    assert!(started.elapsed() >= Duration::from_secs(10), "{:?}", started.elapsed());
}

/// Point 4b: The same wait, bounded by `--timeout`: exit 7 naming the webhook, not the jwt_key.
#[test]
fn a_delete_wait_bounded_by_timeout_names_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start(&scenario(&dir, "all-events", "[evoctl.env.production.webhook]\nevents = []\n"));
    lab.link_production();
    lab.control("POST", "/receiver", Some(&json!({"status": 503})));
    let output = lab.evoctl().args(["instance", "delete", "production", "--yes", "--timeout", "4s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(
        error.starts_with("error: instance alinhou-production was deleted but is still listed after 4 s: Evolution removes it only once its REMOVE_INSTANCE webhook to http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(!stderr.contains("jwt_key"), "{stderr}");
}

/// Point 5: Logout and delete of a paired instance whose socket is down: one error that says so and
/// gives the fix (exit 1), nothing changed; after a restart both work.
#[test]
fn a_socket_that_is_down_is_said_so_with_the_fix() {
    let lab = Lab::start("seed");
    lab.link_production();
    lab.control("POST", "/phone/drop", Some(&json!({"instance": "alinhou-production"})));
    let output = lab.evoctl().args(["instance", "logout", "production", "--yes"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        "error: logout: the instance's WhatsApp socket is down (Evolution answered 500 \"Error: Connection Closed\"); nothing was changed\n  \
         fix: restart the instance (`evoctl instance restart production alinhou-production`), or retry once it has reconnected (`evoctl instance state production alinhou-production` says open)\n"
    );
    let output = lab.evoctl().args(["instance", "delete", "production", "--yes"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).starts_with(
            "error: delete: the instance's WhatsApp socket is down (Evolution answered 400 \"[object Object]\"); nothing was changed\n"
        ),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(lab.evolution_instance("alinhou-production")["ownerJid"], "5511987654321@s.whatsapp.net");
    let output = lab.evoctl().args(["instance", "restart", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    wait_until(Duration::from_secs(10), "the socket back open", || {
        (lab.evolution_instance("alinhou-production")["state"] == "open").then_some(())
    });
    let output = lab.evoctl().args(["instance", "logout", "production", "--yes"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

/// Point 6: Two environments on one database with different client names: a row the other process
/// owns is refused (exit 4), and a delete of it is refused before it could delete that row.
#[test]
fn a_row_another_process_owns_is_refused_never_acted_on() {
    let lab = Lab::start("shared-db");
    lab.wait_settled();
    // Production's own process creates its row (staging is up, so evoctl would refuse to link).
    let lines = call_in_container(&lab, "production", &[create_without_webhook()]);
    assert!(lines[0].starts_with("201 "), "{lines:?}");
    let owned = "error: another Evolution process owns instance alinhou-production: the database is shared";
    for args in [
        &["instance", "state", "staging", "alinhou-production"][..],
        &["webhook", "show", "staging", "alinhou-production"],
        &["instance", "logout", "staging", "alinhou-production"],
        &["instance", "delete", "staging", "alinhou-production"],
    ] {
        let output = lab.evoctl().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(4), "{args:?}: {}", text(&output.stderr));
        assert!(text(&output.stderr).starts_with(owned), "{args:?}: {}", text(&output.stderr));
    }
    assert_eq!(
        lab.evolution_instance("alinhou-production")["name"],
        "alinhou-production",
        "production's row is intact"
    );
    let output = lab.evoctl().args(["instance", "state", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

/// Point 7: After a logout 2.3.7 keeps the last flow's QR; the first connect from `close` may answer
/// with it. Neither `instance connect` nor the connect runbook draws that stale code.
#[test]
fn the_last_flows_code_is_never_shown_as_current() {
    let lab = Lab::start("seed");
    lab.link_production();
    let old = lab.evolution_instance("alinhou-production")["scanned_code"].as_str().unwrap().to_owned();
    let output = lab.evoctl().args(["instance", "logout", "production", "--yes"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(lab.evolution_instance("alinhou-production")["qr"]["code"], old.as_str(), "2.3.7 keeps the code");

    let png = lab.dir.path().join("qr.png");
    let output = lab.evoctl().args(["instance", "connect", "production", "--png"]).arg(&png).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let shown = zbar_decode(&png);
    assert_ne!(shown, old, "the stale code was shown");
    assert_eq!(shown, lab.evolution_instance("alinhou-production")["qr"]["code"].as_str().unwrap());

    // The runbook over a logged-out instance: only codes issued after the flow began are drawn.
    lab.evoctl().args(["instance", "logout", "production", "--yes"]).output().unwrap();
    let mut child = lab.spawn(&["--output", "json", "connect", "production", "--png", png.to_str().unwrap()]);
    let fresh = wait_until(Duration::from_secs(30), "a fresh code", || {
        let row = lab.evolution_instance("alinhou-production");
        let code = row["qr"]["code"].as_str()?.to_owned();
        (code != shown && row["state"] == "connecting").then_some(code)
    });
    wait_until(Duration::from_secs(30), "the fresh code drawn to the PNG", || {
        (try_decode(&png).as_deref() == Some(fresh.as_str())).then_some(())
    });
    lab.control("POST", "/phone/scan", Some(&json!({"code": fresh})));
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert_eq!(status.code(), Some(0));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["qr_shown"], 1, "only the fresh code was shown: {report}");
}

/// Point 8: Environment values as 2.3.7's parser reads them: "" is the code default (the key
/// `BQYHJGJHJ`, which the driver then uses too), `DEL_INSTANCE` "5m" arms the timer and "0"
/// does not.
#[test]
fn environment_values_read_as_the_real_parser() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[task_definitions.alinhou-production-EvolutionService.environment]\nAUTHENTICATION_API_KEY = \"\"\nDEL_INSTANCE = \"0\"\n\
                 [task_definitions.alinhou-staging-EvolutionService.environment]\nDEL_INSTANCE = \"5m\"\n";
    let lab = Lab::start(&scenario(&dir, "parser", extra));
    let output = lab.evoctl().args(["instance", "list", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "the driver uses the code default key too: {}", text(&output.stderr));
    let output = lab.evoctl().args(["--output", "json", "audit"]).output().unwrap();
    let audit = json_stdout(&output);
    let findings = audit["findings"].as_array().unwrap();
    let of = |rule: &str| -> Vec<Value> { findings.iter().filter(|f| f["rule"] == rule).cloned().collect() };
    let del = of("del-instance");
    assert_eq!(del.len(), 1, "{del:?}");
    assert_eq!(del[0]["envs"], json!(["staging"]));
    assert!(del[0]["evidence"].as_str().unwrap().starts_with("DEL_INSTANCE is 5m: Evolution 2.3.7 reads 5 minutes"));
    let key = of("default-api-key");
    assert!(
        key.iter().any(|f| f["envs"] == json!(["production"])
            && f["evidence"].as_str().unwrap().contains("code default key BQYHJGJHJ")),
        "{key:?}"
    );
}

/// Point 9: The real validation answers: every bad event index; and a second delete of an instance
/// whose cleanup never ran (an empty jwt_key) answers 200 again, not 404.
#[test]
fn validation_and_stuck_deletes_answer_as_the_real_server() {
    let lab = Lab::start("seed");
    let bad = json!({"webhook": {"enabled": true, "url": "https://hooks.example/x", "events": ["MESSAGE_UPSERT", "messages.upsert", "FOO"]}});
    let stuck = json!({"instanceName": "stuck", "integration": "WHATSAPP-BAILEYS", "qrcode": false,
                       "webhook": {"url": "https://hooks.example/x", "events": [], "headers": {"jwt_key": ""}}});
    let lines = call_in_container(
        &lab,
        "production",
        &[
            create_without_webhook(),
            ("POST", "/webhook/set/alinhou-production", bad),
            ("POST", "/instance/create", stuck),
            ("DELETE", "/instance/delete/stuck", Value::Null),
            ("DELETE", "/instance/delete/stuck", Value::Null),
            ("GET", "/instance/fetchInstances?instanceName=stuck", Value::Null),
        ],
    );
    let (status, body) = lines[1].split_once(' ').unwrap();
    assert_eq!(status, "400");
    let body: Value = serde_json::from_str(body).unwrap();
    let messages: Vec<&str> =
        body["response"]["message"][0].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    for (index, message) in messages.iter().enumerate() {
        assert!(
            message.starts_with(&format!("webhook.events[{index}] is not one of enum values: APPLICATION_STARTUP,")),
            "{message}"
        );
    }
    assert!(lines[3].starts_with("200 ") && lines[4].starts_with("200 "), "{lines:?}");
    assert!(lines[5].starts_with("200 [{"), "the stuck name is still listed: {lines:?}");
}
