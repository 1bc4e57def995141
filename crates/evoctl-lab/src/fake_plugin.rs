//! A stand-in for the official `session-manager-plugin`, for testing `--backend aws-cli`
//! without the real binary: same arguments, same stdout lines, same exit status (always 0),
//! and the same flaw — it stops at the first stdin EOF after output began and prints
//! `Cannot perform start session: EOF`, cutting the output short.
//!
//! The data channel runs on the lab's own client link ([`crate::plugin_link`]), written from
//! the real plugin's rules; from evoctl-ssm it takes only frames, message bodies and crypto.
//! KMS-encrypted sessions work as in the plugin: it answers the agent's handshake with a
//! GenerateDataKey (region from argument 2, target from argument 5, endpoint from the usual
//! AWS environment; a failure goes back to the agent as a failed KMSEncryption action), answers
//! the encryption challenge, prints the agent's customer message and seals keystrokes.
//!
//! Test knobs (environment): `EVOCTL_FAKE_PLUGIN_ARGV_LOG` appends the argv it got to a file;
//! `EVOCTL_FAKE_PLUGIN_CUT_AFTER` stops after that many output bytes as if stdin hit EOF.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::plugin_link::{self, CLIENT_VERSION, LinkEvent, PluginLink};
use evoctl_ssm::crypto::{DATA_KEY_LEN, SessionCipher, Side};
use evoctl_ssm::messages::{HandshakeRequest, HandshakeResponse, OpenDataChannel};
use futures::{SinkExt, StreamExt};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
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
        Some("--version") => say(&format!("{CLIENT_VERSION}\n")),
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
        client_version: Some(CLIENT_VERSION.into()),
    };
    socket
        .send(Message::Text(serde_json::to_string(&open).map_err(|e| e.to_string())?.into()))
        .await
        .map_err(|e| e.to_string())?;
    let mut link = PluginLink::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(plugin_link::TICK_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 1024];
    let mut reading_stdin = false;
    let mut written = 0usize;
    loop {
        while let Some(bytes) = link.poll_transmit() {
            socket.send(Message::Binary(bytes.into())).await.map_err(|e| e.to_string())?;
        }
        while let Some(event) = link.poll_event() {
            match event {
                LinkEvent::Output(bytes) => {
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
                LinkEvent::HandshakeRequest(request) => {
                    let (response, cipher) = answer_handshake(&request, &id, region, target).await;
                    if let Some(cipher) = cipher {
                        link.enable_encryption(cipher);
                    }
                    link.send_handshake_response(&response, now_ms());
                }
                LinkEvent::HandshakeComplete(done) if !done.customer_message.is_empty() => {
                    say(&format!("{}\n", done.customer_message));
                }
                LinkEvent::ChannelClosed(closed) => {
                    if closed.output.is_empty() {
                        say(&format!("\n\nExiting session with sessionId: {id}.\n\n"));
                    } else {
                        say(&format!("\n\nSessionId: {id} : {}\n\n", closed.output));
                    }
                    return Ok(());
                }
                // The plugin terminates the session and leaves quietly.
                LinkEvent::GaveUp => return Ok(()),
                LinkEvent::HandshakeComplete(_) | LinkEvent::Dropped(_) => {}
            }
        }
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Binary(bytes))) => link.receive(&bytes, now_ms()),
                Some(Ok(Message::Text(text))) => link.receive(text.as_bytes(), now_ms()),
                Some(Ok(_)) => {}
                _ => return Err("websocket closed".into()),
            },
            read = stdin.read(&mut buffer), if reading_stdin => match read {
                Ok(0) | Err(_) => return Err("EOF".into()),
                Ok(n) => {
                    let data = if &buffer[..n] == b"\n" { &b"\r"[..] } else { &buffer[..n] };
                    link.send_input(data, now_ms());
                }
            },
            _ = ticker.tick() => link.tick(now_ms()),
        }
    }
}

/// The plugin's handshake answer: for KMS sessions a data key bound to the session and the
/// target (it does not acknowledge the random challenge, like the plugin read for this lab),
/// and the cipher to use from then on. A GenerateDataKey failure is reported to the agent in
/// the KMSEncryption action, as the plugin does.
async fn answer_handshake(
    request: &HandshakeRequest,
    session_id: &str,
    region: &str,
    target: &str,
) -> (HandshakeResponse, Option<SessionCipher>) {
    let Some(key_id) = plugin_link::requested_kms_key(request) else {
        return (plugin_link::handshake_response(request, None, CLIENT_VERSION), None);
    };
    // The plugin never acknowledges the agent's random challenge, so the key is bound to the
    // session and target only.
    let context = crate::agent_handshake::encryption_context(session_id, target, None);
    let keys = generate_data_key(region, &key_id, &context).await.and_then(|(plaintext, ciphertext)| {
        let cipher = SessionCipher::new(&plaintext, Side::Client).map_err(|e| e.to_string())?;
        Ok((cipher, ciphertext))
    });
    match keys {
        Ok((cipher, ciphertext)) => {
            (plugin_link::handshake_response(request, Some(Ok(&ciphertext)), CLIENT_VERSION), Some(cipher))
        }
        Err(err) => (plugin_link::handshake_response(request, Some(Err(err)), CLIENT_VERSION), None),
    }
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
