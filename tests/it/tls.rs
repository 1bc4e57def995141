//! The lab over TLS (`evoctl-lab serve --tls`) against clients nobody here wrote: the AWS CLI
//! (botocore) trusts the lab only through the `AWS_CA_BUNDLE` the ready file hands out, reaches
//! it through a real HTTP proxy (Debian's tinyproxy) with `HTTPS_PROXY` and around the proxy with
//! `NO_PROXY`; and ExecuteCommand's data channel is a `wss://` websocket on the same port.
//!
//! [`TlsLab`] speaks to the lab's https control API with a small rustls client of its own (the
//! shared `support::Lab` talks plain http); [`Proxy`] runs tinyproxy for any test module.

use crate::support::{Lab, clean_command, path_with, text, wait_until};
use assert_cmd::Command;
use evoctl::exec::ssm::frame::{Frame, message_type};
use evoctl::exec::ssm::messages::Acknowledge;
use futures::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// A lab serving HTTPS/WSS under its own private CA, stopped on drop (after the same
/// no-token-in-the-journal check `support::Lab` makes, done over TLS).
pub(crate) struct TlsLab {
    pub lab: Lab,
    client: Arc<rustls::ClientConfig>,
}

impl TlsLab {
    pub(crate) fn start(scenario: &str) -> TlsLab {
        TlsLab::start_with(scenario, &[])
    }

    /// `Lab::start_with(scenario, ["--tls", extra…])`, trusting the CA it wrote.
    pub(crate) fn start_with(scenario: &str, extra: &[&str]) -> TlsLab {
        let lab = Lab::start_with(scenario, &[&["--tls"][..], extra].concat());
        let client = client_config(&PathBuf::from(lab.ready["ca_bundle"].as_str().expect("ca_bundle path")));
        TlsLab { lab, client }
    }

    /// The CA certificate file (the ready file's `ca_bundle`).
    pub(crate) fn ca_bundle(&self) -> PathBuf {
        PathBuf::from(self.lab.ready["ca_bundle"].as_str().expect("ca_bundle path"))
    }

    /// `127.0.0.1:PORT` of the lab's one listener.
    pub(crate) fn host_port(&self) -> String {
        let endpoint = self.lab.ready["aws_endpoint"].as_str().expect("aws_endpoint");
        endpoint.strip_prefix("https://").expect("an https endpoint").to_owned()
    }

    /// `aws` with only the lab's environment (AWS_CA_BUNDLE included) and JSON output.
    pub(crate) fn aws(&self) -> Command {
        let mut command = clean_command("aws", self.lab.dir.path());
        command.envs(self.lab.env()).env("AWS_DEFAULT_OUTPUT", "json").env("AWS_PAGER", "");
        command
    }

    /// A control API call over TLS; panics unless it answers 2xx.
    pub(crate) fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, text) = self.https(method, &format!("/_lab{path}"), body.map(Value::to_string));
        assert!(status < 300, "{method} {path}: {status} {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("control JSON") }
    }

    /// The ARNs of the tasks the lab runs, from its state.
    pub(crate) fn task_arns(&self) -> Vec<String> {
        let state = self.control("GET", "/state", None);
        state["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["taskArn"].as_str().expect("arn").to_owned())
            .collect()
    }

    /// The AWS actions the lab's journal recorded, in order.
    pub(crate) fn journal_actions(&self) -> Vec<String> {
        let journal = self.control("GET", "/journal", None);
        journal.as_array().expect("journal").iter().map(|e| e["action"].as_str().expect("action").to_owned()).collect()
    }

    /// One HTTP/1.1 request over rustls, verifying the server as `127.0.0.1` against the CA.
    fn https(&self, method: &str, path: &str, body: Option<String>) -> (u16, String) {
        let host = self.host_port();
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let connection = rustls::ClientConnection::new(Arc::clone(&self.client), name).expect("TLS client");
        let socket = TcpStream::connect(&host).expect("connect to the lab");
        let mut stream = rustls::StreamOwned::new(connection, socket);
        let body = body.unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("write request");
        let mut response = Vec::new();
        // The bytes read stay in `response` even when the peer skips close_notify.
        if let Err(e) = stream.read_to_end(&mut response) {
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "reading the response: {e}");
        }
        let response = String::from_utf8(response).expect("UTF-8 response");
        let (head, payload) = response.split_once("\r\n\r\n").expect("a response head");
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        (status, if chunked { dechunk(payload) } else { payload.to_owned() })
    }
}

