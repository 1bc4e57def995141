//! The lab's exec agent and gateway against the real agent's behaviours that need a running
//! lab (ssm-data-channel.md §9 rows 7, 8, 9, 10, 11 and 12): each test starts `evoctl-lab serve`,
//! gets sessions from the lab's ECS ExecuteCommand, opens the data channel with
//! tokio-tungstenite and speaks raw frames built with `evoctl_ssm::frame::Frame`. Every wait
//! polls a condition against a deadline; a "nothing arrives" check reads the socket for a
//! bounded window.

use evoctl_ssm::frame::{Frame, message_type};
use evoctl_ssm::messages::{Acknowledge, ChannelClosed};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const LAB: &str = env!("CARGO_BIN_EXE_evoctl-lab");
const CLUSTER: &str = "alinhou-production";
const CONTAINER: &str = "EvolutionService";

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
    /// Start a lab on `scenario` (a built-in name, or TOML text extending one when it has a
    /// newline) with fast timings.
    fn start(scenario: &str, extra: &[&str]) -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let scenario = if scenario.contains('\n') {
            let path = dir.path().join("scenario.toml");
            std::fs::write(&path, scenario).unwrap();
            path.display().to_string()
        } else {
            scenario.to_owned()
        };
        let ready_file = dir.path().join("ready.json");
        let child = std::process::Command::new(LAB)
            .args(["serve", "--port", "0", "--scenario", &scenario, "--ready-file"])
            .arg(&ready_file)
            .args(["--task-start-ms", "150", "--task-stop-ms", "100", "--agent-start-ms", "60", "--tick-ms", "5"])
            .args(["--agent-delay-ms", "50", "--evolution-time-scale", "0.01"])
            .args(extra)
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

    async fn ecs(&self) -> aws_sdk_ecs::Client {
        let credentials = aws_sdk_ecs::config::Credentials::new(
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
        aws_sdk_ecs::Client::new(&config)
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

    fn processes(&self) -> Vec<Value> {
        self.control("GET", "/processes", None).as_array().expect("process table").clone()
    }

    fn row(&self, session: &str) -> Option<Value> {
        self.processes().into_iter().find(|r| r["session_id"] == session)
    }
}

/// The production task, once its exec agent runs.
async fn task_arn(ecs: &aws_sdk_ecs::Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = ecs.list_tasks().cluster(CLUSTER).send().await.expect("ListTasks");
        if let Some(arn) = tasks.task_arns().first() {
            let probe = ecs
                .execute_command()
                .cluster(CLUSTER)
                .task(arn)
                .container(CONTAINER)
                .interactive(true)
                .command("true")
                .send()
                .await;
            if probe.is_ok() {
                return arn.clone();
            }
        }
        assert!(Instant::now() < deadline, "the production task's exec agent never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw data-channel client: acks every output frame (unless told not to) and numbers its own
/// input.
struct Channel {
    id: String,
    socket: Socket,
    acks: bool,
    next_input: i64,
    /// Output payloads in sequence order, once each.
    output: Vec<u8>,
    next_output: i64,
    /// Every frame received, in arrival order.
    frames: Vec<Frame>,
    closed: Option<ChannelClosed>,
}

async fn open(ecs: &aws_sdk_ecs::Client, task: &str, command: &str) -> Channel {
    let answer = ecs
        .execute_command()
        .cluster(CLUSTER)
        .task(task)
        .container(CONTAINER)
        .interactive(true)
        .command(command)
        .send()
        .await
        .expect("ExecuteCommand");
    let session = answer.session().expect("session");
    let (mut socket, _) =
        tokio_tungstenite::connect_async(session.stream_url().expect("stream url")).await.expect("websocket");
    let token = json!({
        "MessageSchemaVersion": "1.0",
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "TokenValue": session.token_value().expect("token"),
        "ClientId": uuid::Uuid::new_v4().to_string(),
        "ClientVersion": "1.2.677.0",
    });
    socket.send(Message::Text(token.to_string().into())).await.expect("token frame");
    Channel {
        id: session.session_id().expect("session id").to_owned(),
        socket,
        acks: true,
        next_input: 0,
        output: Vec::new(),
        next_output: 0,
        frames: Vec::new(),
        closed: None,
    }
}

impl Channel {
    async fn send_raw(&mut self, frame: Frame) {
        let bytes = frame.encode().expect("encodes");
        self.socket.send(Message::Binary(bytes.into())).await.expect("send");
    }

    /// Send one input_stream_data frame (PayloadType 1 Output, 3 Size).
    async fn input(&mut self, payload_type: u32, payload: &[u8]) {
        let seq = self.next_input;
        self.next_input += 1;
        let frame = Frame::new(
            message_type::INPUT_STREAM_DATA,
            seq,
            u64::from(seq == 0),
            *uuid::Uuid::new_v4().as_bytes(),
            now_ms(),
            payload_type,
            payload.to_vec(),
        );
        self.send_raw(frame).await;
    }

    /// Read one frame (acking output); false once the socket is closed or `window` passes.
    async fn pump(&mut self, window: Duration) -> bool {
        let message = match timeout(window, self.socket.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) => return false,
            Ok(Some(Ok(message))) => message,
        };
        let bytes = match message {
            Message::Binary(bytes) => bytes.to_vec(),
            Message::Close(_) => return false,
            _ => return true,
        };
        let frame = Frame::decode(&bytes).expect("a valid frame from the gateway");
        match frame.message_type.as_str() {
            message_type::OUTPUT_STREAM_DATA if !self.acks && frame.sequence_number == self.next_output => {
                self.next_output += 1;
                self.output.extend_from_slice(&frame.payload);
            }
            // A resend of output this client already has, unacked like the first copy.
            message_type::OUTPUT_STREAM_DATA if !self.acks => {}
            message_type::OUTPUT_STREAM_DATA => {
                let ack = Acknowledge {
                    message_type: frame.message_type.clone(),
                    message_id: frame.message_id_string(),
                    sequence_number: frame.sequence_number,
                    is_sequential: true,
                };
                let ack = Frame::new(
                    message_type::ACKNOWLEDGE,
                    0,
                    3,
                    *uuid::Uuid::new_v4().as_bytes(),
                    now_ms(),
                    0,
                    serde_json::to_vec(&ack).unwrap(),
                );
                self.send_raw(ack).await;
                if frame.sequence_number == self.next_output {
                    self.next_output += 1;
                    self.output.extend_from_slice(&frame.payload);
                }
            }
            message_type::CHANNEL_CLOSED => {
                self.closed = Some(serde_json::from_slice(&frame.payload).expect("channel_closed body"));
            }
            _ => {}
        }
        self.frames.push(frame);
        true
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// Pump until `probe` holds, within `deadline`.
    async fn until(&mut self, deadline: Duration, what: &str, probe: impl Fn(&Channel) -> bool) {
        let end = Instant::now() + deadline;
        while !probe(self) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out after {deadline:?} waiting for {what}; output so far {:?}",
                self.text()
            );
            if !self.pump(left).await {
                assert!(probe(self), "the channel ended before {what}; output {:?}", self.text());
            }
        }
    }

    /// Pump to the end of the channel (channel_closed and the socket's close).
    async fn finish(&mut self, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the channel did not end within {deadline:?}; output {:?}", self.text());
            if !self.pump(left).await {
                return;
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test]
async fn row7_the_pty_has_no_size_until_the_first_size_message_and_the_container_env() {
    let lab = Lab::start("seed", &[]);
    let ecs = lab.ecs().await;
    let task = task_arn(&ecs).await;
    let mut channel = open(
        &ecs,
        &task,
        r#"sh -c 'stty size; echo "TERM=$TERM LANG=$LANG SERVER_URL=$SERVER_URL"; read go; stty size'"#,
    )
    .await;
    channel.until(Duration::from_secs(10), "the first stty size", |c| c.text().contains("LANG=")).await;
    let text = channel.text();
    assert!(text.starts_with("0 0\r\n"), "a pty opened with no size is 0×0: {text:?}");
    assert!(text.contains("TERM=xterm-256color LANG=C.UTF-8 SERVER_URL=https://evolution.alinhou.example"), "{text:?}");
    channel.input(3, br#"{"cols":80,"rows":24}"#).await;
    channel.input(1, b"go\r").await;
    channel.until(Duration::from_secs(10), "the resized stty size", |c| c.text().contains("24 80")).await;
    channel.finish(Duration::from_secs(10)).await;
    assert_eq!(channel.closed.as_ref().map(|c| c.output.as_str()), Some(""), "a normal end");
}

#[tokio::test]
async fn row8_the_command_splits_as_google_shlex_and_an_empty_one_is_refused() {
    let lab = Lab::start("seed", &[]);
    let ecs = lab.ecs().await;
    let task = task_arn(&ecs).await;
    let mut channel = open(&ecs, &task, r#"printf %s| "a\b" 'c\d' e\ f # not an argument"#).await;
    channel.finish(Duration::from_secs(10)).await;
    assert_eq!(channel.text(), r"ab|c\d|e f|");
    let mut blank = open(&ecs, &task, "  ").await;
    blank.finish(Duration::from_secs(10)).await;
    let closed = blank.closed.clone().expect("channel_closed");
    assert!(
        closed.output.contains("Commands cannot be empty for session type InteractiveCommands"),
        "{:?}",
        closed.output
    );
    assert_eq!(blank.frames.len(), 1, "nothing but channel_closed: {:?}", blank.frames);
    assert!(lab.row(&blank.id).is_none(), "no process started");
}

#[tokio::test]
async fn row9_a_command_that_cannot_start_writes_nothing_and_the_gateway_closes() {
    let lab = Lab::start("seed", &[]);
    let ecs = lab.ecs().await;
    let task = task_arn(&ecs).await;
    lab.control("POST", "/faults", Some(&json!({"missing_programs": ["node"]})));
    let mut channel = open(&ecs, &task, "node -e 'console.log(1)'").await;
    // Resent input before the agent could be ready is never acked: nothing but the close.
    channel.input(1, b"x\r").await;
    channel.finish(Duration::from_secs(10)).await;
    let kinds: Vec<&str> = channel.frames.iter().map(|f| f.message_type.as_str()).collect();
    assert_eq!(kinds, [message_type::CHANNEL_CLOSED], "only the gateway's channel_closed");
    let closed = channel.closed.expect("channel_closed");
    assert!(closed.output.contains("Unable to start command"), "{:?}", closed.output);
    assert_eq!(closed.session_id, channel.id);
    let mut exec_failure = open(&ecs, &task, "/no/such/program").await;
    exec_failure.finish(Duration::from_secs(10)).await;
    let kinds: Vec<&str> = exec_failure.frames.iter().map(|f| f.message_type.as_str()).collect();
    assert_eq!(kinds, [message_type::CHANNEL_CLOSED]);
}

#[tokio::test]
async fn row10_the_drain_record_tells_output_the_client_has_from_output_only_a_resend_brings() {
    let lab = Lab::start("seed", &[]);
    let ecs = lab.ecs().await;
    let task = task_arn(&ecs).await;
    let number = |drain: &Value, key: &str| drain[key].as_u64().unwrap_or_else(|| panic!("{key} in {drain}"));

    // A client that reads the output and never acks it. The frame reached it, so nothing needed
    // a resend; the agent resent it all the same, once its 200 ms timeout had passed (no RTT
    // sample ever lowered it), for the whole 2 s drain, then closed with it unacked.
    let mut silent = open(&ecs, &task, "printf drained").await;
    silent.acks = false;
    silent.finish(Duration::from_secs(10)).await;
    assert_eq!(silent.text(), "drained");
    let row = lab.row(&silent.id).expect("process row");
    let drain = &row["drain"];
    let counts: Vec<u64> =
        ["unacked_at_exit", "unacked_lost_at_exit", "unacked_at_close", "frames_lost", "client_frames_lost"]
            .iter()
            .map(|key| number(drain, key))
            .collect();
    assert_eq!(counts, [1, 0, 1, 0, 0], "{drain}");
    assert_eq!(
        (number(drain, "rto_at_exit_ms"), number(drain, "max_rto_ms"), number(drain, "paused_ms")),
        (200, 200, 0)
    );
    assert_eq!(drain["client_attached_at_close"], true);
    assert_eq!(row["unacked_at_close"], 1);
    let lasted = number(drain, "closed_at_ms") - number(drain, "exited_at_ms");
    assert!((1999..3000).contains(&lasted), "the drain lasted {lasted} ms");
    // One tick per 100 ms sleep of the drain (a sleep never ends early, so no more than the
    // drain's length allows).
    // The first resend comes on the third tick after the output went out (it is then older than
    // 200 ms), the next ones on every second tick (two sleeps): each one the client received.
    let ticks = number(drain, "resend_ticks");
    assert!((16..=lasted / 100 + 1).contains(&ticks), "{ticks} resend ticks in {lasted} ms");
    let copies = silent.frames.iter().filter(|f| f.message_type == message_type::OUTPUT_STREAM_DATA).count() as u64;
    assert_eq!(number(drain, "resends"), copies - 1, "{drain}");
    assert!(((ticks - 2) / 2..=ticks / 2).contains(&(copies - 1)), "{copies} copies in {ticks} ticks");

    // Every agent frame lost on the way: the output never reached the client, so only a resend
    // could bring it, and every resend of the drain was lost too.
    lab.control("POST", "/faults", Some(&json!({"drop_rate": 1.0})));
    let mut deaf = open(&ecs, &task, "printf lost").await;
    deaf.finish(Duration::from_secs(10)).await;
    assert_eq!(deaf.text(), "");
    let drain = &lab.row(&deaf.id).expect("process row")["drain"];
    let counts: Vec<u64> = ["unacked_at_exit", "unacked_lost_at_exit", "unacked_at_close", "client_frames_lost"]
        .iter()
        .map(|key| number(drain, key))
        .collect();
    assert_eq!(counts, [1, 1, 1, 0], "{drain}");
    assert!(number(drain, "resends") >= 5, "{drain}");
    assert_eq!(number(drain, "frames_lost"), number(drain, "resends"), "{drain}");
}

const LOGGING: &str = "description = \"seed with exec session logging\"\nextends = \"seed\"\n\n[clusters.alinhou-production]\nexec_logging = \"OVERRIDE\"\n";

#[tokio::test]
async fn row11_session_logging_without_script_fails_and_the_session_still_ends() {
    let lab = Lab::start(LOGGING, &["--session-log-upload-ms", "2000"]);
    let ecs = lab.ecs().await;
    let task = task_arn(&ecs).await;
    let mut channel = open(&ecs, &task, "echo logged").await;
    channel.finish(Duration::from_secs(10)).await;
    assert!(channel.text().contains("logged"));
    assert_eq!(channel.closed.as_ref().map(|c| c.output.as_str()), Some(""));
    let row = lab.row(&channel.id).expect("process row");
    assert_eq!(row["session_log"], "failed: unable to generate log data");
}

#[tokio::test]
async fn row11_session_logging_with_script_delays_the_close_by_the_upload() {
    let scenario =
        format!("{LOGGING}\n[task_definitions.alinhou-production-EvolutionService]\nimage_tools = [\"script\"]\n");
    let lab = Lab::start(&scenario, &["--session-log-upload-ms", "1500"]);
    let ecs = lab.ecs().await;
    let task = task_arn(&ecs).await;
    let mut channel = open(&ecs, &task, "echo logged").await;
    channel.until(Duration::from_secs(10), "the output", |c| c.text().contains("logged")).await;
    let output_at = Instant::now();
    channel.finish(Duration::from_secs(10)).await;
    assert!(output_at.elapsed() >= Duration::from_millis(1500), "closed {:?} after the output", output_at.elapsed());
    assert!(channel.closed.is_some());
    assert_eq!(lab.row(&channel.id).expect("process row")["session_log"], "uploaded");
}

#[tokio::test]
async fn row12_two_sessions_run_one_waits_and_a_fourth_wedges_the_task() {
    let lab = Lab::start("seed", &[]);
    let ecs = lab.ecs().await;
    let task = task_arn(&ecs).await;
    let mut first = open(&ecs, &task, "sh -c 'echo first; read x; echo first-done'").await;
    first.until(Duration::from_secs(10), "the first session", |c| c.text().contains("first")).await;
    let mut second = open(&ecs, &task, "sh -c 'echo second; read x'").await;
    second.until(Duration::from_secs(10), "the second session", |c| c.text().contains("second")).await;
    let mut third = open(&ecs, &task, "echo third").await;
    // While two run, the third waits: no frame at all within a bounded window.
    let got = third.pump(Duration::from_millis(1500)).await;
    assert!(!got && third.frames.is_empty(), "the third must wait, got {:?}", third.frames);
    // A fourth finds both workers busy and the queue full: after 5 × 1 s the agent blocks its
    // control channel for good.
    let mut fourth = open(&ecs, &task, "echo fourth").await;
    wait_until(Duration::from_secs(15), "the fourth session to wedge the task", || {
        lab.row(&fourth.id).filter(|r| r["wedged"] == true)
    });
    // A slot frees: the queued third starts.
    first.input(1, b"x\r").await;
    first.finish(Duration::from_secs(10)).await;
    third.finish(Duration::from_secs(10)).await;
    assert!(third.text().contains("third"), "{:?}", third.text());
    // The fourth, and any later session, never start: no frames and no close.
    let mut fifth = open(&ecs, &task, "echo fifth").await;
    second.input(1, b"x\r").await;
    second.finish(Duration::from_secs(10)).await;
    for channel in [&mut fourth, &mut fifth] {
        let got = channel.pump(Duration::from_millis(1500)).await;
        assert!(!got && channel.frames.is_empty(), "a wedged session got {:?}", channel.frames);
    }
    wait_until(Duration::from_secs(5), "the fifth session's wedge row", || {
        lab.row(&fifth.id).filter(|r| r["wedged"] == true)
    });
    let wedged: Vec<Value> = lab.processes().into_iter().filter(|r| r["wedged"] == true).collect();
    assert_eq!(wedged.len(), 2, "{wedged:?}");
    assert!(wedged.iter().all(|r| r["pgid"] == 0 && r["alive"] == false), "{wedged:?}");
}

#[tokio::test]
async fn row5_row6_first_output_after_1_s_in_reads_of_at_most_1024_bytes_plus_a_held_character() {
    let lab = Lab::start("seed", &["--agent-delay-ms", "1000"]);
    let ecs = lab.ecs().await;
    let task = task_arn(&ecs).await;
    // 3000 bytes of `é` (2 bytes each): 1024-byte reads end inside a character.
    let mut channel = open(&ecs, &task, "node -e 'process.stdout.write(\"\\u00e9\".repeat(1500))'").await;
    let opened = Instant::now();
    channel.until(Duration::from_secs(10), "the first output", |c| !c.output.is_empty()).await;
    assert!(opened.elapsed() >= Duration::from_millis(1000), "first output after {:?}", opened.elapsed());
    channel.finish(Duration::from_secs(10)).await;
    assert_eq!(channel.text(), "é".repeat(1500));
    let outputs: Vec<&Frame> =
        channel.frames.iter().filter(|f| f.message_type == message_type::OUTPUT_STREAM_DATA).collect();
    assert!(outputs.len() >= 3, "{} output frames", outputs.len());
    for frame in outputs {
        assert!(frame.payload.len() <= 1024 + 3, "a {}-byte frame", frame.payload.len());
        assert!(std::str::from_utf8(&frame.payload).is_ok(), "every frame ends on a character boundary");
    }
    let kinds: Vec<&str> = channel.frames.iter().map(|f| f.message_type.as_str()).collect();
    assert!(!kinds.contains(&message_type::AGENT_SESSION_STATE), "agent_session_state stays with the gateway");
}
