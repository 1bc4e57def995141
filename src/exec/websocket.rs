//! Opening the data-channel websocket the way the official plugin does, and a little safer:
//! the stream URL exactly as ExecuteCommand returned it, no auth headers (the token frame is the
//! credential), the proxy from the environment (`HTTPS_PROXY`/`https_proxy`, `HTTP_PROXY` for a
//! plain `ws://` URL, `NO_PROXY`; credentials in the proxy URL become `Proxy-Authorization` and
//! are never logged) through an HTTP CONNECT tunnel, the roots the SDK trusts (OS store plus
//! `AWS_CA_BUNDLE`), message and frame limits sized to the protocol, and a bound on the whole
//! opening (TCP or tunnel, TLS, upgrade).

use crate::env_vars::EnvVars;
use crate::error::{Error, ExecKind, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// The open websocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The largest websocket message or frame accepted. Agent frames are 120 bytes of header plus at
/// most 1027 bytes of payload; `channel_closed` carries an error text of a few KiB at most. A
/// peer sending more is broken or hostile, and is refused before its message is buffered.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How long opening the data channel may take unless
/// [`EnvVars::EVOCTL_DATA_CHANNEL_CONNECT_TIMEOUT`] says otherwise (the plugin allows 45 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The websocket limits.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE_BYTES)).max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// The bound on opening, from the environment or the default.
pub fn connect_timeout() -> Result<Duration> {
    crate::duration::from_env(EnvVars::EVOCTL_DATA_CHANNEL_CONNECT_TIMEOUT, CONNECT_TIMEOUT)
}

/// Open `url` (bounded by `limit`), through the environment's proxy when it applies.
pub async fn open(url: &str, tls: Arc<rustls::ClientConfig>, limit: Duration) -> Result<Socket> {
    let opening = async {
        let uri: Uri = url.parse().map_err(|e| transport(format!("the stream URL does not parse: {e}"), url))?;
        let secure = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            other => return Err(transport(format!("unexpected stream URL scheme {other:?}"), url)),
        };
        let host = uri.host().ok_or_else(|| transport("the stream URL has no host".into(), url))?.to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let stream = tcp(&host, port, secure).await?;
        let (socket, _) =
            tokio_tungstenite::client_async_tls_with_config(url, stream, Some(config()), Some(Connector::Rustls(tls)))
                .await
                .map_err(|e| handshake_error(&e, &host, port))?;
        Ok(socket)
    };
    match tokio::time::timeout(limit, opening).await {
        Ok(result) => result,
        Err(_) => Err(Error::exec(
            ExecKind::Transport,
            format!("the data channel did not open within {} s", limit.as_secs_f64()),
            format!(
                "check the network path to ssmmessages (proxy, VPC endpoint, firewall); {} raises the bound",
                EnvVars::EVOCTL_DATA_CHANNEL_CONNECT_TIMEOUT
            ),
        )),
    }
}

/// A TCP stream to `host:port`: direct, or through the proxy the environment names for it.
async fn tcp(host: &str, port: u16, secure: bool) -> Result<TcpStream> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::connect::proxy::Tunnel;
    use tower_service::Service;
    // The proxy rules are written for http(s) URLs: a wss URL goes where an https one would.
    let scheme = if secure { "https" } else { "http" };
    let destination: Uri =
        format!("{scheme}://{host}:{port}").parse().map_err(|e| transport(format!("bad stream host: {e}"), host))?;
    let matcher = hyper_util::client::proxy::matcher::Matcher::from_env();
    let Some(proxy) = matcher.intercept(&destination) else {
        tracing::debug!(%host, port, "data channel: direct connection");
        return TcpStream::connect((host, port)).await.map_err(|e| {
            Error::exec(
                ExecKind::Transport,
                format!("could not connect to the data channel at {host}:{port}: {e}"),
                "check the network path to ssmmessages (proxy, VPC endpoint, firewall) and retry",
            )
        });
    };
    let proxy_uri = proxy.uri().clone();
    let proxy_host = format!("{}:{}", proxy_uri.host().unwrap_or("?"), proxy_uri.port_u16().unwrap_or(80));
    tracing::debug!(%host, port, proxy = %proxy_host, "data channel: through the proxy (HTTP CONNECT)");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let mut tunnel = Tunnel::new(proxy_uri, connector);
    if let Some(auth) = proxy.basic_auth() {
        tunnel = tunnel.with_auth(auth.clone());
    }
    let io = tunnel.call(destination).await.map_err(|e| {
        Error::exec(
            ExecKind::Transport,
            format!("the proxy {proxy_host} did not open a tunnel to the data channel at {host}:{port}: {e:?}"),
            "check HTTPS_PROXY / NO_PROXY (and the proxy's credentials and allowed CONNECT ports)",
        )
    })?;
    Ok(io.into_inner())
}

fn transport(detail: String, what: &str) -> Error {
    Error::exec(
        ExecKind::Transport,
        format!("could not open the data channel ({what}): {detail}"),
        "retry; if it repeats, check the ExecuteCommand answer",
    )
}

/// A failed TLS or websocket opening, with the fix that fits (an untrusted certificate is the
/// usual one behind a TLS-inspecting proxy or with a private CA).
fn handshake_error(error: &tokio_tungstenite::tungstenite::Error, host: &str, port: u16) -> Error {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    let certificate = text.contains("certificate") || text.contains("UnknownIssuer");
    let fix = if certificate {
        "the data channel's TLS certificate is not trusted: if a proxy or a private CA signs it, point AWS_CA_BUNDLE at that CA's PEM file (the same bundle AWS calls use)".to_owned()
    } else {
        "check the network path to ssmmessages (proxy, VPC endpoint) and retry".to_owned()
    };
    let what = if certificate { "TLS certificate check failed" } else { "websocket opening failed" };
    Error::exec(ExecKind::Transport, format!("could not open the data channel at {host}:{port}: {what}: {text}"), fix)
}
