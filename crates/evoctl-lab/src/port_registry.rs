//! The registry of the lab agent's Port sessions: each session with its streams (what
//! `GET /_lab/port-sessions` shows) and the remote hosts the lab was told of (`POST
//! /_lab/remote-hosts`, each a small listener on 127.0.0.1). The agent's session table holds
//! it and [`super::port_agent`] fills it; it depends on neither.

use super::port_rules::PortMode;
use super::state::now_ms;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One stream (smux) or connection (basic) of a port session.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRow {
    /// The smux stream id (odd, the client's), or the connection's number from 1 in basic mode.
    pub id: u32,
    pub opened_ms: u64,
    pub closed_ms: Option<u64>,
    /// The address dialled for it (`127.0.0.1:PORT`), once connected.
    pub destination: Option<String>,
    /// Why the dial failed (the agent then sent ConnectToPortError, in smux mode).
    pub error: Option<String>,
    /// Bytes written to the destination and read from it.
    pub bytes_to_destination: u64,
    pub bytes_from_destination: u64,
}

/// One port session as the lab's agent ran it (`GET /_lab/port-sessions`).
#[derive(Debug, Clone, Serialize)]
pub struct PortSessionRow {
    pub session_id: String,
    pub task_id: String,
    pub target_id: String,
    pub document: String,
    pub port_number: String,
    pub host: Option<String>,
    pub agent_version: String,
    /// The HandshakeResponse's ClientVersion, once it arrived.
    pub client_version: Option<String>,
    /// `{"mux": {"keep_alive": bool}}` or `"basic"`, once the handshake is done.
    pub mode: Option<PortMode>,
    pub streams: Vec<StreamRow>,
    /// ConnectToPortError flags sent.
    pub connect_errors: u64,
    /// Ended by TerminateSession (the API) or the TerminateSession flag.
    pub terminated: bool,
    pub ended: bool,
    /// Why it ended: `terminate-session`, `terminate-flag`, `channel-closed`, `keep-alive`
    /// (the agent's smux session timed out), or the error the agent reported.
    pub end_reason: Option<String>,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
}

/// What a lab-controlled remote host answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RemoteKind {
    /// Every request gets `200` with `remote HOST:PORT METHOD PATH\n` and the connection closes.
    #[default]
    Http,
    /// Bytes come back as they were sent.
    Echo,
}

/// A host:port a remote-host session can reach, served by a listener on 127.0.0.1.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteHost {
    pub host: String,
    pub port: u16,
    pub kind: RemoteKind,
    /// Where the lab serves it.
    pub address: String,
    /// Connections it accepted.
    pub connections: u64,
}

pub(crate) struct RemoteListener {
    pub(crate) info: RemoteHost,
    pub(crate) connections: Arc<AtomicU64>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

/// The port sessions and remote hosts of one lab.
#[derive(Default)]
pub struct PortAgents {
    pub(crate) sessions: Mutex<Vec<PortSessionRow>>,
    pub(crate) remote_hosts: Mutex<Vec<RemoteListener>>,
}

impl Drop for PortAgents {
    fn drop(&mut self) {
        for listener in self.remote_hosts.lock().expect("lab lock").iter() {
            listener.task.abort();
        }
    }
}

impl PortAgents {
    /// Every port session so far.
    pub fn sessions(&self) -> Vec<PortSessionRow> {
        self.sessions.lock().expect("lab lock").clone()
    }

    /// TerminateSession reached a port session (false: none by that id).
    pub fn mark_terminated(&self, session_id: &str) -> bool {
        let mut sessions = self.sessions.lock().expect("lab lock");
        let mut found = false;
        for row in sessions.iter_mut().filter(|r| r.session_id == session_id && !r.ended) {
            row.terminated = true;
            found = true;
        }
        found
    }

    pub(crate) fn update(&self, session_id: &str, change: impl FnOnce(&mut PortSessionRow)) {
        if let Some(row) = self.sessions.lock().expect("lab lock").iter_mut().rev().find(|r| r.session_id == session_id)
        {
            change(row);
        }
    }