impl Drop for TlsLab {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let journal = serde_json::to_string(&self.control("GET", "/journal", None)).expect("journal serialises");
            for token in self.control("GET", "/tokens", None).as_array().expect("token list") {
                assert!(!journal.contains(token.as_str().expect("token")), "a session token reached the journal");
            }
        }
        // Stopped here, so support::Lab's drop does not try its plain-http control calls.
        self.lab.stop();
    }
}

/// rustls client settings trusting exactly the certificates in `ca_file`.
fn client_config(ca_file: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).expect("CA file") {
        roots.add(certificate.expect("a PEM certificate")).expect("a CA certificate rustls accepts");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn dechunk(mut payload: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = payload.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        payload = &rest[size + 2..];
    }
    out
}

/// A real HTTP proxy: Debian's tinyproxy in the foreground on a free 127.0.0.1 port, logging
/// every request line at `LogLevel Connect`, killed on drop. CI installs it (scripts/test); a
/// missing one fails the test.
pub(crate) struct Proxy {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Proxy {
    /// Start tinyproxy and wait until it accepts connections; a port taken between picking
    /// and binding is retried on another.
    pub(crate) fn start() -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        // tinyproxy drops to its configured user when started as root; with no `User` it keeps
        // the current one, but a world-writable dir keeps the log writable either way.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
        for attempt in 0..5 {
            let port = free_port();
            let config = dir.path().join(format!("tinyproxy-{attempt}.conf"));
            std::fs::write(&config, proxy_config(port, &dir.path().join("tinyproxy.log"))).expect("proxy config");
            let stderr = dir.path().join(format!("tinyproxy-{attempt}.stderr"));
            let mut child = std::process::Command::new("tinyproxy")
                .arg("-d")
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).expect("stderr file"))
                .spawn()
                .expect("tinyproxy must be installed (apt-get install tinyproxy)");
            let up = wait_until(Duration::from_secs(10), "tinyproxy accepting connections or exiting", || {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(true);
                }
                child.try_wait().expect("tinyproxy status").map(|_| false)
            });
            if up {
                return Proxy { child, dir, port };
            }
            let said = std::fs::read_to_string(&stderr).unwrap_or_default();
            assert!(said.contains("Could not create listening sockets"), "tinyproxy exited: {said}");
        }
        panic!("tinyproxy could not bind a free port in 5 attempts");
    }

    /// `http://127.0.0.1:PORT`, for HTTPS_PROXY.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `host:port` of every CONNECT request the proxy logged, in order.
    pub(crate) fn connects(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default();
        connect_targets(&log)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Listen on 127.0.0.1 only, allow only 127.0.0.1, no `ConnectPort` (so CONNECT to any port
/// is allowed), and log at `Connect`, the level that records each request line.
fn proxy_config(port: u16, log: &std::path::Path) -> String {
    format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nMaxClients 20\nLogFile \"{}\"\nLogLevel Connect\n",
        log.display()
    )
}

/// tinyproxy logs a request as
/// `CONNECT   Dec 01 21:48:56.707 [14214]: Request (file descriptor 5): CONNECT 127.0.0.1:9 HTTP/1.1`.
fn connect_targets(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| line.split_once("): CONNECT ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A port that was free a moment ago (bound on port 0, then released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// `aws ecs list-tasks --cluster alinhou-production`, printed as JSON.
const LIST_TASKS: [&str; 4] = ["ecs", "list-tasks", "--cluster", "alinhou-production"];

fn list_tasks_ok(command: &mut Command) -> Vec<String> {
    let output = command.args(LIST_TASKS).output().expect("the AWS CLI must be installed (pip install awscli)");
    assert_eq!(output.status.code(), Some(0), "aws ecs list-tasks: {}", text(&output.stderr));
    let out: Value = serde_json::from_slice(&output.stdout).expect("list-tasks JSON");
    out["taskArns"].as_array().expect("taskArns").iter().map(|a| a.as_str().expect("arn").to_owned()).collect()
}

#[test]
fn the_tls_lab_hands_out_https_urls_and_its_ca_in_the_ready_file() {
    let lab = TlsLab::start("seed");
    let ready = &lab.lab.ready;
    let host = lab.host_port();
    let ca = lab.lab.dir.path().join("ready-ca.pem");
    assert!(host.starts_with("127.0.0.1:"), "{host}");
    assert_eq!(ready["aws_endpoint"], format!("https://{host}"));
    assert_eq!(ready["control"], format!("https://{host}/_lab"));
    assert_eq!(ready["ca_bundle"], ca.display().to_string());
    assert_eq!(lab.ca_bundle(), ca);
    assert_eq!(ready["env"]["AWS_CA_BUNDLE"], ca.display().to_string());
    assert_eq!(ready["env"]["AWS_ENDPOINT_URL"], format!("https://{host}"));
    let pem = std::fs::read_to_string(&ca).expect("the CA file");
    assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 1, "{pem}");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    // The evoctl.toml written for the scenario points its lab URLs (webhooks) at https too.
    let config = std::fs::read_to_string(lab.lab.config_path()).expect("config");
    assert!(config.contains(&format!("\"https://{host}/_lab/webhooks/production\"")), "{config}");

    // Plain http on the TLS port is not served (the connection ends without an HTTP answer).
    let mut socket = TcpStream::connect(&host).expect("connect");
    socket.write_all(b"GET /_lab/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&answer));

    // A lab started without --tls keeps http and a null ca_bundle.
    let plain = Lab::start("seed");
    assert_eq!(plain.ready["ca_bundle"], Value::Null);
    assert!(plain.ready["aws_endpoint"].as_str().expect("endpoint").starts_with("http://127.0.0.1:"));
    assert!(plain.ready["env"].get("AWS_CA_BUNDLE").is_none(), "{}", plain.ready);
}

#[test]
fn the_aws_cli_trusts_the_tls_lab_through_aws_ca_bundle_only() {
    let lab = TlsLab::start("seed");
    let tasks = lab.task_arns();
    assert_eq!(tasks.len(), 1, "seed runs one production task");

    assert_eq!(list_tasks_ok(&mut lab.aws()), tasks);

    let output = lab.aws().env_remove("AWS_CA_BUNDLE").args(LIST_TASKS).output().expect("aws runs");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("SSL validation failed"), "{stderr}");
    assert!(stderr.contains("CERTIFICATE_VERIFY_FAILED"), "{stderr}");
    // The refused call never reached the lab: only the trusted one is in the journal.
    assert_eq!(lab.journal_actions(), ["ListTasks"]);
}

#[test]
fn execute_command_hands_out_a_wss_stream_url_that_works_over_tls() {
    let lab = TlsLab::start("seed");
    let task = lab.task_arns().remove(0);
    // A session-manager-plugin that only keeps the session the AWS CLI hands it.
    let session_file = lab.lab.dir.path().join("session.json");
    let plugin = lab.lab.plugin_script("plugin-bin", &format!("printf '%s' \"$1\" > '{}'", session_file.display()));
    let output = lab
        .aws()
        .env("PATH", path_with(&plugin))
        .args(["ecs", "execute-command", "--cluster", "alinhou-production", "--task", &task, "--interactive"])
        .args(["--command", "echo tls-ok"])
        .output()
        .expect("aws runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let session: Value = serde_json::from_str(&std::fs::read_to_string(&session_file).expect("session")).expect("JSON");
    let session_id = session["sessionId"].as_str().expect("sessionId");
    let stream_url = session["streamUrl"].as_str().expect("streamUrl");
    assert_eq!(
        stream_url,
        format!("wss://{}/v1/data-channel/{session_id}?role=publish_subscribe&cell-number=AAEAAQ", lab.host_port())
    );
    let token = session["tokenValue"].as_str().expect("tokenValue").to_owned();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let output = runtime.block_on(async {
        let connector = tokio_tungstenite::Connector::Rustls(Arc::clone(&lab.client));
        let (mut socket, response) =
            tokio_tungstenite::connect_async_tls_with_config(stream_url, None, false, Some(connector))
                .await
                .expect("the websocket upgrade over TLS");
        assert_eq!(response.status().as_u16(), 101);
        let open = json!({"MessageSchemaVersion": "1.0", "RequestId": "tls-test", "TokenValue": token,
                          "ClientId": "tls-test"});
        socket.send(tokio_tungstenite::tungstenite::Message::Text(open.to_string().into())).await.expect("send token");
        // Output by sequence number (a resent frame lands on itself), each frame acked.
        let mut output = std::collections::BTreeMap::new();
        let read = async {
            while let Some(message) = socket.next().await {
                let tokio_tungstenite::tungstenite::Message::Binary(bytes) = message.expect("a websocket message")
                else {
                    continue;
                };
                let frame = Frame::decode(&bytes).expect("a data channel frame");
                match frame.message_type.as_str() {
                    message_type::OUTPUT_STREAM_DATA => {
                        output.insert(frame.sequence_number, frame.payload.clone());
                        let ack = Acknowledge {
                            message_type: frame.message_type.clone(),
                            message_id: frame.message_id_string(),
                            sequence_number: frame.sequence_number,
                            is_sequential: true,
                        };
                        let payload = serde_json::to_vec(&ack).expect("ack serialises");
                        let id = *uuid::Uuid::new_v4().as_bytes();
                        let reply = Frame::new(message_type::ACKNOWLEDGE, 0, 3, id, 1, 0, payload);
                        let reply = reply.encode().expect("ack encodes");
                        let reply = tokio_tungstenite::tungstenite::Message::Binary(reply.into());
                        socket.send(reply).await.expect("send ack");
                    }
                    message_type::CHANNEL_CLOSED => break,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read).await.expect("the session closes within 30 s");
        output.into_values().flatten().collect::<Vec<u8>>()
    });
    assert_eq!(String::from_utf8_lossy(&output), "tls-ok\r\n");
}

#[test]
fn the_aws_cli_reaches_the_tls_lab_through_an_http_proxy_and_around_it_with_no_proxy() {
    let lab = TlsLab::start("seed");
    let proxy = Proxy::start();
    let tasks = lab.task_arns();

    assert_eq!(list_tasks_ok(lab.aws().env("HTTPS_PROXY", proxy.url())), tasks);
    assert_eq!(proxy.connects(), [lab.host_port()]);

    assert_eq!(list_tasks_ok(lab.aws().env("HTTPS_PROXY", proxy.url()).env("NO_PROXY", "127.0.0.1")), tasks);
    assert_eq!(proxy.connects(), [lab.host_port()], "NO_PROXY=127.0.0.1 bypasses the proxy");
    assert_eq!(lab.journal_actions(), ["ListTasks", "ListTasks"]);
}

#[test]
fn tinyproxy_connect_lines_parse_to_their_targets() {
    let log = "CONNECT   Dec 01 21:48:56.618 [14214]: Connect (file descriptor 5): 127.0.0.1\n\
               CONNECT   Dec 01 21:48:56.707 [14214]: Request (file descriptor 5): CONNECT 127.0.0.1:9 HTTP/1.1\n\
               CONNECT   Dec 01 21:48:57.001 [14214]: Request (file descriptor 6): GET http://x/ HTTP/1.1\n";
    assert_eq!(connect_targets(log), ["127.0.0.1:9"]);
}
