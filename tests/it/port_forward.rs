//! `evoctl port-forward` against the lab's Port sessions (its own smux, on code of its own):
//! concurrent requests through one session, 20 MiB both ways byte for byte, a destination the
//! agent cannot reach refused per connection while the forward stays up, `--host` to a
//! lab-controlled listener, Ctrl-C (130 within a second, the session terminated in the lab) and
//! a denied StartSession explained.

use crate::ending::signal;
use crate::support::{Lab, http, text, wait_until};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `evoctl --output json port-forward production ARGS...`, its bound forwards read
/// from the document it prints once every session is open.
struct Forwarding {
    child: Child,
    doc: Value,
    stderr: Arc<Mutex<Vec<u8>>>,
}

pub(crate) fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&buffer);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buffer
}

/// Bytes a reader thread keeps collecting from a child's pipe.
pub(crate) type Collected = Arc<Mutex<Vec<u8>>>;

/// Spawn `command` with stdout and stderr piped, each collected as it comes.
pub(crate) fn spawn_collecting(mut command: std::process::Command) -> (Child, Collected, Collected) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn evoctl");
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    (child, stdout, stderr)
}

impl Forwarding {
    fn start(lab: &Lab, args: &[&str]) -> Forwarding {
        let mut command = lab.evoctl_process();
        command.args(["--output", "json", "port-forward", "production"]).args(args);
        let (child, stdout, stderr) = spawn_collecting(command);
        let doc = wait_until(Duration::from_secs(30), "the forwards' document", || {
            let seen = stdout.lock().unwrap();
            serde_json::from_slice::<Value>(&seen).ok()
        });
        Forwarding { child, doc, stderr }
    }

    /// `ADDR:PORT` of forward `index`.
    fn local(&self, index: usize) -> String {
        self.doc["forwards"][index]["local"].as_str().expect("local address").to_owned()
    }

    fn session(&self, index: usize) -> String {
        self.doc["forwards"][index]["session_id"].as_str().expect("session id").to_owned()
    }