    pub(crate) fn update_stream(&self, session_id: &str, id: u32, change: impl FnOnce(&mut StreamRow)) {
        self.update(session_id, |row| {
            if let Some(stream) = row.streams.iter_mut().rev().find(|s| s.id == id) {
                change(stream);
            }
        });
    }

    pub(crate) fn open_stream(&self, session_id: &str, id: u32) {
        self.update(session_id, |row| {
            row.streams.push(StreamRow {
                id,
                opened_ms: now_ms(),
                closed_ms: None,
                destination: None,
                error: None,
                bytes_to_destination: 0,
                bytes_from_destination: 0,
            })
        });
    }

    pub(crate) fn close_stream(&self, session_id: &str, id: u32, to: u64, from: u64) {
        self.update_stream(session_id, id, |stream| {
            stream.closed_ms.get_or_insert_with(now_ms);
            stream.bytes_to_destination = to;
            stream.bytes_from_destination = from;
        });
    }

    /// Every remote host the lab serves.
    pub fn remote_hosts(&self) -> Vec<RemoteHost> {
        self.remote_hosts
            .lock()
            .expect("lab lock")
            .iter()
            .map(|l| RemoteHost { connections: l.connections.load(Ordering::Acquire), ..l.info.clone() })
            .collect()
    }

    /// Serve `host:port` (replacing an earlier listener for it) from a new listener on
    /// 127.0.0.1.
    pub async fn add_remote_host(&self, host: &str, port: u16, kind: RemoteKind) -> std::io::Result<RemoteHost> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?.to_string();
        let connections = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&connections);
        let name = format!("{host}:{port}");
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::AcqRel);
                let name = name.clone();
                tokio::spawn(async move {
                    let _ = match kind {
                        RemoteKind::Echo => echo(socket).await,
                        RemoteKind::Http => answer_http(socket, &name).await,
                    };
                });
            }
        });
        let info = RemoteHost { host: host.to_owned(), port, kind, address, connections: 0 };
        let mut hosts = self.remote_hosts.lock().expect("lab lock");
        if let Some(old) = hosts.iter().position(|l| l.info.host == host && l.info.port == port) {
            hosts.remove(old).task.abort();
        }
        hosts.push(RemoteListener { info: info.clone(), connections, task });
        Ok(info)
    }

    /// Stop serving `host:port` (its port is then refused); false when it was not served.
    pub fn remove_remote_host(&self, host: &str, port: u16) -> bool {
        let mut hosts = self.remote_hosts.lock().expect("lab lock");
        match hosts.iter().position(|l| l.info.host == host && l.info.port == port) {
            Some(index) => {
                hosts.remove(index).task.abort();
                true
            }
            None => false,
        }
    }

    /// Where a remote host's port is served: Err("missing address") for a host the lab does not
    /// know (it does not resolve), None for a port of a known host that nothing serves.
    pub(crate) fn remote_address(&self, host: &str, port: u16) -> Result<Option<String>, String> {
        let hosts = self.remote_hosts.lock().expect("lab lock");
        if !hosts.iter().any(|l| l.info.host == host) {
            return Err("missing address".into());
        }
        Ok(hosts.iter().find(|l| l.info.host == host && l.info.port == port).map(|l| l.info.address.clone()))
    }
}

async fn echo(mut socket: TcpStream) -> std::io::Result<()> {
    let (mut read, mut write) = socket.split();
    tokio::io::copy(&mut read, &mut write).await?;
    write.shutdown().await
}

async fn answer_http(mut socket: TcpStream, name: &str) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.split_whitespace();
    let (method, path) = (words.next().unwrap_or("-"), words.next().unwrap_or("-"));
    let body = format!("remote {name} {method} {path}\n");
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(reply.as_bytes()).await?;
    socket.shutdown().await
}
