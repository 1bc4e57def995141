//! The real Evolution API 2.3.7 against the lab's stand-in: every request the recording made
//! (`../shared/fixtures/evolution-2.3.7/responses.jsonl`, 109 rows in order) is replayed against
//! a fresh `evoctl-lab evolution` configured as the recorded server was (no route to WhatsApp,
//! the recording's settings, the code defaults of a run from source), and every answer is
//! compared with the recorded one: the status, the JSON body's shape (keys and value types,
//! recursively) and its values, except ids, tokens and timestamps. The receiver URL of the
//! recording is rewritten to the stand-in's receiver and back; an instance token the recording
//! sent is the hash the stand-in returned for that instance. The notes (`method: null`) are
//! honoured: the receiver answers what each phase of `webhooks.jsonl` answered, waits are on
//! conditions (a reconnect loop's state, a name gone from `fetchInstances`), never on sleeps.
//! Every difference kept on purpose is in [`KEPT`] with its reason; any other fails the test,
//! all of them printed at once. The webhook deliveries are then checked against
//! `webhooks.jsonl` (paths, JWT, headers, body keys) and the retry log lines against `logs/`.

use crate::support::{StandIn, wait_until};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/evolution-2.3.7");
/// The recording's receiver.
const RECORDED_RECEIVER: &str = "http://127.0.0.1:18999";
const TIME_SCALE: f64 = 0.01;

/// The recorded server's settings (the fixture README), and the code defaults of its run from
/// source where the image's `.env` would say otherwise: no ANSI colours, a 30 s webhook timeout,
/// UTC (its `date_time` values are UTC).
const ENV_FILE: &str = "SERVER_PORT=18080\nSERVER_URL=http://127.0.0.1:18080\n\
    AUTHENTICATION_API_KEY=realevo-test-key-0123456789\nAUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES=true\n\
    DATABASE_PROVIDER=postgresql\nDATABASE_CONNECTION_URI=postgresql://evolution@127.0.0.1:5432/evolution\n\
    DATABASE_CONNECTION_CLIENT_NAME=evolution\nDATABASE_SAVE_DATA_INSTANCE=true\nCACHE_REDIS_ENABLED=false\n\
    SERVER_DISABLE_MANAGER=true\nTELEMETRY_ENABLED=false\nLOG_COLOR=false\nWEBHOOK_REQUEST_TIMEOUT_MS=30000\nTZ=UTC\n";

/// Differences from the recording kept on purpose: (row name, or `*` for every row; the JSON
/// path, `status`, or a prefix ending in `*`; why).
const KEPT: &[(&str, &str, &str)] = &[(
    "*",
    "fetchInstances row order",
    "PostgreSQL lists rows in heap order, which the recording's updates had moved; the stand-in lists them as \
     created. fetchInstances arrays are compared sorted by name.",
)];

/// A request's answer.
struct Answer {
    status: u16,
    body: String,
}

/// HTTP/1.1 with exactly these headers and body (the support client always sends JSON).
fn request(url: &str, method: &str, headers: &[(String, String)], body: Option<&str>) -> Answer {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(host).expect("connect to the stand-in");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write request");
    stream.write_all(body.as_bytes()).expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = payload;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 || tail.len() < size {
                break;
            }
            out.push_str(&tail[..size]);
            rest = tail[size..].trim_start_matches("\r\n");
        }
        out
    } else {
        payload.to_owned()
    };
    Answer { status, body }
}

fn get_json(url: &str) -> Value {
    let answer = request(url, "GET", &[], None);
    assert_eq!(answer.status, 200, "GET {url}: {}", answer.body);
    serde_json::from_str(&answer.body).expect("control JSON")
}

fn post_json(url: &str, body: &Value) -> Value {
    let headers = [("Content-Type".to_owned(), "application/json".to_owned())];
    let answer = request(url, "POST", &headers, Some(&body.to_string()));
    assert!(answer.status < 300, "POST {url}: {} {}", answer.status, answer.body);
    serde_json::from_str(&answer.body).unwrap_or(Value::Null)
}

/// The standalone stand-in configured as the recorded server was.
fn recorded_stand_in(dir: &std::path::Path) -> StandIn {
    start_stand_in(dir, ENV_FILE, "unreachable")
}

