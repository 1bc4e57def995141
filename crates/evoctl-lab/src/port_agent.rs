//! The lab agent's Port sessions (StartSession with `AWS-StartPortForwardingSession` or
//! `AWS-StartPortForwardingSessionToRemoteHost`), written from amazon-ssm-agent's
//! `agent/session/plugins/port/` and `sessionplugin`, on the lab's own data-channel bookkeeping
//! ([`AgentLink`]) and the rules in [`super::port_rules`]; nothing here is shared with evoctl's
//! client.
//!
//! Per session the agent sends `agent_session_state` Connected, then the HandshakeRequest
//! (SessionType `Port` with the document's properties; input other than the reply is acked
//! and dropped meanwhile) and waits at most 15 s for the HandshakeResponse, whose
//! ClientVersion picks the mode ([`port_mode`]); then HandshakeComplete. A remote host among
//! the metadata addresses ends the session with "Forwarding to IP address … is forbidden.".
//!
//! - **smux** (the client at or above 1.1.70, an agent above 3.0.196.0): the client's Output
//!   payloads are one byte stream into an smux v1 server (the `async_smux` crate, keep-alive
//!   by [`port_mode`]: NOPs every 10 s and the session closed after 30 s without a frame from
//!   the client); what the server writes is read back in reads of at most 1024 bytes, one
//!   Output message each, so message boundaries fall anywhere in the frames. Each stream the
//!   client opens dials the destination; when that fails the agent sends the Flag
//!   ConnectToPortError (payload type 10, u32 3) and closes the stream; the session stays up.
//!   Bytes go both ways until one side ends: the client's FIN closes the connection, the
//!   destination's close sends a FIN.
//! - **basic** (older clients or agents): one connection, dialled when the session starts (a
//!   failure ends the session with "Unable to connect to specified port: …"); its bytes travel
//!   as they are. DisconnectToPort (flag 1) or the destination closing ends the connection,
//!   and the next Output from the client dials a new one (a failure then ends the session).
//!
//! The Flag TerminateSession (2), `ssm:TerminateSession` or the gateway's channel_closed end
//! the session. Reads are paced as the agent's (`--agent-read-interval-ms` between reads) and
//! stop while publication is paused.
//!
//! Destinations, all on 127.0.0.1: the task's own `portNumber` (the task definition's
//! `SERVER_PORT`, or the Evolution stand-in's real port) reaches the stand-in; any other port
//! of the task is refused. A remote host is one the lab was told of (`POST
//! /_lab/remote-hosts`, which starts a small echo or HTTP listener for it); an unknown host
//! fails to resolve ("missing address", as the agent's dial of an empty address list), a
//! known host's other ports are refused. Every session, with its streams, is in
//! `GET /_lab/port-sessions`.

use super::agent::AgentHub;
use super::agent_link::{AgentEvent, AgentLink, HANDSHAKE_STEP_TIMEOUT_MS, SessionState};
use super::gateway::{Channel, Gateway};
use super::hub::Shared;
use super::port_registry::*;
use super::port_rules::{self, PortMode, STREAM_DATA_PAYLOAD_SIZE};
use super::state::{PortRequest, now_ms};
use async_smux::MuxBuilder;
use evoctl_ssm::frame::PayloadType;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Bytes from the client waiting to be written onward above which the agent reads no more
/// from the channel.
const INPUT_BACKLOG: usize = 64 * 1024;
/// The in-memory pipe between the agent's channel side and its smux server.
const PIPE_BYTES: usize = 64 * 1024;

/// How a port session ended (besides an error the agent reports, which goes in channel_closed).
enum End {
    Terminated,
    TerminateFlag,
    ChannelClosed,
    Other(String),
}

impl End {
    fn reason(&self) -> String {
        match self {
            End::Terminated => "terminate-session".into(),
            End::TerminateFlag => "terminate-flag".into(),
            End::ChannelClosed => "channel-closed".into(),
            End::Other(reason) => reason.clone(),
        }
    }
}

/// The agent's link with its way to the gateway, and the read pacing.
struct Wire<'a> {
    shared: &'a Shared,
    gateway: &'a Gateway,
    channel: &'a Channel,
    link: AgentLink,
    inbound: mpsc::UnboundedReceiver<Vec<u8>>,
    read_interval: Duration,
    next_read: tokio::time::Instant,
}

