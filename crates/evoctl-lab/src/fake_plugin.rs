//! A stand-in for the official `session-manager-plugin`, for testing `--backend aws-cli`
//! without the real binary: same arguments, same stdout lines, same exit status (always 0),
//! and the same flaw — it stops at the first stdin EOF after output began and prints
//! `Cannot perform start session: EOF`, cutting the output short.
//!
//! KMS-encrypted sessions work as in the plugin: it answers the agent's handshake with a
//! GenerateDataKey (region from argument 2, target from argument 5, endpoint from the usual
//! AWS environment), prints the agent's customer message and seals keystrokes.
//!
//! Test knobs (environment): `EVOCTL_FAKE_PLUGIN_ARGV_LOG` appends the argv it got to a file;
//! `EVOCTL_FAKE_PLUGIN_CUT_AFTER` stops after that many output bytes as if stdin hit EOF.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use evoctl_ssm::crypto::{DATA_KEY_LEN, SessionCipher, Side};
use evoctl_ssm::handshake;
use evoctl_ssm::messages::{HandshakeRequest, OpenDataChannel};
use evoctl_ssm::{Event, NonceSource, PayloadType, Role, Session};
use futures::{SinkExt, StreamExt};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

const BANNER: &str = "\nThe Session Manager plugin was installed successfully. Use the AWS CLI to start a session.\n\n";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1)
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Run as the plugin with these arguments; always exits 0, like the real one.
pub async fn main(args: Vec<String>) -> std::process::ExitCode {
    let log = std::env::var("EVOCTL_FAKE_PLUGIN_ARGV_LOG").ok();
    if let Some(mut file) = log.and_then(|path| std::fs::OpenOptions::new().create(true).append(true).open(path).ok()) {
        let _ = writeln!(file, "{}", args.join(" "));
    }
    match args.first().map(String::as_str) {
        None => say(BANNER),
        Some("--version") => say("1.2.707.0\n"),
        Some(first) => {
            let text = if first.trim_start().starts_with('{') {
                first.to_owned()
            } else {
                std::env::var(first).unwrap_or_default()
            };
            let region = args.get(1).cloned().unwrap_or_default();
            let target = args
                .get(4)
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                .and_then(|t| t.get("Target").and_then(|v| v.as_str()).map(str::to_owned))
                .unwrap_or_default();
            if let Err(message) = session(&text, &region, &target).await {
                say(&format!("Cannot perform start session: {message}\n"));
            }
        }
    }
    std::process::ExitCode::SUCCESS
}