    fn stderr(&self) -> String {
        text(&self.stderr.lock().unwrap())
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Ctrl-C, then the exit code and how long it took to come.
    fn interrupt(mut self) -> (Option<i32>, Duration, String) {
        let sent = Instant::now();
        signal(&self.child, rustix::process::Signal::INT);
        let status =
            wait_until(Duration::from_secs(10), "evoctl to exit after Ctrl-C", || self.child.try_wait().unwrap());
        let took = sent.elapsed();
        // The stderr reader has everything once the pipe closes.
        let stderr = wait_until(Duration::from_secs(5), "stderr to close", || {
            let text = self.stderr();
            text.contains("interrupted").then_some(text)
        });
        (status.code(), took, stderr)
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn port_sessions(lab: &Lab) -> Vec<Value> {
    lab.control("GET", "/port-sessions", None).as_array().expect("port sessions").clone()
}

/// The session was ended by evoctl: the TerminateSession flag on the data channel and the
/// TerminateSession call both go out, and whichever the lab's agent sees first is recorded.
pub(crate) fn assert_ended_by_evoctl(row: &Value) {
    assert_eq!((row["terminated"].as_bool(), row["ended"].as_bool()), (Some(true), Some(true)), "{row}");
    let reason = row["end_reason"].as_str().unwrap_or_default();
    assert!(matches!(reason, "terminate-flag" | "terminate-session"), "{row}");
}

/// The lab saw exactly one port session, and evoctl ended it.
pub(crate) fn assert_only_session_ended_by_evoctl(lab: &Lab) {
    let sessions = port_sessions(lab);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_ended_by_evoctl(&sessions[0]);
}

fn session_row(lab: &Lab, id: &str) -> Value {
    port_sessions(lab).into_iter().find(|s| s["session_id"] == id).unwrap_or_else(|| panic!("no port session {id}"))
}

/// One connection that sends `request` and reads until the peer closes; `Err` for a reset.
fn exchange(address: &str, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

/// Send `bytes` to an echo destination and read as many back.
fn echo_round(address: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(bytes).unwrap();
    let mut back = vec![0u8; bytes.len()];
    stream.read_exact(&mut back).unwrap();
    back
}

#[test]
fn fifty_concurrent_requests_answer_as_the_stand_in_does_and_the_document_names_the_forward() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let forwarding = Forwarding::start(&lab, &["0:8080"]);
    let local = forwarding.local(0);
    let session = forwarding.session(0);
    let port: u16 = local.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
    assert_eq!(
        forwarding.doc,
        json!({
            "schema": "evoctl.port-forward/v1",
            "env": "production",
            "task_id": lab.first_task_id(),
            "container": "EvolutionService",
            "forwards": [{
                "local": format!("127.0.0.1:{port}"),
                "local_address": "127.0.0.1",
                "local_port": port,
                "remote_host": null,
                "remote_port": 8080,
                "session_id": session,
                "multiplexed": true,
            }],
        })
    );

    // The stand-in's own answer, straight from it; it names its manager after the Host it was
    // asked on, which through the forward is the local address.
    let stand_in = lab.control("GET", "/evolution/processes", None)[0]["port"].as_u64().unwrap();
    let (_, direct) = http("GET", &format!("http://127.0.0.1:{stand_in}/"), None);
    let expected = direct.replace(&format!("127.0.0.1:{stand_in}/manager"), &format!("{local}/manager"));
    assert_ne!(expected, direct, "the manager URL names the address asked");
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..50).map(|_| scope.spawn(|| http("GET", &format!("http://{local}/"), None))).collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(answers.len(), 50);
    for (status, body) in &answers {
        assert_eq!((*status, body.as_str()), (200, expected.as_str()));
    }
    // 50 streams in the agent's table, each closed, none with an error.
    let row = wait_until(Duration::from_secs(10), "every stream closed in the lab", || {
        let row = session_row(&lab, &session);
        row["streams"].as_array().unwrap().iter().all(|s| !s["closed_ms"].is_null()).then_some(row)
    });
    let streams = row["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 50, "{row:#}");
    let ids: Vec<u64> = streams.iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (0..50).map(|i| 3 + 2 * i).collect::<Vec<u64>>(), "client stream ids, odd from 3");
    assert!(streams.iter().all(|s| s["error"].is_null()), "{streams:?}");
    assert_eq!(row["client_version"], "1.2.677.0");
    assert_eq!(row["mode"], json!({"mux": {"keep_alive": false}}));
    assert_eq!(row["connect_errors"], 0);
}

#[test]
fn twenty_mib_through_a_remote_echo_host_come_back_byte_identical() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.control("POST", "/remote-hosts", Some(&json!({"host": "cache.internal", "port": 6379, "kind": "echo"})));
    let forwarding = Forwarding::start(&lab, &["6379", "--host", "cache.internal"]);
    assert_eq!(forwarding.doc["forwards"][0]["remote_host"], "cache.internal");
    let local = forwarding.local(0);

    const SIZE: usize = 20 * 1024 * 1024;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let sent_digest = hex::encode(Sha256::digest(&data));
    let mut stream = TcpStream::connect(&local).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
    });
    let mut back = vec![0u8; SIZE];
    stream.read_exact(&mut back).unwrap();
    sender.join().unwrap();
    assert_eq!(hex::encode(Sha256::digest(&back)), sent_digest);
    stream.shutdown(Shutdown::Both).unwrap();
}

#[test]
fn a_refused_destination_resets_that_connection_only_and_the_forward_stays_up() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let remote = json!({"host": "db.internal", "port": 5432, "kind": "echo"});
    lab.control("POST", "/remote-hosts", Some(&remote));
    let mut forwarding = Forwarding::start(&lab, &["5432", "--host", "db.internal"]);
    let local = forwarding.local(0);
    assert_eq!(echo_round(&local, b"ping"), b"ping");

    // The listener goes away: the agent's dial is refused, evoctl resets that connection and
    // says so; the forward stays up.
    lab.control("DELETE", "/remote-hosts", Some(&json!({"host": "db.internal", "port": 5432})));
    let refused = exchange(&local, b"hello");
    let err = refused.expect_err("the connection is reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let warning = wait_until(Duration::from_secs(10), "the warning", || {
        let stderr = forwarding.stderr();
        stderr.contains("ConnectToPortError").then_some(stderr)
    });
    let peer_free = warning
        .lines()
        .find(|l| l.starts_with("warning:"))
        .map(|l| {
            let (before, after) = l.split_once("connection from 127.0.0.1:").unwrap();
            let after = after.split_once(' ').unwrap().1;
            format!("{before}connection from 127.0.0.1:PORT {after}")
        })
        .unwrap();
    assert_eq!(
        peer_free,
        format!(
            "warning: {local}: the agent could not connect to db.internal:5432 (through the task) for the connection from 127.0.0.1:PORT (ConnectToPortError); that connection was reset, the forward stays up"
        )
    );
    assert!(forwarding.still_running());

    // Back again: the next connection goes through on the same session.
    lab.control("POST", "/remote-hosts", Some(&remote));
    assert_eq!(echo_round(&local, b"again"), b"again");
    let row = session_row(&lab, &forwarding.session(0));
    assert_eq!(row["connect_errors"], 1);
    assert_eq!(row["streams"].as_array().unwrap().len(), 3);
}

