//! The data channel's socket for the native transport: the first dial to the `streamUrl`
//! ExecuteCommand returned, and after a drop each resume that [`super::resume`] allows
//! (ResumeSession for a new token, then a new websocket). A dial is a future the session loop
//! races against its deadline and Ctrl-C, never one it waits on. A socket's sending half goes to
//! the session's writer task ([`super::writer`]) with the open-data-channel frame that presents
//! the token first; the loop keeps the reading half. Tokens live only in memory.

use super::resume::{GiveUp, Resumes};
use super::ssm::messages::OpenDataChannel;
use super::websocket::{self, Socket};
use super::writer::Writer;
use crate::aws::sdk_failure;
use crate::error::{Error, ExecKind, Result};
use futures::StreamExt;
use futures::stream::{SplitSink, SplitStream};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, Message};

/// The socket's sending half, written only by the session's writer task.
pub type SocketSink = SplitSink<Socket, Message>;

/// An open websocket (boxed: it is large, and moves through the loop's events) and the token to
/// present on it.
pub struct Dialled {
    pub socket: Box<Socket>,
    pub token: String,
}

/// A dial that failed; `retry` says whether another attempt can help.
pub struct DialFailure {
    pub error: Error,
    pub retry: bool,
}

/// A dial in progress: the first websocket, or a resume.
pub type Dial = Pin<Box<dyn Future<Output = std::result::Result<Dialled, DialFailure>> + Send>>;

/// The data channel: being dialled, or up.
pub enum Link {
    Dialling { dial: Dial, first: bool },
    Up { reader: SplitStream<Socket>, delivered: bool },
}

pub enum LinkEvent {
    Dialled(std::result::Result<Dialled, DialFailure>),
    Received(Option<std::result::Result<Message, tungstenite::Error>>),
}

impl Link {
    pub fn is_up(&self) -> bool {
        matches!(self, Link::Up { .. })
    }

    /// A message from the gateway: the first data or pong of a connection marks it delivered
    /// (which ends the resume budget's run of failures), data goes to `session`, a close is a
    /// drop to resume from.
    pub fn take(
        &mut self,
        message: Message,
        now_ms: u64,
        session: &mut super::ssm::Session,
        dialer: &Dialer,
        resumes: &mut Resumes,
        writer: &mut Writer<SocketSink>,
    ) -> Result<()> {
        if let Link::Up { delivered, .. } = self
            && !*delivered
            && matches!(message, Message::Binary(_) | Message::Text(_) | Message::Pong(_))
        {
            *delivered = true;
            resumes.delivered();
        }
        match message {
            Message::Binary(bytes) => session.receive(&bytes, now_ms),
            Message::Text(text) => session.receive(text.as_bytes(), now_ms),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(_) => *self = redial(dialer, resumes, writer, "the gateway closed the socket")?,
        }
        Ok(())
    }

    /// The dial's outcome, or the socket's next message (only when `read`).
    pub async fn next(&mut self, read: bool) -> LinkEvent {
        match self {
            Link::Dialling { dial, .. } => LinkEvent::Dialled(dial.as_mut().await),
            Link::Up { reader, .. } if read => LinkEvent::Received(reader.next().await),
            Link::Up { .. } => std::future::pending().await,
        }
    }

    /// What a deadline met in this state was waiting for.
    pub fn waiting_for(&self, seen_output: bool) -> &'static str {
        match self {
            Link::Dialling { first: true, .. } => "the data channel was still opening",
            Link::Dialling { first: false, .. } => "the data channel was being resumed",
            Link::Up { .. } if seen_output => "the command was still running",
            Link::Up { .. } => "the command had not started producing output",
        }
    }
}

/// What a dial needs; cloned into each dial so the loop can race it.
#[derive(Clone)]
pub struct Dialer {
    pub ssm: aws_sdk_ssm::Client,
    pub session_id: String,
    pub stream_url: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub limit: Duration,
}

impl Dialer {
    /// The first websocket, for the token ExecuteCommand returned. It is not retried: a data
    /// channel that does not open is the error.
    pub fn first(&self, token: String) -> Dial {
        let dialer = self.clone();
        Box::pin(async move {
            let socket = websocket::open(&dialer.stream_url, dialer.tls, dialer.limit)
                .await
                .map_err(|error| DialFailure { error, retry: false })?;
            Ok(Dialled { socket: Box::new(socket), token })
        })
    }