async fn session(session_json: &str, region: &str, target: &str) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(session_json).map_err(|e| e.to_string())?;
    let field = |a: &str, b: &str| value.get(a).or_else(|| value.get(b)).and_then(|v| v.as_str()).map(str::to_owned);
    let id = field("sessionId", "SessionId").ok_or("no SessionId")?;
    let url = field("streamUrl", "StreamUrl").ok_or("no StreamUrl")?;
    let token = field("tokenValue", "TokenValue").ok_or("no TokenValue")?;
    let cut_after: Option<usize> = std::env::var("EVOCTL_FAKE_PLUGIN_CUT_AFTER").ok().and_then(|v| v.parse().ok());
    say(&format!("\nStarting session with SessionId: {id}\n"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.map_err(|e| e.to_string())?;
    let open = OpenDataChannel {
        message_schema_version: "1.0".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        token_value: token,
        client_id: uuid::Uuid::new_v4().to_string(),
        client_version: Some("1.2.707.0".into()),
    };
    socket
        .send(Message::Text(serde_json::to_string(&open).map_err(|e| e.to_string())?.into()))
        .await
        .map_err(|e| e.to_string())?;
    let mut session = Session::with_random_ids(Role::Client, Box::new(now_ms));
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 1024];
    let mut reading_stdin = false;
    let mut written = 0usize;
    loop {
        while let Some(bytes) = session.poll_transmit() {
            socket.send(Message::Binary(bytes.into())).await.map_err(|e| e.to_string())?;
        }
        while let Some(event) = session.poll_event() {
            match event {
                Event::Output(bytes) => {
                    reading_stdin = true;
                    let take = cut_after.map_or(bytes.len(), |cut| cut.saturating_sub(written).min(bytes.len()));
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&bytes[..take]);
                    let _ = out.flush();
                    written += take;
                    if cut_after.is_some_and(|cut| written >= cut) {
                        return Err("EOF".into());
                    }
                }
                Event::HandshakeRequest(request) => {
                    let reply = answer_handshake(&request, &id, region, target, &mut session).await?;
                    session.send_handshake(PayloadType::HandshakeResponse, reply, now_ms());
                }
                Event::HandshakeComplete(done) if !done.customer_message.is_empty() => {
                    say(&format!("{}\n", done.customer_message));
                }
                Event::ChannelClosed(closed) => {
                    if closed.output.is_empty() {
                        say(&format!("\n\nExiting session with sessionId: {id}.\n\n"));
                    } else {
                        say(&format!("\n\nSessionId: {id} : {}\n\n", closed.output));
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        let timer = session
            .next_timeout()
            .map(|at| tokio::time::Instant::now() + std::time::Duration::from_millis(at.saturating_sub(now_ms())));
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Binary(bytes))) => session.receive(&bytes, now_ms()),
                Some(Ok(Message::Text(text))) => session.receive(text.as_bytes(), now_ms()),
                Some(Ok(_)) => {}
                _ => return Err("websocket closed".into()),
            },
            read = stdin.read(&mut buffer), if reading_stdin => match read {
                Ok(0) | Err(_) => return Err("EOF".into()),
                Ok(n) => {
                    let data = if &buffer[..n] == b"\n" { b"\r".to_vec() } else { buffer[..n].to_vec() };
                    session.send_data(&data, now_ms());
                }
            },
            _ = async { match timer { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                session.handle_timeout(now_ms());
            }
        }
    }
}

/// The plugin's handshake answer: a data key for KMS sessions (it does not acknowledge the
/// random challenge, like the plugin read for this lab).
async fn answer_handshake(
    request: &HandshakeRequest,
    session_id: &str,
    region: &str,
    target: &str,
    session: &mut Session,
) -> Result<Vec<u8>, String> {
    let requested = handshake::read_request(request);
    let mut reply = None;
    if let Some(kms) = &requested.kms {
        let context = handshake::encryption_context(session_id, target, None);
        let (plaintext, ciphertext) = generate_data_key(region, &kms.key_id, &context).await?;
        let cipher = SessionCipher::new(&plaintext, Side::Client).map_err(|e| e.to_string())?;
        session.enable_encryption(cipher, NonceSource::Random);
        reply = Some(handshake::KmsReply { ciphertext, challenge_acknowledged: false });
    }
    let response = handshake::response(request, reply.as_ref(), "1.2.707.0");
    serde_json::to_vec(&response).map_err(|e| e.to_string())
}

/// KMS GenerateDataKey as the plugin calls it: the region from its argument, the endpoint and
/// credentials from the usual AWS environment. Returns (plaintext, ciphertext).
async fn generate_data_key(
    region: &str,
    key_id: &str,
    context: &std::collections::BTreeMap<String, String>,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if !region.is_empty() {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    let client = aws_sdk_kms::Client::new(&loader.load().await);
    let failed = |detail: String| format!("Fetching data key failed: {detail}");
    let answer = client
        .generate_data_key()
        .key_id(key_id)
        .number_of_bytes(DATA_KEY_LEN as i32)
        .set_encryption_context(Some(context.clone().into_iter().collect()))
        .send()
        .await
        .map_err(|e| failed(aws_sdk_kms::error::DisplayErrorContext(e).to_string()))?;
    let plaintext = answer.plaintext.ok_or_else(|| failed("no Plaintext in the answer".into()))?.into_inner();
    let ciphertext =
        answer.ciphertext_blob.ok_or_else(|| failed("no CiphertextBlob in the answer".into()))?.into_inner();
    Ok((plaintext, ciphertext))
}
