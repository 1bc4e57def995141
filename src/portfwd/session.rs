//! One port session's loop: the data channel of one forward, and the local connections its
//! listener accepts.
//!
//! Like the exec loop ([`crate::exec::native`]) it owns the sans-IO [`Session`] and the
//! socket's reading half, hands every frame to the session's one writer task, resumes a dropped
//! socket, and races everything against the set-up limit and Ctrl-C. The agent opens with a Port
//! handshake; the answer ([`handshake::port_response`]) announces
//! [`handshake::PORT_CLIENT_VERSION`], and the agent's version picks the mode
//! ([`handshake::port_mode`]): smux streams, one per accepted connection, with a NOP every 10 s
//! for agents that keep smux keep-alive on; or, for agents too old to multiplex, one connection
//! at a time whose end is the DisconnectToPort flag. Connections are accepted only once the mode
//! is known; what they send before the handshake completes is held by the session (the agent
//! would not take it), and what the agent sends for a connection waits in a backlog while that
//! connection's writer is full (the socket is not read meanwhile: backpressure, not growth).
//!
//! The agent's ConnectToPortError flag carries no stream id: it is sent just before the agent
//! closes the stream it could not connect, so it is given to the next stream the agent closes
//! without having sent anything on it. That local connection is reset and a [`Notice`] says why;
//! the forward stays up. Ctrl-C sends the TerminateSession flag, closes the socket (bounded) and
//! returns [`Error::Interrupted`]; the caller ends the session with TerminateSession.

use super::{Notice, destination};
use crate::aws::Aws;
use crate::error::{Error, ExecKind, Result};
use crate::exec::link::{Dialer, Link, LinkEvent, SocketSink, keepalive as ping_frame, redial, token_frame};
use crate::exec::native::{AbortOnDrop, Grant, epoch_ms, mono_ms, seconds, sleep_until_opt, watch_task};
use crate::exec::resume::{Resumes, SHELL_BUDGET};
use crate::exec::ssm::handshake::{self, PortMode};
use crate::exec::ssm::smux::{Mux, MuxEvent};
use crate::exec::ssm::{Event, PayloadType, Session};
use crate::exec::target::ExecTarget;
use crate::exec::websocket;
use crate::exec::writer::{FaultKind, Outlet, Writer};
use futures::StreamExt;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, Message};

/// Flag payloads (PayloadType 10, u32 big-endian).
const FLAG_DISCONNECT_TO_PORT: u32 = 1;
const FLAG_TERMINATE_SESSION: u32 = 2;
const FLAG_CONNECT_TO_PORT_ERROR: u32 = 3;

/// Bytes sent to the agent and not yet acknowledged at most; local reads wait beyond.
const MAX_UNACKED_BYTES: usize = 256 * 1024;
/// Frames that may wait for the socket's writer.
const WRITE_QUEUE: usize = 64;
/// How long one socket write may take before the socket counts as dropped.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Chunks that may wait for one local connection's writer (at most 1 KiB each from the agent
/// in basic mode, 32 KiB in smux mode).
const LOCAL_WRITE_QUEUE: usize = 64;
/// How long a local client may leave its connection unread before it is given up.
const LOCAL_WRITE_STALL: Duration = Duration::from_secs(120);
/// How long a closed local connection may take to take what was queued for it.
const LOCAL_CLOSE_BOUND: Duration = Duration::from_secs(30);
/// One read from a local connection.
const READ_CHUNK: usize = 16 * 1024;
/// How often the socket is pinged.
const PING_EVERY: Duration = Duration::from_secs(60);
/// How long Ctrl-C may spend getting the TerminateSession flag out.
const INTERRUPT_FLUSH: Duration = Duration::from_millis(300);