/// A standalone stand-in with `env`, WhatsApp `whatsapp`, at the replay's time scale.
fn start_stand_in(dir: &std::path::Path, env: &str, whatsapp: &str) -> StandIn {
    StandIn::start(dir, whatsapp, env, &["--whatsapp", whatsapp, "--evolution-time-scale", &TIME_SCALE.to_string()])
}

impl StandIn {
    /// The receiver's base URL, standing in for the recording's `http://127.0.0.1:18999`.
    fn receiver(&self) -> String {
        format!("{}/webhooks", self.control)
    }

    fn deliveries(&self) -> Vec<Value> {
        get_json(&format!("{}/webhooks", self.control)).as_array().expect("deliveries").clone()
    }

    fn answer(&self, status: u16) {
        post_json(&format!("{}/receiver", self.control), &json!({"status": status}));
    }

    fn listed(&self, name: &str) -> bool {
        let headers = [("apikey".to_owned(), "realevo-test-key-0123456789".to_owned())];
        let answer = request(&format!("{}/instance/fetchInstances", self.url), "GET", &headers, None);
        let rows: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        rows.as_array().is_some_and(|rows| rows.iter().any(|r| r["name"] == name))
    }

    /// Wait until `name`'s reconnect loop is in `state` with at least `margin_ms` of it left, so
    /// the next request sees the state the recording saw.
    fn wait_for_loop_state(&self, name: &str, state: &str, margin_ms: u64) {
        wait_until(Duration::from_secs(20), &format!("{name} {state} in its reconnect loop"), || {
            let row = self.row(name);
            let looping = row["socket"] == "reconnecting";
            let long_enough = row["state_ends_in_ms"].as_u64().is_none_or(|left| left >= margin_ms);
            (!looping || (row["state"] == state && long_enough)).then_some(())
        });
    }
}

/// The state a row's recorded answer shows (or needs) its instance to be in, when it depends on
/// the reconnect loop's phase.
fn loop_state(row: &Value) -> Option<&'static str> {
    let path = row["path"].as_str()?;
    let body = &row["body_json"];
    if path.starts_with("/instance/connectionState/") {
        return match body["instance"]["state"].as_str()? {
            "connecting" => Some("connecting"),
            "close" => Some("close"),
            _ => None,
        };
    }
    if path.starts_with("/instance/logout/") {
        return Some(if row["status"] == 200 { "connecting" } else { "close" });
    }
    if path.starts_with("/instance/restart/") && row["method"] == "POST" {
        return Some(if body["error"] == true { "close" } else { "connecting" });
    }
    if path.starts_with("/instance/connect/") {
        // The `close` branch starts a socket and waits 2 s; `connecting` answers at once.
        return Some(if row["elapsed_ms"].as_f64().unwrap_or(0.0) >= 1500.0 { "close" } else { "connecting" });
    }
    if path.starts_with("/instance/delete/") {
        return Some("close");
    }
    None
}

fn instance_of(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('?').next()?.trim_start_matches('/').split('/').collect();
    (segments.len() == 3).then(|| segments[2].to_owned())
}

/// One difference: where, what the recording said, what the stand-in said.
struct Difference {
    row: String,
    path: String,
    recorded: String,
    got: String,
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Keys whose values differ by nature (ids, tokens, timestamps): only their type is compared.
fn type_only(key: &str) -> bool {
    matches!(
        key,
        "id" | "instanceId" | "hash" | "token" | "apikey" | "createdAt" | "updatedAt" | "date_time" | "disconnectionAt"
    )
}

fn compare(row: &str, path: &str, recorded: &Value, got: &Value, out: &mut Vec<Difference>) {
    let mut differ = |recorded: String, got: String| {
        out.push(Difference { row: row.to_owned(), path: path.to_owned(), recorded, got });
    };
    match (recorded, got) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let child = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) if type_only(key) => {
                        if kind(x) != kind(y) {
                            out.push(Difference {
                                row: row.to_owned(),
                                path: child,
                                recorded: kind(x).into(),
                                got: kind(y).into(),
                            });
                        }
                    }
                    (Some(x), Some(y)) => compare(row, &child, x, y, out),
                    (Some(x), None) => out.push(Difference {
                        row: row.to_owned(),
                        path: child,
                        recorded: x.to_string(),
                        got: "(missing)".into(),
                    }),
                    (None, Some(y)) => out.push(Difference {
                        row: row.to_owned(),
                        path: child,
                        recorded: "(missing)".into(),
                        got: y.to_string(),
                    }),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                differ(format!("{} items", a.len()), format!("{} items", b.len()));
                return;
            }
            let by_name = |items: &[Value]| {
                let mut items = items.to_vec();
                if items.iter().all(|i| i["name"].is_string() && i["connectionStatus"].is_string()) {
                    items.sort_by(|x, y| x["name"].as_str().cmp(&y["name"].as_str()));
                }
                items
            };
            for (index, (x, y)) in by_name(a).iter().zip(by_name(b).iter()).enumerate() {
                compare(row, &format!("{path}[{index}]"), x, y, out);
            }
        }
        (x, y) if x != y => differ(x.to_string(), y.to_string()),
        _ => {}
    }
}