#[test]
fn host_reaches_a_lab_remote_listener() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.control("POST", "/remote-hosts", Some(&json!({"host": "api.internal", "port": 9000, "kind": "http"})));
    let forwarding = Forwarding::start(&lab, &["0:9000", "--host", "api.internal"]);
    let (status, body) = http("GET", &format!("http://{}/health", forwarding.local(0)), None);
    assert_eq!((status, body.as_str()), (200, "remote api.internal:9000 GET /health\n"));
    let row = session_row(&lab, &forwarding.session(0));
    assert_eq!(row["document"], "AWS-StartPortForwardingSessionToRemoteHost");
    assert_eq!(row["host"], "api.internal");
    assert_eq!(row["port_number"], "9000");
}

#[test]
fn ctrl_c_ends_within_a_second_with_130_and_the_lab_shows_the_session_terminated() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let forwarding = Forwarding::start(&lab, &["8080"]);
    let session = forwarding.session(0);
    let (code, took, stderr) = forwarding.interrupt();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(
        stderr,
        format!(
            "forwarding to task {} of production (Ctrl-C to stop)\ninterrupted (Ctrl-C): port session {session} was ended\n",
            lab.first_task_id()
        )
    );
    assert_ended_by_evoctl(&session_row(&lab, &session));
    // The API call is made in any case.
    let terminated: Vec<Value> = lab
        .journal()
        .into_iter()
        .filter(|e| e["action"] == "TerminateSession" && e["parameters"]["SessionId"] == session.as_str())
        .collect();
    assert_eq!(terminated.len(), 1, "{terminated:?}");
}

#[test]
fn a_denied_start_session_says_what_to_grant_and_why_it_is_denied() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.reset_faults(&json!({"start_session_denied": true}));
    let output = lab.evoctl().args(["port-forward", "production", "8080"]).output().unwrap();
    let stderr = text(&output.stderr);
    let task = lab.first_task_id();
    let arn = format!("arn:aws:ecs:us-east-1:123456789012:task/alinhou-production/{task}");
    assert_eq!(
        stderr,
        format!(
            "error: StartSession failed: AccessDeniedException: \
             User: arn:aws:iam::123456789012:user/evoctl-lab is not authorized to perform: ssm:StartSession on resource: {arn} \
             because no identity-based policy allows the ssm:StartSession action. \
             A port forward to task {task} (document AWS-StartPortForwardingSession) needs ssm:StartSession on the task ({arn}) and on the document arn:aws:ssm:*::document/AWS-StartPortForwardingSession; \
             accounts that harden ECS Exec often deny it on purpose, because port sessions are never KMS-encrypted and bypass ECS Exec's logging configuration (the forwarded traffic is recorded nowhere)\n\
             \x20 fix: ask for ssm:StartSession on the task and the documents AWS-StartPortForwardingSession and AWS-StartPortForwardingSessionToRemoteHost \
             (plus ssm:TerminateSession on your own sessions), or stay on the audited ECS Exec path (`evoctl exec production -- ...`, `evoctl api production ...`)\n"
        )
    );
    assert!(port_sessions(&lab).is_empty());
    assert_eq!(output.status.code(), Some(5));
}