impl Wire<'_> {
    fn flush(&mut self) {
        super::agent::flush_link(&mut self.link, self.gateway, self.shared, self.channel);
    }

    fn timer(&self) -> Option<tokio::time::Instant> {
        super::agent::link_deadline(&self.link)
    }

    /// Whether a read may happen now, and whether one is allowed at all (not while paused).
    fn read_state(&self) -> (bool, bool) {
        let may_read = !self.link.is_paused();
        (may_read, may_read && tokio::time::Instant::now() >= self.next_read)
    }

    /// One read went out: the next one no earlier than the read interval (the agent's 1 ms
    /// sleep), caught up when the timer woke late.
    fn read_done(&mut self) {
        let now = tokio::time::Instant::now();
        self.next_read =
            (self.next_read + self.read_interval).max(now.checked_sub(self.read_interval * 4).unwrap_or(now));
    }

    fn send(&mut self, payload_type: PayloadType, payload: Vec<u8>) {
        self.link.send_stream(payload_type, payload, now_ms());
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the client asked of the session, as an event of the loop.
enum Asked {
    Bytes(Vec<u8>),
    Flag(u32),
    Closed,
}

fn asked(event: AgentEvent) -> Option<Asked> {
    match event {
        AgentEvent::Input(bytes) => Some(Asked::Bytes(bytes)),
        AgentEvent::OtherInput { payload_type: 10, payload } => port_rules::read_flag(&payload).map(Asked::Flag),
        AgentEvent::ChannelClosed(_) => Some(Asked::Closed),
        _ => None,
    }
}

impl AgentHub {
    /// One Port session from Connected to its end; Err is the error the agent reports (the
    /// gateway's channel_closed Output).
    pub(crate) async fn port_session(
        &self,
        shared: &Shared,
        channel: &Channel,
        request: &PortRequest,
    ) -> Result<(), String> {
        let grant = &channel.grant;
        let id = grant.session_id.clone();
        let agent_version = self.options.agent_version.clone();
        self.ports.sessions.lock().expect("lab lock").push(PortSessionRow {
            session_id: id.clone(),
            task_id: grant.task_id.clone(),
            target_id: grant.target_id.clone(),
            document: request.document.clone(),
            port_number: request.port_number.clone(),
            host: request.host.clone(),
            agent_version: agent_version.clone(),
            client_version: None,
            mode: None,
            streams: Vec::new(),
            connect_errors: 0,
            terminated: false,
            ended: false,
            end_reason: None,
            started_ms: now_ms(),
            ended_ms: None,
        });
        let inbound = channel.take_agent_inbound().ok_or("session started twice")?;
        let mut wire = Wire {
            shared,
            gateway: &self.gateway,
            channel,
            link: AgentLink::new(now_ms()),
            inbound,
            read_interval: self.options.read_interval,
            next_read: tokio::time::Instant::now(),
        };
        let result = self.port_session_on(&mut wire, request, &agent_version).await;
        let reason = match &result {
            Ok(end) => end.reason(),
            Err(error) => error.clone(),
        };
        let terminated = matches!(result, Ok(End::Terminated | End::TerminateFlag));
        self.ports.update(&id, |row| {
            row.ended = true;
            row.ended_ms = Some(now_ms());
            row.end_reason = Some(reason);
            row.terminated |= terminated;
            for stream in row.streams.iter_mut() {
                stream.closed_ms.get_or_insert_with(now_ms);
            }
        });
        wire.link.send_session_state(SessionState::Terminating, &id, now_ms());
        wire.flush();
        result.map(|_| ())
    }

    async fn port_session_on(
        &self,
        wire: &mut Wire<'_>,
        request: &PortRequest,
        agent_version: &str,
    ) -> Result<End, String> {
        let id = wire.channel.grant.session_id.clone();
        wire.link.send_session_state(SessionState::Connected, &id, now_ms());
        let client_version = match self.port_handshake(wire, request, agent_version).await? {
            Ok(version) => version,
            Err(end) => return Ok(end),
        };
        if let Some(refused) = request.host.as_deref().and_then(port_rules::denied_host) {
            return Err(refused);
        }
        let mode = port_rules::port_mode(agent_version, &client_version, port_rules::LOCAL_PORT_FORWARDING);
        self.ports.update(&id, |row| {
            row.client_version = Some(client_version.clone());
            row.mode = Some(mode);
        });
        match mode {
            PortMode::Mux { keep_alive } => self.run_mux(wire, request, keep_alive).await,
            PortMode::Basic => self.run_basic(wire, request).await,
        }
    }

    /// The Port handshake: Ok(Ok(client version)), Ok(Err(end)) when the session ended
    /// meanwhile, Err with the agent's error text.
    async fn port_handshake(
        &self,
        wire: &mut Wire<'_>,
        request: &PortRequest,
        agent_version: &str,
    ) -> Result<Result<String, End>, String> {
        let failed = |detail: String| format!("Encountered error while initiating handshake. {detail}");
        let started = tokio::time::Instant::now();
        wire.link.begin_handshake();
        wire.send(PayloadType::HandshakeRequest, port_rules::handshake_request(agent_version, request));
        let deadline = started + Duration::from_millis(HANDSHAKE_STEP_TIMEOUT_MS);
        loop {
            wire.flush();
            while let Some(event) = wire.link.poll_event() {
                match event {
                    AgentEvent::HandshakeResponse(body) => {
                        let version = port_rules::read_handshake_response(&body).map_err(failed)?;
                        wire.link.complete_handshake();
                        wire.send(PayloadType::HandshakeComplete, port_rules::handshake_complete(started.elapsed()));
                        wire.flush();
                        return Ok(Ok(version));
                    }
                    AgentEvent::ChannelClosed(_) => return Ok(Err(End::ChannelClosed)),
                    other => tracing::debug!(?other, "dropped during the port handshake"),
                }
            }
            if wire.channel.cancel_requested() {
                return Ok(Err(End::Terminated));
            }
            let cancelled = wire.channel.cancelled();
            let timer = wire.timer();
            tokio::select! {
                _ = cancelled => return Ok(Err(End::Terminated)),
                frame = wire.inbound.recv() => match frame {
                    Some(bytes) => wire.link.receive(&bytes, now_ms()),
                    None => return Ok(Err(End::ChannelClosed)),
                },
                _ = sleep_until_opt(timer) => wire.link.handle_timeout(now_ms()),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(failed("Handshake timed out. Please ensure that you have the latest version of the session manager plugin.".into()));
                }
            }
        }
    }

    /// smux mode: the client's bytes into an smux server, its bytes back in Output messages of
    /// at most 1024 bytes; a dial per stream.
    async fn run_mux(&self, wire: &mut Wire<'_>, request: &PortRequest, keep_alive: bool) -> Result<End, String> {
        let id = wire.channel.grant.session_id.clone();
        let (agent_end, smux_end) = tokio::io::duplex(PIPE_BYTES);
        let mut builder = MuxBuilder::server();
        if keep_alive {
            builder
                .with_keep_alive_interval(NonZeroU64::new(port_rules::KEEP_ALIVE_INTERVAL_SECS).expect("non-zero"))
                .with_keep_alive_timeout(NonZeroU64::new(port_rules::KEEP_ALIVE_TIMEOUT_SECS).expect("non-zero"));
        }
        let (_connector, mut acceptor, worker) = builder.with_connection(smux_end).build();
        let mut worker = tokio::spawn(worker);
        let (mut from_mux, mut to_mux) = tokio::io::split(agent_end);
        // The session is initialised: the client's data is taken (and acked) from now on.
        wire.link.set_ready();
        let (failed_tx, mut failed_rx) = mpsc::unbounded_channel::<Box<dyn Send>>();
        let mut streams = JoinSet::new();
        let mut input: VecDeque<u8> = VecDeque::new();
        let mut buffer = vec![0u8; STREAM_DATA_PAYLOAD_SIZE];
        let end = loop {
            wire.flush();
            let mut ended = None;
            while let Some(event) = wire.link.poll_event() {
                match asked(event) {
                    Some(Asked::Bytes(bytes)) => input.extend(bytes),
                    Some(Asked::Flag(port_rules::FLAG_TERMINATE_SESSION)) => ended = Some(End::TerminateFlag),
                    Some(Asked::Closed) => ended = Some(End::ChannelClosed),
                    Some(Asked::Flag(_)) | None => {}
                }
            }
            if let Some(end) = ended {
                break end;
            }
            if wire.channel.cancel_requested() {
                break End::Terminated;
            }
            let cancelled = wire.channel.cancelled();
            let timer = wire.timer();
            let (may_read, read_due) = wire.read_state();
            let next_read = wire.next_read;
            tokio::select! {
                biased;
                _ = cancelled => break End::Terminated,
                result = &mut worker => {
                    let reason = match result {
                        Ok(Err(error)) if keep_alive => format!("keep-alive: {error}"),
                        Ok(Err(error)) => format!("smux: {error}"),
                        _ => "smux: session closed".to_owned(),
                    };
                    break End::Other(reason);
                }
                frame = wire.inbound.recv(), if input.len() < INPUT_BACKLOG => match frame {
                    Some(bytes) => wire.link.receive(&bytes, now_ms()),
                    None => break End::ChannelClosed,
                },
                wrote = to_mux.write(input.as_slices().0), if !input.is_empty() => match wrote {
                    Ok(n) => drop(input.drain(..n)),
                    Err(error) => break End::Other(format!("smux: {error}")),
                },
                _ = sleep_until_opt(timer) => wire.link.handle_timeout(now_ms()),
                stream = acceptor.accept() => match stream {
                    Some(stream) => {
                        let stream_id = stream.get_stream_id();
                        self.ports.open_stream(&id, stream_id);
                        let dial = self.dial_plan(wire.shared, &wire.channel.grant.task_id, request);
                        let ports = Arc::clone(&self.ports);
                        let session = id.clone();
                        let failed = failed_tx.clone();
                        streams.spawn(async move {
                            match connect(dial).await {
                                Ok((conn, address)) => {
                                    ports.update_stream(&session, stream_id, |s| s.destination = Some(address));
                                    let (to, from) = relay(stream, conn).await;
                                    ports.close_stream(&session, stream_id, to, from);
                                }
                                Err(error) => {
                                    tracing::debug!(stream = stream_id, %error, "port session: dial failed");
                                    ports.update_stream(&session, stream_id, |s| {
                                        s.error = Some(error);
                                        s.closed_ms = Some(now_ms());
                                    });
                                    // The flag goes out first, then the stream is closed.
                                    let _ = failed.send(Box::new(stream));
                                }
                            }
                        });
                    }
                    None => break End::Other("smux: session closed".into()),
                },
                failed = failed_rx.recv() => {
                    wire.send(PayloadType::Flag, port_rules::flag(port_rules::FLAG_CONNECT_TO_PORT_ERROR));
                    self.ports.update(&id, |row| row.connect_errors += 1);
                    wire.flush();
                    drop(failed);
                }
                read = from_mux.read(&mut buffer), if read_due => match read {
                    Ok(0) | Err(_) => break End::Other("smux: session closed".into()),
                    Ok(n) => {
                        wire.send(PayloadType::Output, buffer[..n].to_vec());
                        wire.read_done();
                    }
                },
                _ = tokio::time::sleep_until(next_read), if may_read && !read_due => {}
            }
        };
        worker.abort();
        streams.abort_all();
        Ok(end)
    }

    /// Basic mode: one connection at a time, its bytes as they are.
    async fn run_basic(&self, wire: &mut Wire<'_>, request: &PortRequest) -> Result<End, String> {
        let id = wire.channel.grant.session_id.clone();
        let task_id = wire.channel.grant.task_id.clone();
        let mut number = 0u32;
        let open = |hub: &AgentHub, number: &mut u32| {
            *number += 1;
            hub.ports.open_stream(&id, *number);
            *number
        };
        let first = open(self, &mut number);
        let mut conn = match connect(self.dial_plan(wire.shared, &task_id, request)).await {
            Ok((conn, address)) => {
                self.ports.update_stream(&id, first, |s| s.destination = Some(address));
                Some(Basic::new(conn, first))
            }
            Err(error) => {
                self.ports.update_stream(&id, first, |s| s.error = Some(error.clone()));
                return Err(format!("Unable to connect to specified port: {error}"));
            }
        };
        wire.link.set_ready();
        let mut input: VecDeque<u8> = VecDeque::new();
        let mut buffer = vec![0u8; STREAM_DATA_PAYLOAD_SIZE];
        loop {
            wire.flush();
            while let Some(event) = wire.link.poll_event() {
                match asked(event) {
                    Some(Asked::Bytes(bytes)) => {
                        if conn.is_none() {
                            // The next data after a disconnect dials the port again.
                            let next = open(self, &mut number);
                            match connect(self.dial_plan(wire.shared, &task_id, request)).await {
                                Ok((fresh, address)) => {
                                    self.ports.update_stream(&id, next, |s| s.destination = Some(address));
                                    conn = Some(Basic::new(fresh, next));
                                }
                                Err(error) => {
                                    self.ports.update_stream(&id, next, |s| s.error = Some(error.clone()));
                                    return Ok(End::Other(format!("Unable to connect to specified port: {error}")));
                                }
                            }
                        }
                        input.extend(bytes);
                    }
                    Some(Asked::Flag(port_rules::FLAG_DISCONNECT_TO_PORT)) => {
                        if let Some(old) = conn.take() {
                            old.close(&self.ports, &id);
                        }
                        input.clear();
                    }
                    Some(Asked::Flag(port_rules::FLAG_TERMINATE_SESSION)) => return Ok(End::TerminateFlag),
                    Some(Asked::Closed) => return Ok(End::ChannelClosed),
                    Some(Asked::Flag(_)) | None => {}
                }
            }
            if wire.channel.cancel_requested() {
                return Ok(End::Terminated);
            }
            let cancelled = wire.channel.cancelled();
            let timer = wire.timer();
            let (may_read, read_due) = wire.read_state();
            let next_read = wire.next_read;
            let connected = conn.is_some();
            let (reader, writer) = match conn.as_mut() {
                Some(basic) => (Some(&mut basic.read), Some(&mut basic.write)),
                None => (None, None),
            };
            enum Step {
                Wrote(std::io::Result<usize>),
                Read(std::io::Result<usize>),
                Idle,
            }
            let step = tokio::select! {
                biased;
                _ = cancelled => return Ok(End::Terminated),
                frame = wire.inbound.recv(), if input.len() < INPUT_BACKLOG => match frame {
                    Some(bytes) => { wire.link.receive(&bytes, now_ms()); Step::Idle }
                    None => return Ok(End::ChannelClosed),
                },
                wrote = write_some(writer, input.as_slices().0), if connected && !input.is_empty() => Step::Wrote(wrote),
                _ = sleep_until_opt(timer) => { wire.link.handle_timeout(now_ms()); Step::Idle }
                read = read_some(reader, &mut buffer), if connected && read_due => Step::Read(read),
                _ = tokio::time::sleep_until(next_read), if connected && may_read && !read_due => Step::Idle,
            };
            match step {
                Step::Wrote(Ok(n)) => {
                    input.drain(..n);
                    if let Some(basic) = conn.as_mut() {
                        basic.to += n as u64;
                    }
                }
                Step::Read(Ok(n)) if n > 0 => {
                    wire.send(PayloadType::Output, buffer[..n].to_vec());
                    wire.read_done();
                    if let Some(basic) = conn.as_mut() {
                        basic.from += n as u64;
                    }
                }
                Step::Wrote(_) | Step::Read(_) => {
                    // The connection ended: the agent waits for the client's next data.
                    if let Some(old) = conn.take() {
                        old.close(&self.ports, &id);
                    }
                    input.clear();
                }
                Step::Idle => {}
            }
        }
    }

    /// Where a new connection of this session goes.
    fn dial_plan(&self, shared: &Shared, task_id: &str, request: &PortRequest) -> Result<(SocketAddr, String), String> {
        let port: u16 = request.port_number.parse().map_err(|_| format!("invalid port {}", request.port_number))?;
        let refused = |host: &str| format!("dial tcp {host}:{port}: connect: connection refused");
        match request.host.as_deref() {
            None | Some("localhost" | "127.0.0.1" | "::1") => {
                let real = shared.evolution.port_of(task_id);
                let server_port = task_server_port(shared, task_id);
                match real {
                    Some(real) if port == real || Some(port) == server_port => {
                        let address = SocketAddr::from(([127, 0, 0, 1], real));
                        Ok((address, format!("127.0.0.1:{port}")))
                    }
                    _ => Err(refused("127.0.0.1")),
                }
            }
            Some(host) => match self.ports.remote_address(host, port)? {
                Some(address) => {
                    let address: SocketAddr = address.parse().map_err(|e| format!("{e}"))?;
                    Ok((address, format!("{host}:{port}")))
                }
                None => Err(refused(host)),
            },
        }
    }
}