fn kept(difference: &Difference) -> bool {
    KEPT.iter().any(|(row, path, _)| {
        (*row == "*" || *row == difference.row)
            && (*path == difference.path || path.strip_suffix('*').is_some_and(|p| difference.path.starts_with(p)))
    })
}

#[test]
fn the_stand_in_answers_every_recorded_request_as_the_real_server() {
    let started = Instant::now();
    let rows: Vec<Value> = std::fs::read_to_string(format!("{FIXTURES}/responses.jsonl"))
        .expect("the recorded answers")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    assert_eq!(rows.len(), 109);
    let dir = tempfile::tempdir().unwrap();
    let stand_in = recorded_stand_in(dir.path());
    let receiver = stand_in.receiver();
    // Recorded hash → instance name, and instance name → the stand-in's hash.
    let mut recorded_hash: BTreeMap<String, String> = BTreeMap::new();
    let mut our_hash: BTreeMap<String, String> = BTreeMap::new();
    for row in &rows {
        if let (Some(hash), Some(name)) =
            (row["body_json"]["hash"].as_str(), row["body_json"]["instance"]["instanceName"].as_str())
        {
            recorded_hash.insert(hash.to_owned(), name.to_owned());
        }
    }
    let mut differences: Vec<Difference> = Vec::new();
    let mut deleted_at: BTreeMap<String, Instant> = BTreeMap::new();
    for (index, row) in rows.iter().enumerate() {
        let name = format!("{index} {}", row["name"].as_str().unwrap_or("?"));
        let Some(method) = row["method"].as_str() else {
            honour_note(&stand_in, row, &deleted_at);
            continue;
        };
        let path = row["path"].as_str().expect("path");
        // The receiver's answer per phase of webhooks.jsonl.
        match row["name"].as_str() {
            Some("delete_receiver_401") => stand_in.answer(401),
            Some("create_for_delete_norecv") => stand_in.answer(200),
            _ => {}
        }
        if let (Some(instance), Some(state)) = (instance_of(path), loop_state(row)) {
            stand_in.wait_for_loop_state(&instance, state, if state == "close" { 150 } else { 40 });
        }
        let headers: Vec<(String, String)> = row["request_headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| {
                let value = v.as_str().unwrap_or_default().to_owned();
                // An instance token of the recording is the stand-in's hash for that instance.
                let value = match recorded_hash.get(&value).and_then(|n| our_hash.get(n)) {
                    Some(ours) if k == "apikey" => ours.clone(),
                    _ => value,
                };
                (k.clone(), value)
            })
            .collect();
        let body = match &row["request_body"] {
            Value::Null => None,
            Value::String(raw) => Some(raw.replace(RECORDED_RECEIVER, &receiver)),
            value => Some(value.to_string().replace(RECORDED_RECEIVER, &receiver)),
        };
        let began = Instant::now();
        let answer = request(&format!("{}{path}", stand_in.url), method, &headers, body.as_deref());
        if path.starts_with("/instance/delete/") && answer.status == 200 {
            deleted_at.insert(instance_of(path).unwrap_or_default(), began);
        }
        if row["name"] == "instance_create" {
            assert!(
                began.elapsed() >= Duration::from_millis((5000.0 * TIME_SCALE) as u64),
                "create with qrcode:true answers after its (scaled) 5 s wait"
            );
        }
        let got: Value = serde_json::from_str(&answer.body.replace(&receiver, RECORDED_RECEIVER))
            .unwrap_or(Value::String(answer.body.clone()));
        if let (Some(hash), Some(instance)) = (got["hash"].as_str(), got["instance"]["instanceName"].as_str()) {
            our_hash.insert(instance.to_owned(), hash.to_owned());
        }
        if answer.status != row["status"].as_u64().unwrap_or(0) as u16 {
            differences.push(Difference {
                row: name.clone(),
                path: "status".into(),
                recorded: row["status"].to_string(),
                got: answer.status.to_string(),
            });
        }
        let recorded: Value = serde_json::from_str(row["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        compare(&name, "body", &recorded, &got, &mut differences);
    }
    let kept_names: Vec<String> =
        differences.iter().filter(|d| kept(d)).map(|d| format!("{} {}", d.row, d.path)).collect();
    let unlisted: Vec<&Difference> = differences.iter().filter(|d| !kept(d)).collect();
    let report: Vec<String> = unlisted
        .iter()
        .map(|d| format!("row {}: {}: recorded {} / stand-in {}", d.row, d.path, d.recorded, d.got))
        .collect();
    assert!(
        report.is_empty(),
        "{} difference(s) from the recording:\n{}\n(kept: {kept_names:?})",
        report.len(),
        report.join("\n")
    );
    check_deliveries(&stand_in, &our_hash);
    check_logs(&stand_in);
    assert!(started.elapsed() < Duration::from_secs(50), "the replay took {:?}", started.elapsed());
}

/// The notes of the recording: timings and the receiver's phases.
fn honour_note(stand_in: &StandIn, row: &Value, deleted_at: &BTreeMap<String, Instant>) {
    let name = row["name"].as_str().unwrap_or_default();
    match name {
        "webhook_failure_tests_done" => receiver_phases(stand_in),
        "delete_A_receiver_200_time_until_gone_from_fetchInstances" => {
            wait_until(Duration::from_secs(10), "alinhou-production gone", || {
                (!stand_in.listed("alinhou-production")).then_some(())
            });
        }
        "delete_C_receiver_401_time_until_gone_from_fetchInstances" => {
            wait_until(Duration::from_secs(10), "alinhou-delete-401 gone", || {
                (!stand_in.listed("alinhou-delete-401")).then_some(())
            });
        }
        "receiver_stopped" => stand_in.answer(0),
        "delete_B_receiver_stopped_time_until_gone_from_fetchInstances" => {
            wait_until(
                Duration::from_secs(40),
                "alinhou-delete-norecv gone once its REMOVE_INSTANCE retries ended",
                || (!stand_in.listed("alinhou-delete-norecv")).then_some(()),
            );
            let waited = deleted_at.get("alinhou-delete-norecv").map(Instant::elapsed).unwrap_or_default();
            let recorded = row["note"]["seconds_after_delete_request"].as_f64().unwrap_or(0.0);
            // Ten tries of a receiver that never answers: the backoff (scaled) bounds it below.
            assert!(
                waited.as_secs_f64() >= recorded * TIME_SCALE * 0.6,
                "gone after {waited:?}; the recording's {recorded} s scaled is {} s",
                recorded * TIME_SCALE
            );
        }
        other if other.starts_with("delete_B_receiver_stopped_still_listed_at_") => {
            assert!(
                stand_in.listed("alinhou-delete-norecv"),
                "{other}: the name must still be listed while the webhook retries"
            );
        }
        // Timing notes with nothing to replay.
        _ => {}
    }
}

/// Between rows 80 and 81 the recording's receiver answered 200, then 401, 500 and 200 again,
/// while production's earlier sockets kept reconnecting (connection.update deliveries).
fn receiver_phases(stand_in: &StandIn) {
    let seen = |status: u64, min_attempt: u64| {
        stand_in.deliveries().iter().any(|d| {
            d["body"]["event"] == "connection.update"
                && d["answered"] == status
                && d["attempt"].as_u64().unwrap_or(0) >= min_attempt
        })
    };
    stand_in.answer(200);
    wait_until(Duration::from_secs(10), "a connection.update answered 200", || seen(200, 1).then_some(()));
    stand_in.answer(401);
    wait_until(Duration::from_secs(10), "a connection.update answered 401", || seen(401, 1).then_some(()));
    stand_in.answer(500);
    wait_until(Duration::from_secs(10), "a connection.update retried after a 500", || seen(500, 2).then_some(()));
    stand_in.answer(200);
    wait_until(Duration::from_secs(10), "a retried connection.update answered 200", || seen(200, 2).then_some(()));
    assert!(!seen(401, 2), "a 401 is not retried");
}

/// The deliveries against webhooks.jsonl: the same paths (byEvents suffix), a JWT signed with the
/// row's `jwt_key`, the custom header passed through, the same body keys and values.
fn check_deliveries(stand_in: &StandIn, our_hash: &BTreeMap<String, String>) {
    let recorded: Vec<Value> = std::fs::read_to_string(format!("{FIXTURES}/webhooks.jsonl"))
        .expect("the recorded deliveries")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON delivery"))
        .collect();
    let ours = stand_in.deliveries();
    let mut problems = Vec::new();
    for fixture in &recorded {
        let path = fixture["path"].as_str().unwrap_or_default();
        let target = path.trim_start_matches('/');
        let event = &fixture["body"]["event"];
        let instance = fixture["body"]["instance"].as_str().unwrap_or_default();
        let Some(delivery) = ours
            .iter()
            .find(|d| d["target"] == target && d["body"]["event"] == *event && d["body"]["instance"] == instance)
        else {
            problems.push(format!("no delivery of {event} for {instance} to {path}"));
            continue;
        };
        // Every webhook of the recording has `jwt_key: test-secret`: the JWT verifies with it.
        if !delivery["jwt_verified_with"].is_string() || delivery["jwt_claims"]["app"] != "evolution" {
            problems.push(format!("{path}: the JWT does not verify with the rows' jwt_key: {delivery}"));
        }
        let header = |name: &str| delivery["headers"][name].as_str().map(str::to_owned);
        if fixture["headers"]["x-custom"].is_string() && header("x-custom").as_deref() != Some("abc") {
            problems.push(format!("{path}: x-custom not passed through"));
        }
        if header("jwt_key").is_some() || header("user-agent").as_deref() != Some("axios/1.13.2") {
            problems.push(format!("{path}: headers are not axios's: {}", delivery["headers"]));
        }
        let keys = |body: &Value| body.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        let (mut want, mut have) = (keys(&fixture["body"]), keys(&delivery["body"]));
        want.sort();
        have.sort();
        if want != have {
            problems.push(format!("{path}: body keys {have:?}, recorded {want:?}"));
        }
        let body = &delivery["body"];
        let expected_destination = format!("{}/hook", stand_in.receiver());
        if body["destination"] != expected_destination.as_str()
            || body["server_url"] != fixture["body"]["server_url"]
            || body["data"].get("instanceId").is_some() != fixture["body"]["data"].get("instanceId").is_some()
            || our_hash.get(instance).is_some_and(|h| body["apikey"] != h.as_str())
        {
            problems.push(format!("{path}: body {body} against recorded {}", fixture["body"]));
        }
    }
    // The stopped receiver: REMOVE_INSTANCE of the third delete tried ten times, never answered.
    let tries = ours
        .iter()
        .filter(|d| {
            d["target"] == "hook/remove-instance"
                && d["body"]["instance"] == "alinhou-delete-norecv"
                && d["answered"] == 0
        })
        .map(|d| d["attempt"].as_u64().unwrap_or(0))
        .max();
    if tries != Some(10) {
        problems.push(format!("REMOVE_INSTANCE to a stopped receiver: {tries:?} tries, not 10"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The retry log lines of `logs/` appear as the server writes them.
fn check_logs(stand_in: &StandIn) {
    const EXPECTED: [&str; 7] = [
        "  local: 'ChannelStartupService.sendData-Webhook',",
        "  message: 'Tentativa 1/10 falhou: Request failed with status code 500',",
        "  message: 'Erro não recuperável (401): Request failed with status code 401. Cancelando retentativas.',",
        "  message: 'Todas as tentativas falharam: Request failed with status code 401',",
        "  code: 'ERR_BAD_RESPONSE',",
        "  message: 'Tentativa 10/10 falhou: Timeout da requisição',",
        "  message: 'Todas as tentativas falharam: timeout of 30000ms exceeded',",
    ];
    let read = || -> Vec<String> {
        get_json(&format!("{}/logs", stand_in.control))
            .as_array()
            .expect("log lines")
            .iter()
            .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // The timed-out delivery's ten attempts end on the stand-in's own (scaled) clock: wait for
    // its last lines with a deadline, then name what is missing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = read();
    while EXPECTED.iter().any(|e| !lines.iter().any(|l| l == e)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        lines = read();
    }
    for expected in EXPECTED {
        assert!(lines.iter().any(|l| l == expected), "no log line `{expected}` within 30 s");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  message: 'Aguardando ") && l.ends_with(" segundos antes da próxima tentativa',"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("   WARN  [WAMonitoringService] [string] Instance \"alinhou-delete-401\" - REMOVED"))
    );
    for fixture in ["server-log-webhook-500.txt", "server-log-webhook-401.txt", "server-log-delete-C-receiver-401.txt"]
    {
        let text = std::fs::read_to_string(format!("{FIXTURES}/logs/{fixture}")).expect("a recorded log");
        let heads: Vec<&str> = text.lines().filter(|l| l.starts_with("[Evolution API]")).collect();
        for head in heads {
            // `[Evolution API]  PID - DATE   TYPE  [Context] [kind] …` without its pid and date.
            let tail = head.split_once("   ").map(|(_, tail)| tail).unwrap_or_default();
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("[Evolution API]") && l.contains(tail.split(" {").next().unwrap_or(tail))),
                "{fixture}: no line like `{head}`"
            );
        }
    }
}

/// `METHOD path` with the recording's global key and a JSON body; the status and the body.
fn call(stand_in: &StandIn, method: &str, path: &str, body: Option<Value>, key: &str) -> (u16, Value) {
    let mut headers = vec![("apikey".to_owned(), key.to_owned())];
    if body.is_some() {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    let answer = request(&format!("{}{path}", stand_in.url), method, &headers, body.map(|b| b.to_string()).as_deref());
    (answer.status, serde_json::from_str(&answer.body).unwrap_or(Value::String(answer.body)))
}

/// With WhatsApp reachable, what the recording could not show: the stored QR object across
/// flows (its count kept, the last flow's code answered first after a logout), pairing codes from
/// create's number, `?number=` ignored while connecting, a dropped paired socket, the
/// `DEL_INSTANCE` timer, and a key set to "" read as the code default.
#[test]
fn the_stand_in_keeps_the_real_servers_qr_socket_and_timer_rules() {
    const KEY: &str = "realevo-test-key-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let env = "AUTHENTICATION_API_KEY=realevo-test-key-0123456789\nDEL_INSTANCE=1m\nLOG_COLOR=false\n";
    // At a twentieth of real time, not the replay's hundredth: connect's answer (2 s) and the
    // first QR (3 s) are then 50 ms apart, which a loaded machine does not close.
    let stand_in =
        StandIn::start(dir.path(), "reachable", env, &["--whatsapp", "reachable", "--evolution-time-scale", "0.05"]);
    let create = |name: &str, extra: Value| {
        let mut body = json!({"instanceName": name, "integration": "WHATSAPP-BAILEYS"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        call(&stand_in, "POST", "/instance/create", Some(body), KEY)
    };

    // qrcode:false, then connect: the socket's first QR comes 3 s (scaled) after it starts, after
    // connect's 2 s, so connect answers {count: 0} and a poll brings the code.
    let (status, created) = create("flows", json!({"qrcode": false}));
    assert_eq!((status, &created["instance"]["status"]), (201, &json!("close")), "{created}");
    assert_eq!(call(&stand_in, "GET", "/instance/connect/flows", None, KEY), (200, json!({"count": 0})));
    let first = wait_until(Duration::from_secs(10), "the first QR", || {
        let (_, qr) = call(&stand_in, "GET", "/instance/connect/flows", None, KEY);
        (qr["count"] == 1).then_some(qr)
    });
    assert!(first["code"].as_str().unwrap().starts_with("2@") && first["pairingCode"].is_null(), "{first}");
    // A logout keeps the stored QR: the next connect from close answers the last flow's code,
    // and the count goes on from there.
    let (status, _) = call(&stand_in, "DELETE", "/instance/logout/flows", None, KEY);
    assert_eq!(status, 200);
    let (_, stale) = call(&stand_in, "GET", "/instance/connect/flows", None, KEY);
    assert_eq!((&stale["code"], &stale["count"]), (&first["code"], &json!(1)), "the previous flow's code: {stale}");
    let second = wait_until(Duration::from_secs(10), "the next flow's QR", || {
        let (_, qr) = call(&stand_in, "GET", "/instance/connect/flows", None, KEY);
        (qr["count"] == 2).then_some(qr)
    });
    assert_ne!(second["code"], first["code"]);

    // A number at create: its answer (5 s later) has the first QR and its pairing code;
    // `?number=` on a connecting instance starts nothing and changes nothing.
    let (status, paired) = create("pairing", json!({"qrcode": true, "number": "5511987654321"}));
    assert_eq!(status, 201, "{paired}");
    assert_eq!(
        (&paired["instance"]["status"], &paired["qrcode"]["count"]),
        (&json!("connecting"), &json!(1)),
        "{paired}"
    );
    let pairing_code = paired["qrcode"]["pairingCode"].as_str().expect("a pairing code").to_owned();
    assert_eq!(pairing_code.len(), 8);
    let (_, again) = call(&stand_in, "GET", "/instance/connect/pairing?number=5511000000000", None, KEY);
    assert_eq!(again, paired["qrcode"], "the connecting branch answers the stored QR");

    // The phone types the pairing code: open. Then the network drops under the paired socket.
    post_json(&format!("{}/phone/scan", stand_in.control), &json!({"code": pairing_code}));
    let state = |name: &str| call(&stand_in, "GET", &format!("/instance/connectionState/{name}"), None, KEY).1;
    assert_eq!(state("pairing")["instance"]["state"], "open");
    post_json(&format!("{}/phone/drop", stand_in.control), &json!({"instance": "pairing"}));
    assert_eq!(state("pairing")["instance"]["state"], "connecting");
    assert_eq!(
        call(&stand_in, "DELETE", "/instance/logout/pairing", None, KEY),
        (
            500,
            json!({"status": 500, "error": "Internal Server Error", "response": {"message": ["Error: Connection Closed"]}})
        )
    );
    assert_eq!(
        call(&stand_in, "DELETE", "/instance/delete/pairing", None, KEY),
        (400, json!({"status": 400, "error": "Bad Request", "response": {"message": ["[object Object]"]}}))
    );
    assert!(stand_in.listed("pairing"), "nothing was deleted");
    post_json(&format!("{}/phone/reconnect", stand_in.control), &json!({"instance": "pairing"}));
    assert_eq!(state("pairing")["instance"]["state"], "open");
    assert_eq!(call(&stand_in, "DELETE", "/instance/logout/pairing", None, KEY).0, 200);
    assert_eq!(state("pairing")["instance"]["state"], "close");

    // DEL_INSTANCE=1m: a minute (scaled: 3 s) after create, an instance that is not open is
    // removed.
    let (status, kept) = create("kept", json!({"qrcode": true}));
    assert_eq!(status, 201);
    post_json(&format!("{}/phone/scan", stand_in.control), &json!({"code": kept["qrcode"]["code"]}));
    let created_at = Instant::now();
    let (status, _) = create("ephemeral", json!({"qrcode": false}));
    assert_eq!(status, 201);
    wait_until(Duration::from_secs(20), "the DEL_INSTANCE timer to remove it", || {
        (!stand_in.listed("ephemeral")).then_some(())
    });
    assert!(created_at.elapsed() >= Duration::from_millis(2500), "removed after {:?}", created_at.elapsed());
    // Their timers fired before this one's: the open one stays; the logout cleared the other's.
    assert!(stand_in.listed("kept"), "an open instance stays");
    assert!(stand_in.listed("pairing"), "a logout clears the timer (`clearDelInstanceTime`)");

    // A key set to "" is the code default, not the image's.
    let dir = tempfile::tempdir().unwrap();
    let empty = start_stand_in(dir.path(), "AUTHENTICATION_API_KEY=\n", "reachable");
    assert_eq!(call(&empty, "POST", "/verify-creds", None, "BQYHJGJHJ").0, 200);
    assert_eq!(call(&empty, "POST", "/verify-creds", None, "429683C4C977415CAAFCCE10F7D57E11").0, 401);
}