/// What one forward's session needs.
pub struct Forward {
    /// The forward's index on the command line (for notices).
    pub index: usize,
    pub remote: u16,
    pub host: Option<String>,
    pub listener: TcpListener,
    pub notices: mpsc::UnboundedSender<Notice>,
    /// The set-up limit: until the handshake completes.
    pub setup_until: tokio::time::Instant,
    pub setup_limit: Duration,
    pub setup_fix: String,
    pub watchdog_every: Duration,
    /// Ends the session cleanly (the TerminateSession flag, then `Ok`) when it fires or its
    /// sender is dropped: a caller that needed the forward for one exchange (`evoctl metrics`).
    /// `None`: the session runs until Ctrl-C or a failure.
    pub stop: Option<oneshot::Receiver<()>>,
}

/// The sending half of a local connection, for its writer task. Closing it shuts the write
/// side down (the client reads end of file); dropping it does not, so a reset connection ends
/// with an RST alone when its reading half goes.
struct LocalOut(Option<OwnedWriteHalf>);

impl Outlet for LocalOut {
    type Item = Vec<u8>;

    async fn write(&mut self, item: Vec<u8>) -> std::result::Result<(), String> {
        match self.0.as_mut() {
            Some(half) => half.write_all(&item).await.map_err(|e| e.to_string()),
            None => Err("closed".into()),
        }
    }

    async fn close(&mut self) {
        if let Some(half) = self.0.as_mut() {
            let _ = half.shutdown().await;
        }
    }
}

impl Drop for LocalOut {
    fn drop(&mut self) {
        if let Some(half) = self.0.take() {
            half.forget();
        }
    }
}

/// A local connection.
struct Conn {
    peer: SocketAddr,
    writer: Option<Writer<LocalOut>>,
    /// Resets the connection (RST) instead of closing it.
    reset: Option<oneshot::Sender<()>>,
    /// Its reader task, stopped with the connection (left to finish a reset).
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }
}

impl Conn {
    /// Let what was queued go, then shut the write side (the client reads end of file).
    fn close_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            tokio::spawn(writer.close(LOCAL_CLOSE_BOUND));
        }
    }

    /// Reset the connection: what is queued is dropped, the client sees an RST.
    fn reset(mut self) {
        if let Some(reset) = self.reset.take() {
            let _ = reset.send(());
        }
        // The reader sets the zero linger and lets the socket go.
        self.reader = None;
        self.writer = None;
    }
}

/// What a local connection's reader reports.
enum Local {
    Read(u32, Vec<u8>),
    Eof(u32),
}

/// How the session carries connections, once the handshake said.
enum Carrier {
    Mux { mux: Mux, keepalive: Option<tokio::time::Interval> },
    Basic { current: Option<u32>, next_id: u32 },
}

