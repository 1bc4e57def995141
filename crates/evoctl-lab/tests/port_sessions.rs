//! The lab's Port sessions end to end: each test starts `evoctl-lab serve`, gets a session from
//! the lab's SSM StartSession (the AWS SDK), opens the data channel with tokio-tungstenite and
//! speaks raw frames built with `evoctl_ssm::frame::Frame`; smux frames are written and read
//! by hand here (8-byte header: version 1, command, length u16 LE, stream id u32 LE), so the
//! lab's smux server (the `async_smux` crate) is checked against the wire format, not against
//! itself. Every wait polls a condition against a deadline.

use evoctl_ssm::frame::{Frame, message_type};
use evoctl_ssm::messages::{Acknowledge, ChannelClosed};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const LAB: &str = env!("CARGO_BIN_EXE_evoctl-lab");
const CLUSTER: &str = "alinhou-production";
const PORT_DOCUMENT: &str = "AWS-StartPortForwardingSession";
const REMOTE_DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";
/// The plugin version the tests' client claims (multiplexing, keep-alive off on a current agent).
const CLIENT: &str = "1.2.677.0";

struct Lab {
    child: Child,
    ready: Value,
    _dir: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until<T>(deadline: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Lab {
    /// A lab on the seed, with `extra` TOML added at the scenario's top level.
    fn start(extra: &str) -> Lab {
        Lab::start_with(extra, &[])
    }

    fn start_with(extra: &str, flags: &[&str]) -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let scenario = dir.path().join("scenario.toml");
        std::fs::write(&scenario, format!("extends = \"seed\"\ndescription = \"port\"\n{extra}")).unwrap();
        let ready_file = dir.path().join("ready.json");
        let child = std::process::Command::new(LAB)
            .args(["serve", "--port", "0", "--scenario"])
            .arg(&scenario)
            .arg("--ready-file")
            .arg(&ready_file)
            .args(["--task-start-ms", "150", "--task-stop-ms", "100", "--agent-start-ms", "60", "--tick-ms", "5"])
            .args(["--agent-delay-ms", "50", "--evolution-time-scale", "0.01"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn evoctl-lab");
        let ready = wait_until(Duration::from_secs(30), "the lab's ready file", || {
            std::fs::read_to_string(&ready_file).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
        });
        Lab { child, ready, _dir: dir }
    }

    fn env(&self, key: &str) -> String {
        self.ready["env"][key].as_str().expect("env key").to_owned()
    }

    async fn ssm(&self) -> aws_sdk_ssm::Client {
        let credentials = aws_sdk_ssm::config::Credentials::new(
            self.env("AWS_ACCESS_KEY_ID"),
            self.env("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "lab",
        );
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.env("AWS_ENDPOINT_URL"))
            .region(aws_config::Region::new(self.env("AWS_REGION")))
            .credentials_provider(credentials)
            .load()
            .await;
        aws_sdk_ssm::Client::new(&config)
    }

    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let base = self.ready["control"].as_str().expect("control url");
        let rest = base.strip_prefix("http://").expect("http url");
        let (host, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(host).expect("connect to lab");
        write!(
            stream,
            "{method} {prefix}{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("http response");
        assert!(head.starts_with("HTTP/1.1 2"), "{method} {path}: {head}");
        if body.is_empty() { Value::Null } else { serde_json::from_str(body).expect("control JSON") }
    }

    /// The production task's target id and its Evolution stand-in's real port, once its agent runs.
    fn production(&self) -> (String, u16) {
        wait_until(Duration::from_secs(20), "the production task's agent", || {
            let state = self.control("GET", "/state", None);
            let task = state["tasks"].as_array()?.iter().find(|t| {
                t["clusterArn"].as_str().is_some_and(|a| a.ends_with(CLUSTER))
                    && t["lastStatus"] == "RUNNING"
                    && t["containers"][0]["managedAgents"][0]["lastStatus"] == "RUNNING"
            })?;
            let task_id = task["taskArn"].as_str()?.rsplit('/').next()?.to_owned();
            let runtime = task["containers"][0]["runtimeId"].as_str()?.to_owned();
            let processes = self.control("GET", "/evolution/processes", None);
            let port = processes.as_array()?.iter().find(|p| p["task"] == task_id.as_str())?["port"].as_u64()?;
            Some((format!("ecs:{CLUSTER}_{task_id}_{runtime}"), port as u16))
        })
    }

    fn port_session(&self, id: &str) -> Value {
        let sessions = self.control("GET", "/port-sessions", None);
        sessions.as_array().unwrap().iter().find(|s| s["session_id"] == id).cloned().expect("the session's row")
    }

    fn wait_session(&self, id: &str, what: &str, probe: impl Fn(&Value) -> bool) -> Value {
        wait_until(Duration::from_secs(10), what, || Some(self.port_session(id)).filter(|row| probe(row)))
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw data-channel client for port sessions: acks every output frame, numbers its input,
/// answers the handshake with `client_version`, and reassembles the agent's Output payloads.
struct Channel {
    id: String,
    socket: Socket,
    next_input: i64,
    next_output: i64,
    /// Output payloads in sequence order (smux bytes, or a basic connection's bytes).
    output: Vec<u8>,
    /// The size of each Output payload, in order.
    output_sizes: Vec<usize>,
    /// Other stream payloads from the agent, in order: (payload type, payload).
    control: Vec<(u32, Vec<u8>)>,
    future: BTreeMap<i64, Frame>,
    closed: Option<ChannelClosed>,
}

async fn start(
    ssm: &aws_sdk_ssm::Client,
    target: &str,
    document: &str,
    parameters: &[(&str, &str)],
) -> (String, String, String) {
    let mut request = ssm.start_session().target(target).document_name(document);
    for (name, value) in parameters {
        request = request.parameters(*name, vec![(*value).to_owned()]);
    }
    let answer = request.send().await.expect("StartSession");
    (
        answer.session_id().expect("id").to_owned(),
        answer.stream_url().expect("stream url").to_owned(),
        answer.token_value().expect("token").to_owned(),
    )
}

async fn open(ssm: &aws_sdk_ssm::Client, target: &str, document: &str, parameters: &[(&str, &str)]) -> Channel {
    let (id, url, token) = start(ssm, target, document, parameters).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket");
    let open = json!({
        "MessageSchemaVersion": "1.0",
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "TokenValue": token,
        "ClientId": uuid::Uuid::new_v4().to_string(),
        "ClientVersion": CLIENT,
    });
    socket.send(Message::Text(open.to_string().into())).await.expect("token frame");
    Channel {
        id,
        socket,
        next_input: 0,
        next_output: 0,
        output: Vec::new(),
        output_sizes: Vec::new(),
        control: Vec::new(),
        future: BTreeMap::new(),
        closed: None,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

impl Channel {
    async fn send_frame(&mut self, frame: Frame) {
        let bytes = frame.encode().expect("encodes");
        self.socket.send(Message::Binary(bytes.into())).await.expect("send");
    }

    /// One input_stream_data frame.
    async fn input(&mut self, payload_type: u32, payload: &[u8]) {
        let seq = self.next_input;
        self.next_input += 1;
        let id = *uuid::Uuid::new_v4().as_bytes();
        let frame = Frame::new(
            message_type::INPUT_STREAM_DATA,
            seq,
            u64::from(seq == 0),
            id,
            now_ms(),
            payload_type,
            payload.to_vec(),
        );
        self.send_frame(frame).await;
    }

    async fn flag(&mut self, value: u32) {
        self.input(10, &value.to_be_bytes()).await;
    }

    /// Read one message; false once the socket ended or `window` passed.
    async fn pump(&mut self, window: Duration) -> bool {
        let message = match timeout(window, self.socket.next()).await {
            Ok(Some(Ok(message))) => message,
            _ => return false,
        };
        let bytes = match message {
            Message::Binary(bytes) => bytes.to_vec(),
            Message::Close(_) => return false,
            _ => return true,
        };
        let frame = Frame::decode(&bytes).expect("a valid frame from the gateway");
        match frame.message_type.as_str() {
            message_type::OUTPUT_STREAM_DATA => {
                let ack = Acknowledge {
                    message_type: frame.message_type.clone(),
                    message_id: frame.message_id_string(),
                    sequence_number: frame.sequence_number,
                    is_sequential: true,
                };
                let id = *uuid::Uuid::new_v4().as_bytes();
                let ack =
                    Frame::new(message_type::ACKNOWLEDGE, 0, 3, id, now_ms(), 0, serde_json::to_vec(&ack).unwrap());
                self.send_frame(ack).await;
                if frame.sequence_number >= self.next_output {
                    self.future.insert(frame.sequence_number, frame);
                }
                while let Some(next) = self.future.remove(&self.next_output) {
                    self.next_output += 1;
                    if next.payload_type == 1 {
                        self.output_sizes.push(next.payload.len());
                        self.output.extend_from_slice(&next.payload);
                    } else {
                        self.control.push((next.payload_type, next.payload));
                    }
                }
            }
            message_type::CHANNEL_CLOSED => {
                self.closed = Some(serde_json::from_slice(&frame.payload).expect("channel_closed body"));
            }
            _ => {}
        }
        true
    }

    async fn until(&mut self, what: &str, probe: impl Fn(&Channel) -> bool) {
        let deadline = Duration::from_secs(10);
        let end = Instant::now() + deadline;
        while !probe(self) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out after {deadline:?} waiting for {what}");
            if !self.pump(left).await {
                assert!(probe(self), "the channel ended, or {deadline:?} passed, before {what}");
            }
        }
    }

    /// The payloads of this type the agent sent.
    fn payloads(&self, payload_type: u32) -> Vec<Vec<u8>> {
        self.control.iter().filter(|(t, _)| *t == payload_type).map(|(_, p)| p.clone()).collect()
    }

    /// Wait for the HandshakeRequest, answer it as a plugin of `client_version`, wait for
    /// HandshakeComplete; returns the request's body.
    async fn handshake(&mut self, client_version: &str) -> Value {
        self.until("the HandshakeRequest", |c| !c.payloads(5).is_empty()).await;
        let request: Value = serde_json::from_slice(&self.payloads(5)[0]).unwrap();
        let response = json!({
            "ClientVersion": client_version,
            "ProcessedClientActions": [{"ActionType": "SessionType", "ActionStatus": 1, "ActionResult": null, "Error": ""}],
            "Errors": null,
        });
        self.input(6, response.to_string().as_bytes()).await;
        self.until("HandshakeComplete", |c| !c.payloads(7).is_empty()).await;
        request
    }

    /// The smux frames the agent sent so far, parsed from the Output byte stream.
    fn smux(&self) -> Vec<SmuxFrame> {
        parse_smux(&self.output).0
    }

    /// The bytes stream `id` carried (PSH payloads) and whether its FIN arrived.
    fn stream(&self, id: u32) -> (Vec<u8>, bool) {
        let frames = self.smux();
        let data = frames.iter().filter(|f| f.sid == id && f.cmd == PSH).flat_map(|f| f.data.clone()).collect();
        (data, frames.iter().any(|f| f.sid == id && f.cmd == FIN))
    }

    /// Drop the socket and resume the session on a new one (ResumeSession's token), keeping the
    /// sequence numbers: both sides resend what was not acked.
    async fn resume(&mut self, ssm: &aws_sdk_ssm::Client) {
        let _ = self.socket.close(None).await;
        let answer = ssm.resume_session().session_id(&self.id).send().await.expect("ResumeSession");
        let (mut socket, _) =
            tokio_tungstenite::connect_async(answer.stream_url().expect("stream url")).await.expect("websocket");
        let open = json!({
            "MessageSchemaVersion": "1.0",
            "RequestId": uuid::Uuid::new_v4().to_string(),
            "TokenValue": answer.token_value().expect("token"),
            "ClientId": uuid::Uuid::new_v4().to_string(),
            "ClientVersion": CLIENT,
        });
        socket.send(Message::Text(open.to_string().into())).await.expect("token frame");
        self.socket = socket;
    }

    /// End the session with the TerminateSession flag and wait for its channel_closed.
    async fn end(&mut self) {
        self.flag(2).await;
        self.until("channel_closed", |c| c.closed.is_some()).await;
    }

    async fn smux_send(&mut self, cmd: u8, sid: u32, data: &[u8]) {
        let mut frame = vec![1, cmd];
        frame.extend_from_slice(&(data.len() as u16).to_le_bytes());
        frame.extend_from_slice(&sid.to_le_bytes());
        frame.extend_from_slice(data);
        self.input(1, &frame).await;
    }
}

const SYN: u8 = 0;
const FIN: u8 = 1;
const PSH: u8 = 2;
const NOP: u8 = 3;

#[derive(Debug, Clone)]
struct SmuxFrame {
    cmd: u8,
    sid: u32,
    data: Vec<u8>,
    /// Where its header starts in the byte stream.
    offset: usize,
}

/// Whole smux v1 frames in `bytes`, and how many bytes they took.
fn parse_smux(bytes: &[u8]) -> (Vec<SmuxFrame>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 8 {
        assert_eq!(bytes[at], 1, "smux version 1 at offset {at}");
        let length = u16::from_le_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        if bytes.len() < at + 8 + length {
            break;
        }
        let sid = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        frames.push(SmuxFrame { cmd: bytes[at + 1], sid, data: bytes[at + 8..at + 8 + length].to_vec(), offset: at });
        at += 8 + length;
    }
    (frames, at)
}

/// The HTTP response a server gives on a fresh connection to `port` for `request`.
fn direct(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    answer
}

fn body(response: &[u8]) -> &[u8] {
    let at = response.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP head") + 4;
    &response[at..]
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_then_an_http_get_through_smux_syn_psh_fin() {
    let lab = Lab::start("");
    let (target, stand_in) = lab.production();
    let ssm = lab.ssm().await;
    let mut channel = open(&ssm, &target, PORT_DOCUMENT, &[("portNumber", "8080"), ("localPortNumber", "0")]).await;
    let request = channel.handshake(CLIENT).await;
    assert_eq!(
        request,
        json!({"AgentVersion": "3.3.1802.0", "RequestedClientActions": [{"ActionType": "SessionType",
            "ActionParameters": {"SessionType": "Port", "Properties":
                {"localPortNumber": "0", "portNumber": "8080", "type": "LocalPortForwarding"}}}]})
    );
    let complete: Value = serde_json::from_slice(&channel.payloads(7)[0]).unwrap();
    assert_eq!(complete["CustomerMessage"], "");
    let row = lab.wait_session(&channel.id, "the mode", |r| !r["mode"].is_null());
    assert_eq!(row["mode"], json!({"mux": {"keep_alive": false}}));
    assert_eq!(row["client_version"], CLIENT);

    channel.smux_send(SYN, 3, &[]).await;
    channel.smux_send(PSH, 3, GET).await;
    channel.until("the response and the FIN on stream 3", |c| c.stream(3).1).await;
    let (answer, _) = channel.stream(3);
    let expected = direct(stand_in, GET);
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(body(&answer), body(&expected), "the stand-in's GET / through the forward and directly");
    channel.smux_send(FIN, 3, &[]).await;
    let row = lab.wait_session(&channel.id, "stream 3 closed", |r| r["streams"][0]["closed_ms"].is_u64());
    let stream = &row["streams"][0];
    assert_eq!(row["streams"].as_array().unwrap().len(), 1);
    assert_eq!(stream["id"], 3);
    assert_eq!(stream["destination"], "127.0.0.1:8080");
    assert_eq!(stream["error"], Value::Null);
    assert_eq!(stream["bytes_to_destination"], GET.len());
    assert_eq!(stream["bytes_from_destination"], answer.len());
    assert!(channel.output_sizes.iter().all(|&n| n <= 1024), "Output messages of at most 1024 bytes");
    assert_eq!(row["ended"], false, "the session outlives its streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_answers_connect_to_port_error_per_stream_and_the_session_stays_up() {
    let lab = Lab::start("");
    let (target, _) = lab.production();
    let ssm = lab.ssm().await;
    let mut channel = open(&ssm, &target, PORT_DOCUMENT, &[("portNumber", "9999")]).await;
    channel.handshake(CLIENT).await;
    for (n, sid) in [(1, 3u32), (2, 5)] {
        channel.smux_send(SYN, sid, &[]).await;
        channel.until("the flag and the stream's FIN", |c| c.payloads(10).len() == n && c.stream(sid).1).await;
        assert_eq!(channel.payloads(10)[n - 1], vec![0, 0, 0, 3], "ConnectToPortError, u32 big-endian");
    }
    let row = lab.wait_session(&channel.id, "two errors", |r| r["connect_errors"] == 2);
    assert_eq!(row["ended"], false);
    let errors: Vec<&Value> = row["streams"].as_array().unwrap().iter().map(|s| &s["error"]).collect();
    assert_eq!(
        errors,
        [
            &json!("dial tcp 127.0.0.1:9999: connect: connection refused"),
            &json!("dial tcp 127.0.0.1:9999: connect: connection refused")
        ]
    );
    assert!(channel.closed.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_host_echoes_across_output_messages_split_inside_frames() {
    let lab = Lab::start("");
    let (target, _) = lab.production();
    let served =
        lab.control("POST", "/remote-hosts", Some(&json!({"host": "db.internal", "port": 5432, "kind": "echo"})));
    assert_eq!(served["host"], "db.internal");
    let ssm = lab.ssm().await;
    let mut channel = open(&ssm, &target, REMOTE_DOCUMENT, &[("host", "db.internal"), ("portNumber", "5432")]).await;
    let request = channel.handshake(CLIENT).await;
    assert_eq!(
        request["RequestedClientActions"][0]["ActionParameters"]["Properties"],
        json!({"host": "db.internal", "localPortNumber": "0", "portNumber": "5432", "type": "LocalPortForwarding"})
    );
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    channel.smux_send(SYN, 3, &[]).await;
    channel.smux_send(PSH, 3, &data).await;
    channel.until("the echo", |c| c.stream(3).0.len() >= data.len()).await;
    assert_eq!(channel.stream(3).0, data);
    assert!(channel.output_sizes.iter().all(|&n| n <= 1024), "{:?}", channel.output_sizes);
    // Some Output message ends inside a frame: the client must reassemble the byte stream.
    let starts: Vec<usize> = channel.smux().iter().map(|f| f.offset).collect();
    let mut boundary = 0;
    let unaligned = channel.output_sizes.iter().any(|n| {
        boundary += n;
        boundary < channel.output.len() && !starts.contains(&boundary)
    });
    assert!(unaligned, "message sizes {:?}, frame starts {starts:?}", channel.output_sizes);
    let row = lab.wait_session(&channel.id, "the stream's destination", |r| r["streams"][0]["destination"].is_string());
    assert_eq!(row["streams"][0]["destination"], "db.internal:5432");
    // The task's agent runs two sessions at once: end this one first.
    channel.end().await;

    // A host the lab does not know does not resolve; a known host's other port is refused.
    let mut unknown =
        open(&ssm, &target, REMOTE_DOCUMENT, &[("host", "nowhere.internal"), ("portNumber", "5432")]).await;
    unknown.handshake(CLIENT).await;
    unknown.smux_send(SYN, 3, &[]).await;
    unknown.until("the flag", |c| c.payloads(10).len() == 1).await;
    let row = lab.wait_session(&unknown.id, "the error", |r| r["streams"][0]["error"].is_string());
    assert_eq!(row["streams"][0]["error"], "missing address");
    unknown.end().await;
    let mut other = open(&ssm, &target, REMOTE_DOCUMENT, &[("host", "db.internal"), ("portNumber", "6379")]).await;
    other.handshake(CLIENT).await;
    other.smux_send(SYN, 3, &[]).await;
    other.until("the flag", |c| c.payloads(10).len() == 1).await;
    let row = lab.wait_session(&other.id, "the error", |r| r["streams"][0]["error"].is_string());
    assert_eq!(row["streams"][0]["error"], "dial tcp db.internal:6379: connect: connection refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_session_denied_answers_the_iam_wording_and_is_journaled() {
    let lab = Lab::start("");
    let (target, _) = lab.production();
    lab.control("POST", "/faults", Some(&json!({"start_session_denied": true})));
    let ssm = lab.ssm().await;
    let error = ssm
        .start_session()
        .target(&target)
        .document_name(PORT_DOCUMENT)
        .parameters("portNumber", vec!["8080".into()])
        .send()
        .await
        .expect_err("denied")
        .into_service_error();
    use aws_sdk_ssm::error::ProvideErrorMetadata;
    let task = target.split('_').nth(1).unwrap();
    assert_eq!(error.code(), Some("AccessDeniedException"));
    assert_eq!(
        error.message(),
        Some(
            format!(
                "User: arn:aws:iam::123456789012:user/evoctl-lab is not authorized to perform: ssm:StartSession on resource: arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/{task} because no identity-based policy allows the ssm:StartSession action"
            )
            .as_str()
        )
    );
    let journal = lab.control("GET", "/journal", None);
    let calls: Vec<&Value> = journal.as_array().unwrap().iter().filter(|e| e["action"] == "StartSession").collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["service"], "ssm");
    assert_eq!(calls[0]["status"], 400);
    assert_eq!(calls[0]["error"], "AccessDeniedException");
    assert_eq!(calls[0]["parameters"]["Target"], target.as_str());
    assert_eq!(lab.control("GET", "/port-sessions", None), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_session_and_the_terminate_flag_end_port_sessions() {
    let lab = Lab::start("");
    let (target, _) = lab.production();
    let ssm = lab.ssm().await;
    let mut by_api = open(&ssm, &target, PORT_DOCUMENT, &[("portNumber", "8080")]).await;
    by_api.handshake(CLIENT).await;
    ssm.terminate_session().session_id(&by_api.id).send().await.expect("TerminateSession");
    by_api.until("channel_closed", |c| c.closed.is_some()).await;
    assert_eq!(by_api.closed.as_ref().unwrap().output, "");
    let row = lab.wait_session(&by_api.id, "the end", |r| r["ended"] == true);
    assert_eq!((row["terminated"].clone(), row["end_reason"].clone()), (json!(true), json!("terminate-session")));

    let mut by_flag = open(&ssm, &target, PORT_DOCUMENT, &[("portNumber", "8080")]).await;
    by_flag.handshake(CLIENT).await;
    by_flag.flag(2).await;
    by_flag.until("channel_closed", |c| c.closed.is_some()).await;
    let row = lab.wait_session(&by_flag.id, "the end", |r| r["ended"] == true);
    assert_eq!((row["terminated"].clone(), row["end_reason"].clone()), (json!(true), json!("terminate-flag")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_agent_forwards_one_connection_at_a_time_and_reconnects_after_disconnect() {
    let lab = Lab::start("ssm_agent_version = \"3.0.196.0\"\n");
    let (target, stand_in) = lab.production();
    let ssm = lab.ssm().await;
    let mut channel = open(&ssm, &target, PORT_DOCUMENT, &[("portNumber", "8080")]).await;
    let request = channel.handshake(CLIENT).await;
    assert_eq!(request["AgentVersion"], "3.0.196.0");
    let row = lab.wait_session(&channel.id, "the mode", |r| !r["mode"].is_null());
    assert_eq!(row["mode"], "basic");
    let keep_alive = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    channel.input(1, keep_alive).await;
    let expected = body(&direct(stand_in, GET)).to_vec();
    channel.until("the first answer", |c| c.output.ends_with(&expected)).await;
    assert!(channel.output.starts_with(b"HTTP/1.1 200 OK\r\n"), "raw bytes, no smux");
    // The local connection closed: the agent drops its own and dials again on the next data.
    channel.flag(1).await;
    lab.wait_session(&channel.id, "connection 1 closed", |r| r["streams"][0]["closed_ms"].is_u64());
    let first = channel.output.len();
    channel.input(1, GET).await;
    channel.until("the second answer", |c| c.output.len() > first && c.output.ends_with(&expected)).await;
    let row = lab.wait_session(&channel.id, "connection 2", |r| r["streams"].as_array().is_some_and(|s| s.len() == 2));
    let ids: Vec<&Value> = row["streams"].as_array().unwrap().iter().map(|s| &s["id"]).collect();
    assert_eq!(ids, [&json!(1), &json!(2)]);
    assert_eq!(row["ended"], false);

    // A closed port in basic mode fails the session itself.
    let mut refused = open(&ssm, &target, PORT_DOCUMENT, &[("portNumber", "9999")]).await;
    refused.handshake(CLIENT).await;
    refused.until("channel_closed", |c| c.closed.is_some()).await;
    assert_eq!(
        refused.closed.as_ref().unwrap().output,
        "\n----------ERROR-------\nUnable to connect to specified port: dial tcp 127.0.0.1:9999: connect: connection refused\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_follows_the_client_version_and_closes_a_silent_client_after_30_s() {
    let lab = Lab::start("");
    let (target, _) = lab.production();
    let ssm = lab.ssm().await;
    let mut on = open(&ssm, &target, PORT_DOCUMENT, &[("portNumber", "8080")]).await;
    on.handshake("1.2.331.0").await;
    let mut off = open(&ssm, &target, PORT_DOCUMENT, &[("portNumber", "8080")]).await;
    off.handshake(CLIENT).await;
    let silent_since = Instant::now();
    let row = lab.wait_session(&on.id, "the mode", |r| !r["mode"].is_null());
    assert_eq!(row["mode"], json!({"mux": {"keep_alive": true}}));
    let row = lab.wait_session(&off.id, "the mode", |r| !r["mode"].is_null());
    assert_eq!(row["mode"], json!({"mux": {"keep_alive": false}}));
    // The crate's ticker sends one NOP at once (xtaci's waits the first interval), then one
    // every 10 s; the client here sends no smux frame at all, so after 30 s the agent's smux
    // session gives up and the session ends.
    on.until("the first NOP", |c| c.smux().iter().any(|f| f.cmd == NOP)).await;
    let first = Instant::now();
    let end = silent_since + Duration::from_secs(45);
    let mut second = None;
    while on.closed.is_none() {
        assert!(Instant::now() < end, "the silent session was not closed within 45 s");
        on.pump(end.saturating_duration_since(Instant::now())).await;
        if second.is_none() && on.smux().iter().filter(|f| f.cmd == NOP).count() >= 2 {
            second = Some(first.elapsed());
        }
    }
    let closed_after = silent_since.elapsed();
    let gap = second.expect("a second NOP");
    assert!(gap >= Duration::from_secs(8) && gap <= Duration::from_secs(12), "NOPs about 10 s apart, not {gap:?}");
    assert!(on.smux().iter().filter(|f| f.cmd == NOP).all(|f| f.sid == 0 && f.data.is_empty()));
    assert!(closed_after >= Duration::from_secs(29), "closed after {closed_after:?}, not about 30 s");
    let row = lab.wait_session(&on.id, "the end", |r| r["ended"] == true);
    assert!(row["end_reason"].as_str().unwrap().starts_with("keep-alive"), "{}", row["end_reason"]);
    assert_eq!(row["terminated"], false);

    // Without keep-alive the agent sends nothing and the idle session stays up.
    while off.pump(Duration::from_millis(200)).await {}
    assert!(off.smux().is_empty(), "{:?}", off.smux());
    assert!(off.closed.is_none());
    assert_eq!(lab.port_session(&off.id)["ended"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_version_flag_wins_over_the_scenario_and_keeps_keep_alive_on_up_to_3_1_1511() {
    let lab = Lab::start_with("ssm_agent_version = \"3.0.196.0\"\n", &["--ssm-agent-version", "3.1.1511.0"]);
    let (target, _) = lab.production();
    let ssm = lab.ssm().await;
    let mut channel = open(&ssm, &target, PORT_DOCUMENT, &[("portNumber", "8080")]).await;
    let request = channel.handshake(CLIENT).await;
    assert_eq!(request["AgentVersion"], "3.1.1511.0");
    let row = lab.wait_session(&channel.id, "the mode", |r| !r["mode"].is_null());
    assert_eq!(row["mode"], json!({"mux": {"keep_alive": true}}));
    assert_eq!(row["agent_version"], "3.1.1511.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_mebibytes_echo_byte_identical_on_two_streams_at_once() {
    let lab = Lab::start("");
    let (target, _) = lab.production();
    lab.control("POST", "/remote-hosts", Some(&json!({"host": "echo.internal", "port": 7, "kind": "echo"})));
    let ssm = lab.ssm().await;
    let mut channel = open(&ssm, &target, REMOTE_DOCUMENT, &[("host", "echo.internal"), ("portNumber", "7")]).await;
    channel.handshake(CLIENT).await;
    let data: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    channel.smux_send(SYN, 3, &[]).await;
    channel.smux_send(SYN, 5, &[]).await;
    // Input messages of at most 1024 bytes, as the plugin sends them, frames of 32 KiB
    // interleaved across the two streams.
    let mut bytes = Vec::new();
    for chunk in data.chunks(32 * 1024) {
        for sid in [3u32, 5] {
            bytes.extend_from_slice(&[1, PSH]);
            bytes.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&sid.to_le_bytes());
            bytes.extend_from_slice(chunk);
        }
    }
    for piece in bytes.chunks(1024) {
        channel.input(1, piece).await;
        // Keep acking what arrives meanwhile.
        while channel.pump(Duration::ZERO).await {}
    }
    let end = Instant::now() + Duration::from_secs(60);
    // Parsing the smux stream is linear: only once the bytes can be all there.
    let echoed = |c: &Channel| {
        c.output.len() >= 2 * data.len() && c.stream(3).0.len() == data.len() && c.stream(5).0.len() == data.len()
    };
    while !echoed(&channel) {
        assert!(Instant::now() < end, "{} bytes of smux output after 60 s", channel.output.len());
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until && channel.pump(Duration::from_millis(200)).await {}
    }
    assert!(channel.stream(3).0 == data && channel.stream(5).0 == data, "byte-identical on both streams");
    assert!(channel.output_sizes.iter().all(|&n| n <= 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_port_session_keeps_forwarding_on_a_new_socket() {
    let lab = Lab::start("");
    let (target, stand_in) = lab.production();
    let ssm = lab.ssm().await;
    let mut channel = open(&ssm, &target, PORT_DOCUMENT, &[("portNumber", "8080")]).await;
    channel.handshake(CLIENT).await;
    let expected = direct(stand_in, GET);
    channel.smux_send(SYN, 3, &[]).await;
    channel.smux_send(PSH, 3, GET).await;
    channel.until("the first answer", |c| c.stream(3).1).await;
    assert_eq!(body(&channel.stream(3).0), body(&expected));
    channel.resume(&ssm).await;
    channel.smux_send(SYN, 5, &[]).await;
    channel.smux_send(PSH, 5, GET).await;
    channel.until("the answer after the resume", |c| c.stream(5).1).await;
    assert_eq!(body(&channel.stream(5).0), body(&expected));
    let row = lab.port_session(&channel.id);
    assert_eq!(row["ended"], false);
    let ids: Vec<&Value> = row["streams"].as_array().unwrap().iter().map(|s| &s["id"]).collect();
    assert_eq!(ids, [&json!(3), &json!(5)]);
}