/// The task definition's `SERVER_PORT` (the container's port the stand-in plays).
fn task_server_port(shared: &Shared, task_id: &str) -> Option<u16> {
    let accounts = shared.accounts.lock().expect("lab lock");
    let account = accounts.of_task(task_id)?;
    let task = account.tasks.iter().find(|t| t.id == task_id)?;
    let definition = account.task_definitions.get(&task.task_definition)?;
    let environment = account.container_environment(definition);
    environment.get("SERVER_PORT").map_or(Some(8080), |p| p.parse().ok())
}

/// Dial a planned destination: the connection and the address as the agent names it.
async fn connect(plan: Result<(SocketAddr, String), String>) -> Result<(TcpStream, String), String> {
    let (address, shown) = plan?;
    match TcpStream::connect(address).await {
        Ok(conn) => {
            let _ = conn.set_nodelay(true);
            Ok((conn, shown))
        }
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(format!("dial tcp {shown}: connect: connection refused"))
        }
        Err(error) => Err(format!("dial tcp {shown}: {error}")),
    }
}

/// Relay one smux stream and its connection (as the agent's `handleDataTransfer`): when the
/// client's side ends the connection is closed; when the destination's ends the stream gets
/// its FIN. Returns the bytes written to and read from the destination.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(stream: S, conn: TcpStream) -> (u64, u64) {
    let (mut stream_read, mut stream_write) = tokio::io::split(stream);
    let (mut conn_read, mut conn_write) = conn.into_split();
    let to = AtomicU64::new(0);
    let from = AtomicU64::new(0);
    let to_destination = async {
        let mut buffer = vec![0u8; port_rules::MAX_FRAME_SIZE];
        while let Ok(n) = stream_read.read(&mut buffer).await {
            if n == 0 || conn_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
            to.fetch_add(n as u64, Ordering::AcqRel);
        }
        let _ = conn_write.shutdown().await;
    };
    let from_destination = async {
        // Writes of at most 32 KiB: smux frames no larger than xtaci's default.
        let mut buffer = vec![0u8; port_rules::MAX_FRAME_SIZE];
        while let Ok(n) = conn_read.read(&mut buffer).await {
            if n == 0 || stream_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
            from.fetch_add(n as u64, Ordering::AcqRel);
        }
        let _ = stream_write.shutdown().await;
    };
    tokio::pin!(to_destination);
    tokio::pin!(from_destination);
    tokio::select! {
        // The client closed its stream: the agent closes the connection, which ends the other
        // direction too.
        _ = &mut to_destination => {}
        // The destination closed: FIN sent; the client's remaining bytes still go through
        // until it closes.
        _ = &mut from_destination => to_destination.await,
    }
    (to.load(Ordering::Acquire), from.load(Ordering::Acquire))
}

/// The basic mode's one connection.
struct Basic {
    read: tokio::net::tcp::OwnedReadHalf,
    write: tokio::net::tcp::OwnedWriteHalf,
    number: u32,
    to: u64,
    from: u64,
}

impl Basic {
    fn new(conn: TcpStream, number: u32) -> Basic {
        let (read, write) = conn.into_split();
        Basic { read, write, number, to: 0, from: 0 }
    }

    fn close(self, ports: &PortAgents, session_id: &str) {
        ports.close_stream(session_id, self.number, self.to, self.from);
    }
}

async fn write_some(writer: Option<&mut tokio::net::tcp::OwnedWriteHalf>, bytes: &[u8]) -> std::io::Result<usize> {
    match writer {
        Some(writer) => writer.write(bytes).await,
        None => std::future::pending().await,
    }
}

async fn read_some(reader: Option<&mut tokio::net::tcp::OwnedReadHalf>, buffer: &mut [u8]) -> std::io::Result<usize> {
    match reader {
        Some(reader) => reader.read(buffer).await,
        None => std::future::pending().await,
    }
}