/// Run one forward's session until Ctrl-C, a failure, or the session's end.
pub(crate) async fn run(aws: &Aws, target: &ExecTarget, grant: &Grant, mut forward: Forward) -> Result<()> {
    let dialer = Dialer {
        ssm: aws.ssm(),
        session_id: grant.session_id.clone(),
        stream_url: grant.stream_url.clone(),
        tls: aws.websocket_tls()?,
        limit: websocket::connect_timeout()?,
    };
    let session_id = grant.session_id.as_str();
    let where_to = destination(forward.host.as_deref(), forward.remote);
    let mut link = Link::Dialling { dial: dialer.first(grant.token.clone()), first: true };
    let mut writer = Writer::<SocketSink>::spawn(WRITE_QUEUE, WRITE_STALL);
    let mut resumes = Resumes::new(SHELL_BUDGET);
    let mut session = Session::with_random_ids(Box::new(epoch_ms));
    let mut carrier: Option<Carrier> = None;
    let mut opened = false;
    let mut dialled_before = false;
    let (local_tx, mut local_rx) = mpsc::channel::<Local>(64);
    let mut conns: BTreeMap<u32, Conn> = BTreeMap::new();
    // Data from the agent for a connection whose writer is full.
    let mut backlog: VecDeque<(u32, Vec<u8>)> = VecDeque::new();
    // Basic mode: what the agent sent while no connection was there.
    let mut unclaimed: Vec<u8> = Vec::new();
    let mut connect_errors = 0usize;
    let (alarm_tx, mut alarm) = mpsc::channel::<Error>(1);
    let _watchdog = AbortOnDrop(tokio::spawn(watch_task(aws.ecs(), target.clone(), forward.watchdog_every, alarm_tx)));
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let interrupt = crate::interrupt::wait();
    tokio::pin!(interrupt);
    let stop = forward.stop.take();
    let stop = async move {
        match stop {
            Some(stop) => {
                let _ = stop.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);

    loop {
        while let Some(event) = session.poll_event() {
            match event {
                Event::HandshakeRequest(request) => {
                    let read = handshake::read_port_request(&request);
                    let body = serde_json::to_vec(&handshake::port_response(&request)).expect("serialises");
                    session.send_handshake(PayloadType::HandshakeResponse, body, mono_ms());
                    if !read.refused.is_empty() {
                        flush(&mut session, &writer);
                        writer.close(INTERRUPT_FLUSH).await;
                        return Err(Error::exec(
                            ExecKind::Protocol,
                            format!(
                                "the agent asked for {}, which a port session does not use (session {session_id})",
                                read.refused.join(" and ")
                            ),
                            format!(
                                "check that the target is the ECS Exec agent of a task (`evoctl doctor {}`)",
                                target.env
                            ),
                        ));
                    }
                    let mode = handshake::port_mode(&read.agent_version, &read.properties);
                    tracing::info!(session = %session_id, agent = %read.agent_version, ?mode, "port session handshake");
                    carrier = Some(match mode {
                        PortMode::Mux { keepalive } => Carrier::Mux {
                            mux: Mux::new(),
                            keepalive: keepalive.then(|| {
                                let every = Duration::from_millis(handshake::KEEPALIVE_EVERY_MS);
                                tokio::time::interval_at(tokio::time::Instant::now() + every, every)
                            }),
                        },
                        PortMode::Basic => Carrier::Basic { current: None, next_id: 1 },
                    });
                }
                Event::HandshakeComplete(_) => {
                    opened = true;
                    let multiplexed = matches!(carrier, Some(Carrier::Mux { .. }));
                    let _ = forward.notices.send(Notice::Opened {
                        forward: forward.index,
                        session_id: session_id.to_owned(),
                        multiplexed,
                    });
                }
                Event::Output(bytes) => match &mut carrier {
                    Some(Carrier::Mux { mux, .. }) => {
                        mux.receive(&bytes).map_err(|err| {
                            Error::exec(
                                ExecKind::Protocol,
                                format!("the agent's stream of session {session_id} broke: {err}"),
                                "start the forward again",
                            )
                        })?;
                        while let Some(event) = mux.poll_event() {
                            match event {
                                MuxEvent::Data { stream_id, bytes } => backlog.push_back((stream_id, bytes)),
                                MuxEvent::Closed { stream_id, received } => {
                                    let failed = !received && connect_errors > 0;
                                    if failed {
                                        connect_errors -= 1;
                                    }
                                    if let Some(mut conn) = conns.remove(&stream_id) {
                                        if failed {
                                            let _ = forward.notices.send(Notice::ConnectFailed {
                                                forward: forward.index,
                                                peer: conn.peer.to_string(),
                                                destination: where_to.clone(),
                                            });
                                            conn.reset();
                                            mux.close(stream_id);
                                        } else {
                                            // Its reader reports the client's end; the writer
                                            // takes what is queued first.
                                            flush_backlog_of(stream_id, &mut backlog, &conn);
                                            conn.close_writer();
                                            conns.insert(stream_id, conn);
                                        }
                                    }
                                }
                                MuxEvent::Refused { stream_id } => {
                                    tracing::debug!(stream_id, "the agent opened a stream; refused");
                                }
                            }
                        }
                    }
                    Some(Carrier::Basic { current: Some(id), .. }) => backlog.push_back((*id, bytes)),
                    Some(Carrier::Basic { current: None, .. }) => unclaimed.extend_from_slice(&bytes),
                    None => tracing::debug!(len = bytes.len(), "output before the handshake; dropped"),
                },
                Event::Other { payload_type, payload } if payload_type == PayloadType::Flag.as_u32() => {
                    let flag = payload.first_chunk::<4>().map(|b| u32::from_be_bytes(*b));
                    if flag == Some(FLAG_CONNECT_TO_PORT_ERROR) {
                        connect_errors += 1;
                    } else {
                        tracing::debug!(?flag, "flag from the agent ignored");
                    }
                }
                Event::ChannelClosed(closed) => {
                    writer.close(INTERRUPT_FLUSH).await;
                    let said = closed.output.trim().trim_start_matches("----------ERROR-------").trim().to_owned();
                    let why = if said.is_empty() { String::new() } else { format!(": {said}") };
                    return Err(if opened {
                        Error::exec(
                            ExecKind::Transport,
                            format!("port session {session_id} was closed by Session Manager{why}"),
                            "start the forward again (a session ends after 20 minutes idle, or when the task's agent restarts)",
                        )
                    } else {
                        Error::exec(
                            ExecKind::Handshake,
                            format!("the agent ended port session {session_id} before it opened{why}"),
                            format!(
                                "check that something listens on {where_to} and that the task can reach it (`evoctl doctor {}`)",
                                target.env
                            ),
                        )
                    });
                }
                Event::Invalid(err) => tracing::debug!(%err, "dropped an invalid frame"),
                other => tracing::trace!(?other, "ignored event"),
            }
        }
        // The basic mode's one connection takes what arrived before it.
        if let Some(Carrier::Basic { current: Some(id), .. }) = &carrier
            && !unclaimed.is_empty()
        {
            backlog.push_back((*id, std::mem::take(&mut unclaimed)));
        }
        // What the multiplexer wrote goes out as Output messages.
        if let Some(Carrier::Mux { mux, .. }) = &mut carrier
            && mux.has_outgoing()
        {
            session.send_data(&mux.take_outgoing(), mono_ms());
        }
        let blocked = deliver(&mut backlog, &conns);
        if link.is_up() {
            flush(&mut session, &writer);
        }

        let up = link.is_up();
        let timer = session
            .next_timeout()
            .filter(|_| up)
            .map(|at| tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(mono_ms())));
        let setup = (!opened).then_some(forward.setup_until);
        let writer_room = writer.has_room();
        let read_socket = writer_room && backlog.is_empty() && unclaimed.len() < 4 * 1024 * 1024;
        let accepting = match &carrier {
            Some(Carrier::Mux { .. }) => true,
            Some(Carrier::Basic { current, .. }) => current.is_none(),
            None => false,
        };
        let keepalive_due = async {
            match &mut carrier {
                Some(Carrier::Mux { keepalive: Some(every), .. }) => {
                    every.tick().await;
                }
                _ => std::future::pending::<()>().await,
            }
        };
        let local_room = async {
            match blocked.and_then(|id| conns.get(&id)).and_then(|c| c.writer.as_ref()) {
                Some(w) => tokio::select! {
                    () = w.room() => None,
                    fault = w.fault() => Some(fault.kind),
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = link.next(read_socket) => match event {
                LinkEvent::Dialled(Ok(dialled)) => {
                    let (sink, reader) = (*dialled.socket).split();
                    writer.attach(sink, vec![token_frame(&dialled.token), ping_frame()]);
                    link = Link::Up { reader, delivered: false };
                    if dialled_before {
                        let _ = forward.notices.send(Notice::Resumed { forward: forward.index, session_id: session_id.to_owned() });
                    }
                    dialled_before = true;
                }
                LinkEvent::Dialled(Err(failure)) if !failure.retry => return Err(failure.error),
                LinkEvent::Dialled(Err(failure)) => {
                    link = redial(&dialer, &mut resumes, &mut writer, &failure.error.to_string())?;
                }
                LinkEvent::Received(Some(Ok(message))) => {
                    link.take(message, mono_ms(), &mut session, &dialer, &mut resumes, &mut writer)?;
                }
                LinkEvent::Received(Some(Err(tungstenite::Error::Capacity(err)))) => {
                    return Err(Error::exec(
                        ExecKind::Protocol,
                        format!("the data channel of session {session_id} sent more than a frame can hold ({err})"),
                        "something between you and ssmmessages is not speaking the Session Manager protocol: check proxies and the stream URL",
                    ));
                }
                LinkEvent::Received(Some(Err(err))) => {
                    link = redial(&dialer, &mut resumes, &mut writer, &format!("the socket failed ({err})"))?;
                }
                LinkEvent::Received(None) => {
                    link = redial(&dialer, &mut resumes, &mut writer, "the socket ended")?;
                }
            },
            fault = writer.fault(), if up => {
                let why = match fault.kind {
                    FaultKind::Stalled(_) => format!("{} (the path stopped taking data)", fault.kind),
                    FaultKind::Failed(_) => fault.kind.to_string(),
                };
                link = redial(&dialer, &mut resumes, &mut writer, &why)?;
            }
            _ = writer.room(), if up && !writer_room => {}
            fault = local_room => {
                if let (Some(kind), Some(id)) = (fault, blocked) {
                    tracing::info!(stream = id, %kind, "a local client stopped taking data; its connection is reset");
                    if let Some(conn) = conns.remove(&id) {
                        conn.reset();
                    }
                    close_stream(&mut carrier, &mut session, id);
                }
            }
            _ = sleep_until_opt(timer) => session.handle_timeout(mono_ms()),
            accepted = forward.listener.accept(), if accepting => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let id = match carrier.as_mut() {
                        Some(Carrier::Mux { mux, .. }) => mux.open_stream(),
                        Some(Carrier::Basic { current, next_id }) => {
                            let id = *next_id;
                            *next_id += 1;
                            *current = Some(id);
                            id
                        }
                        None => unreachable!("connections are accepted once the mode is known"),
                    };
                    tracing::debug!(stream = id, %peer, "local connection accepted");
                    let (read, write) = stream.into_split();
                    let mut local_writer = Writer::<LocalOut>::spawn(LOCAL_WRITE_QUEUE, LOCAL_WRITE_STALL);
                    local_writer.attach(LocalOut(Some(write)), Vec::new());
                    let (reset_tx, reset_rx) = oneshot::channel();
                    let reader = tokio::spawn(read_local(id, read, local_tx.clone(), reset_rx));
                    conns.insert(id, Conn { peer, writer: Some(local_writer), reset: Some(reset_tx), reader: Some(reader) });
                }
                Err(err) => tracing::debug!(%err, "accept failed"),
            },
            Some(local) = local_rx.recv(), if session.unacked_bytes() < MAX_UNACKED_BYTES => match local {
                Local::Read(id, bytes) => match carrier.as_mut() {
                    Some(Carrier::Mux { mux, .. }) => {
                        let _ = mux.write(id, &bytes);
                    }
                    Some(Carrier::Basic { current, .. }) if *current == Some(id) => session.send_data(&bytes, mono_ms()),
                    _ => {}
                },
                Local::Eof(id) => {
                    close_stream(&mut carrier, &mut session, id);
                    let done = match &carrier {
                        Some(Carrier::Mux { mux, .. }) => mux.state(id).is_none(),
                        _ => true,
                    };
                    if done && let Some(mut conn) = conns.remove(&id) {
                        conn.close_writer();
                    }
                }
            },
            () = keepalive_due => {
                if let Some(Carrier::Mux { mux, .. }) = carrier.as_mut() {
                    mux.keepalive();
                }
            }
            Some(err) = alarm.recv() => return Err(err),
            _ = ping.tick() => {
                if up {
                    writer.try_write(ping_frame());
                }
            }
            _ = sleep_until_opt(setup) => {
                let waiting_for = match (&link, &carrier) {
                    (Link::Dialling { .. }, _) => "the data channel was still opening",
                    (_, None) => "the agent had not sent its handshake",
                    (_, Some(_)) => "the agent had not completed its handshake",
                };
                return Err(Error::Timeout {
                    message: format!(
                        "port session {session_id} did not open within {} (the set-up limit): {waiting_for}",
                        seconds(forward.setup_limit)
                    ),
                    fix: Some(forward.setup_fix.clone()),
                });
            }
            () = &mut stop => {
                session.send_stream(PayloadType::Flag, FLAG_TERMINATE_SESSION.to_be_bytes().to_vec(), mono_ms());
                if link.is_up() {
                    flush(&mut session, &writer);
                }
                writer.close(INTERRUPT_FLUSH).await;
                tracing::debug!(session = %session_id, "port session ended by its caller");
                return Ok(());
            }
            signal = &mut interrupt => {
                session.send_stream(PayloadType::Flag, FLAG_TERMINATE_SESSION.to_be_bytes().to_vec(), mono_ms());
                if link.is_up() {
                    flush(&mut session, &writer);
                }
                writer.close(INTERRUPT_FLUSH).await;
                return Err(Error::Interrupted {
                    signal,
                    message: format!("interrupted ({}): port session {session_id} was ended", signal.name()),
                    fix: None,
                });
            }
        }
    }
}

/// Hand what the session has to send to the socket's writer, while it has room.
fn flush(session: &mut Session, writer: &Writer<SocketSink>) {
    while writer.has_room() {
        let Some(bytes) = session.poll_transmit() else { break };
        writer.try_write(Message::Binary(bytes.into()));
    }
}

/// Give each backlog entry to its connection's writer, in order; stop at the first connection
/// whose writer is full and return it. Data for a connection that is gone is dropped.
fn deliver(backlog: &mut VecDeque<(u32, Vec<u8>)>, conns: &BTreeMap<u32, Conn>) -> Option<u32> {
    while let Some((id, _)) = backlog.front() {
        let id = *id;
        match conns.get(&id).and_then(|c| c.writer.as_ref()) {
            Some(writer) if !writer.has_room() => return Some(id),
            Some(writer) => {
                let (_, bytes) = backlog.pop_front().expect("front exists");
                writer.try_write(bytes);
            }
            None => {
                backlog.pop_front();
            }
        }
    }
    None
}

/// Before a connection's writer closes, what the backlog holds for it goes into its queue
/// (as far as there is room; the rest is lost with a client that does not read).
fn flush_backlog_of(id: u32, backlog: &mut VecDeque<(u32, Vec<u8>)>, conn: &Conn) {
    let Some(writer) = conn.writer.as_ref() else { return };
    backlog.retain(|(for_id, bytes)| {
        if *for_id != id {
            return true;
        }
        writer.try_write(bytes.clone());
        false
    });
}

/// The local side of stream `id` is done: FIN (smux), or the DisconnectToPort flag (basic).
fn close_stream(carrier: &mut Option<Carrier>, session: &mut Session, id: u32) {
    match carrier.as_mut() {
        Some(Carrier::Mux { mux, .. }) => mux.close(id),
        Some(Carrier::Basic { current, .. }) if *current == Some(id) => {
            *current = None;
            session.send_stream(PayloadType::Flag, FLAG_DISCONNECT_TO_PORT.to_be_bytes().to_vec(), mono_ms());
        }
        _ => {}
    }
}

/// Read one local connection until its end, then wait: a reset request sets a zero linger
/// (the close becomes an RST); the read half lives until the connection is dropped.
async fn read_local(id: u32, mut read: OwnedReadHalf, tx: mpsc::Sender<Local>, mut reset: oneshot::Receiver<()>) {
    let mut buffer = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            asked = &mut reset => {
                if asked.is_ok() {
                    let _ = read.as_ref().set_zero_linger();
                }
                return;
            }
            got = read.read(&mut buffer) => match got {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Local::Read(id, buffer[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
    if tx.send(Local::Eof(id)).await.is_err() {
        return;
    }
    if reset.await.is_ok() {
        let _ = read.as_ref().set_zero_linger();
    }
}
