//! The lab's `--tls`: a private certificate authority made afresh at every start (rcgen, a new
//! ECDSA P-256 key each time, never written to disk), a server certificate for `127.0.0.1` (IP
//! SAN) and `localhost` signed by it, and the accept loop that serves the lab's one router over
//! rustls on the lab's one port: the AWS endpoint, the `/_lab` control API and the data channel,
//! whose websocket upgrades go through hyper-util's `auto` connection with upgrades. Clients
//! trust the lab through the CA certificate alone, which [`super::serve`] writes as PEM beside
//! the ready file (the `AWS_CA_BUNDLE` of the ready file's `env`).
//!
//! ALPN offers `http/1.1` only: the lab's SigV4 check reads the `Host` header, which HTTP/2
//! replaces with `:authority`, and AWS's regional endpoints speak HTTP/1.1 to the SDKs as well.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The names the server certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// How long a client may take over its TLS handshake before the lab drops the connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping lab waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A fresh private CA and the server identity it signed.
pub struct LabTls {
    /// The CA certificate, PEM: what clients put in their trust store.
    pub ca_pem: String,
    /// rustls server settings holding the server certificate chain and its key.
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Make a new CA (new key), sign a server certificate for [`SERVER_NAMES`] with it, and build
/// the rustls server settings (aws-lc-rs, the same provider the rest of the binary links).
pub fn issue() -> Result<LabTls, String> {
    issue_for(&[])
}

/// [`issue`], the certificate also valid for `extra_names` (the `--stream-host` name, so a
/// client that checks the stream URL's host name accepts the lab's data channel).
pub fn issue_for(extra_names: &[String]) -> Result<LabTls, String> {
    let fail = |what: &str, e: rcgen::Error| format!("cannot make the lab's {what}: {e}");
    let now = time::OffsetDateTime::now_utc();
    // A little slack before now for clocks that disagree by minutes; a year is longer than any
    // lab runs (a new CA is made at every start).
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(365);

    let ca_key = KeyPair::generate().map_err(|e| fail("CA key", e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("CA", e))?;
    ca_params.distinguished_name.push(DnType::CommonName, "evoctl-lab private CA");
    ca_params.distinguished_name.push(DnType::OrganizationName, "evoctl-lab");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| fail("CA certificate", e))?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().map_err(|e| fail("server key", e))?;
    let mut names = SERVER_NAMES.map(str::to_owned).to_vec();
    names.extend(extra_names.iter().filter(|n| !SERVER_NAMES.contains(&n.as_str())).cloned());
    let mut server_params = CertificateParams::new(names).map_err(|e| fail("server certificate", e))?;
    server_params.distinguished_name.push(DnType::CommonName, "evoctl-lab");
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.use_authority_key_identifier_extension = true;
    server_params.not_before = not_before;
    server_params.not_after = not_after;
    let server_cert = server_params.signed_by(&server_key, &issuer).map_err(|e| fail("server certificate", e))?;

    let chain: Vec<CertificateDer<'static>> = vec![server_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let mut server_config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot configure TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("cannot configure TLS: {e}"))?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(LabTls { ca_pem, server_config: Arc::new(server_config) })
}

/// Serve `router` over TLS on `listener` until `shutdown` resolves, then give open connections
/// [`SHUTDOWN_GRACE`] to finish. Each connection is HTTP/1.1 (or HTTP/2 by prior knowledge)
/// with upgrades, so the data channel's websockets work as on the plain listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    server_config: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::debug!("accept failed: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                // A client that does not trust the lab's CA aborts here; nothing to answer.
                Ok(Err(e)) => return tracing::debug!("TLS handshake failed: {e}"),
                Err(_) => return tracing::debug!("TLS handshake timed out"),
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    Ok(())
}