/// GET `path` on one connection, reading the answer by its Content-Length (the connection is
/// then dropped by this side); (status, body).
fn get_by_length(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = text(&seen[..end]);
            let length: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .expect("a Content-Length");
            if seen.len() >= end + 4 + length {
                let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                return (status, text(&seen[end + 4..end + 4 + length]));
            }
        }
        let n = stream.read(&mut chunk).unwrap();
        assert_ne!(n, 0, "the connection ended before the answer did: {}", text(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
}

/// A scenario like seed whose agents report `version`.
fn agent_version_scenario(lab_dir: &std::path::Path, version: &str) -> String {
    let path = lab_dir.join(format!("agent-{version}.toml"));
    std::fs::write(&path, format!("extends = \"seed\"\nssm_agent_version = \"{version}\"\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn an_agent_too_old_to_multiplex_gets_one_connection_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start(&agent_version_scenario(dir.path(), "3.0.196.0"));
    lab.wait_settled();
    let forwarding = Forwarding::start(&lab, &["8080"]);
    assert_eq!(forwarding.doc["forwards"][0]["multiplexed"], false);
    let local = forwarding.local(0);
    // One after another, each a new connection to the destination (DisconnectToPort between).
    // A single stream cannot tell the client that the destination closed, so each answer is
    // read by its length and the client closes.
    for round in 0..3 {
        let (status, body) = get_by_length(&local, "/");
        let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("round {round}: {e}: {body}"));
        assert_eq!((status, answer["version"].as_str()), (200, Some("2.3.7")), "round {round}");
    }
    let row = session_row(&lab, &forwarding.session(0));
    assert_eq!(row["mode"], "basic", "{row}");
    assert_eq!(row["agent_version"], "3.0.196.0");
}

/// An idle forward is alive after 90 s, on an agent that keeps smux keep-alive on (3.1.1511.0
/// and older: it closes a session that sends it nothing for 30 s, so evoctl's NOPs keep it up)
/// and on a current one that turns it off for evoctl's client version (nothing to keep up).
#[test]
fn an_idle_forward_is_alive_after_90_s_with_the_agents_keep_alive_on_and_off() {
    let cases = [("3.1.1511.0", true), ("3.3.1802.0", false)];
    crate::support::in_parallel(&cases, 2, |(version, keep_alive)| {
        let dir = tempfile::tempdir().unwrap();
        let lab = Lab::start(&agent_version_scenario(dir.path(), version));
        lab.wait_settled();
        let mut forwarding = Forwarding::start(&lab, &["8080"]);
        let local = forwarding.local(0);
        let session = forwarding.session(0);
        assert_eq!(session_row(&lab, &session)["mode"], json!({"mux": {"keep_alive": keep_alive}}), "{version}");
        // Idle on purpose (what is tested, not a wait for something): three times smux's 30 s
        // keep-alive timeout.
        std::thread::sleep(Duration::from_secs(90));
        assert!(forwarding.still_running(), "{version}: {}", forwarding.stderr());
        let (status, body) = http("GET", &format!("http://{local}/"), None);
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, answer["version"].as_str()), (200, Some("2.3.7")), "{version}");
        let row = session_row(&lab, &session);
        assert_eq!((row["ended"].as_bool(), row["end_reason"].clone()), (Some(false), Value::Null), "{version}: {row}");
    });
}

/// A network that cuts the data channel every 1.5 s: the session is resumed each time (said
/// once per resume) and requests keep being answered on the same forward.
#[test]
fn a_forward_survives_a_network_that_cuts_its_data_channel() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.reset_faults(&json!({"disconnect_every_ms": 1500}));
    let mut forwarding = Forwarding::start(&lab, &["8080"]);
    let local = forwarding.local(0);
    let session = forwarding.session(0);
    let mut answered = 0;
    let resumes = wait_until(Duration::from_secs(60), "two resumes while requests go on", || {
        let (status, body) = http("GET", &format!("http://{local}/"), None);
        let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!((status, answer["version"].as_str()), (200, Some("2.3.7")));
        answered += 1;
        let resumes = forwarding.stderr().lines().skip(1).count();
        (resumes >= 2).then_some(resumes)
    });
    assert!(answered >= 2, "{answered}");
    assert!(forwarding.still_running());
    let expected = format!("{local}: the data channel of session {session} dropped and was resumed");
    let stderr = forwarding.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], format!("forwarding to task {} of production (Ctrl-C to stop)", lab.first_task_id()));
    assert!(lines.len() > resumes, "every resume is said: {stderr}");
    for line in &lines[1..] {
        assert_eq!(*line, expected, "{stderr}");
    }
}
