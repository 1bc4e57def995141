//! WhatsApp's web endpoint (`web.whatsapp.com:443`, where Baileys opens its websocket) as the
//! lab's tasks see it: a loopback listener the lab controls, so no test ever resolves or
//! reaches a real host. The ready file's `env` names it (`EVOCTL_WHATSAPP_ENDPOINT =
//! localhost:PORT`), as `AWS_ENDPOINT_URL` names the lab's AWS endpoint.
//!
//! - Reachable: TLS with a certificate for `localhost` from a CA made at start, which the
//!   containers trust (`NODE_EXTRA_CA_CERTS` in every exec session, standing in for the public
//!   CA a real image trusts). A handshake completes, then the lab closes the connection.
//! - Unreachable (`--whatsapp unreachable`, the route a private subnet without NAT lacks): the
//!   listener's accept queue is one deep and the lab fills it itself and never accepts, so the
//!   kernel drops every later SYN and a connect waits until the client gives up, as a SYN into a
//!   black hole does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The running endpoint.
pub struct Endpoint {
    pub address: SocketAddr,
    /// The CA certificate the containers must trust (reachable only).
    pub ca_pem: Option<String>,
    /// Unreachable: the listener (never accepted from) and the connection that fills its queue.
    _black_hole: Option<(tokio::net::TcpListener, std::net::TcpStream)>,
}

/// Start the endpoint.
pub async fn start(reachable: bool) -> Result<Endpoint, String> {
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    if !reachable {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket.bind(local).map_err(|e| e.to_string())?;
        let listener = socket.listen(0).map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let filler = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))
            .map_err(|e| format!("cannot fill the black hole's queue: {e}"))?;
        return Ok(Endpoint { address, ca_pem: None, _black_hole: Some((listener, filler)) });
    }
    let tls = crate::tls::issue()?;
    let listener = tokio::net::TcpListener::bind(local).await.map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.server_config));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(Ok(mut tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                }
            });
        }
    });
    Ok(Endpoint { address, ca_pem: Some(tls.ca_pem), _black_hole: None })
}