    /// After `wait`, ResumeSession for a fresh token, then a new websocket to the stream URL.
    pub fn resume(&self, wait: Duration) -> Dial {
        let dialer = self.clone();
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            let (token, url) = resume_session(&dialer.ssm, &dialer.session_id).await?;
            let socket = websocket::open(url.as_deref().unwrap_or(&dialer.stream_url), dialer.tls, dialer.limit)
                .await
                .map_err(|error| DialFailure { error, retry: true })?;
            Ok(Dialled { socket: Box::new(socket), token })
        })
    }
}

/// The socket is gone (`why`): give the writer's outlet up and start the next resume, or give
/// the session up.
pub fn redial(dialer: &Dialer, resumes: &mut Resumes, writer: &mut Writer<SocketSink>, why: &str) -> Result<Link> {
    writer.detach();
    let session = &dialer.session_id;
    match resumes.next_attempt() {
        Ok(wait) => {
            tracing::info!(%session, resumes = resumes.total(), in_a_row = resumes.in_a_row(), %why, "data channel dropped; resuming");
            Ok(Link::Dialling { dial: dialer.resume(wait), first: false })
        }
        Err(GiveUp::FailedInARow(attempts)) => Err(Error::exec(
            ExecKind::Transport,
            format!(
                "the data channel of session {session} dropped and could not be resumed: {attempts} attempts in a row failed (the last: {why})"
            ),
            "check the network path to ssmmessages (proxy, VPC endpoint, firewall) and retry",
        )),
        Err(GiveUp::BudgetSpent(resumed)) => Err(Error::exec(
            ExecKind::Transport,
            format!(
                "the data channel of session {session} kept dropping: it was resumed {resumed} times, the most one session may be (the last drop: {why})"
            ),
            "check the network path to ssmmessages (proxy, VPC endpoint, firewall) and retry",
        )),
    }
}

/// The open-data-channel frame that presents `token` on a new socket (held by the printer's
/// sanitiser first: no output may show it).
pub fn token_frame(token: &str) -> Message {
    crate::output::sanitize::hold(token);
    let open = OpenDataChannel {
        message_schema_version: "1.0".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        token_value: token.to_owned(),
        client_id: uuid::Uuid::new_v4().to_string(),
        client_version: Some(client_version()),
    };
    Message::Text(serde_json::to_string(&open).expect("token frame serialises").into())
}

pub fn keepalive() -> Message {
    Message::Ping("keepalive".as_bytes().to_vec().into())
}

/// ResumeSession: a fresh token for the session (and the stream URL, if the service names one).
/// A session that no longer exists, or a caller that may not resume it, is not retried.
async fn resume_session(
    ssm: &aws_sdk_ssm::Client,
    session_id: &str,
) -> std::result::Result<(String, Option<String>), DialFailure> {
    let out = ssm.resume_session().session_id(session_id).send().await.map_err(|e| {
        let failure = sdk_failure("ResumeSession", e);
        let retry = !matches!(
            failure.code.as_str(),
            "DoesNotExistException" | "AccessDeniedException" | "AccessDenied" | "InvalidParameters"
        );
        let error = if retry {
            // A reason in the message of the session's end, if the attempts run out.
            Error::exec(
                ExecKind::Transport,
                format!("ResumeSession failed ({}: {})", failure.code, failure.message),
                "run the command again",
            )
        } else {
            Error::exec(
                ExecKind::Transport,
                format!(
                    "the data channel dropped and session {session_id} could not be resumed ({}: {})",
                    failure.code, failure.message
                ),
                "run the command again",
            )
        };
        DialFailure { error, retry }
    })?;
    let Some(token) = out.token_value() else {
        let error = Error::exec(
            ExecKind::Transport,
            format!("session {session_id} timed out (ResumeSession returned no token)"),
            "run the command again",
        );
        return Err(DialFailure { error, retry: false });
    };
    Ok((token.to_owned(), out.stream_url().map(str::to_owned)))
}

/// How evoctl names itself to the agent.
pub fn client_version() -> String {
    format!("evoctl-{}", env!("CARGO_PKG_VERSION"))
}
