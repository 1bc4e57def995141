//! A stand-in for the official `session-manager-plugin`, for testing `--backend aws-cli`
//! without the real binary: same arguments, same stdout lines, same exit status (always 0),
//! and the same flaw — it stops at the first stdin EOF after output began and prints
//! `Cannot perform start session: EOF`, cutting the output short.
//!
//! Test knobs (environment): `EVOCTL_FAKE_PLUGIN_ARGV_LOG` appends the argv it got to a file;
//! `EVOCTL_FAKE_PLUGIN_CUT_AFTER` stops after that many output bytes as if stdin hit EOF.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::exec::ssm::messages::OpenDataChannel;
use crate::exec::ssm::{Event, Role, Session};
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
            if let Err(message) = session(&text).await {
                say(&format!("Cannot perform start session: {message}\n"));
            }
        }
    }
    std::process::ExitCode::SUCCESS
}

async fn session(session_json: &str) -> Result<(), String> {
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
    let mut session = Session::with_random_ids(Role::Client);
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
