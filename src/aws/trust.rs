//! What evoctl trusts and how it reaches AWS: one answer for the SDK's HTTP client and the
//! data-channel websocket alike, so a TLS-inspecting proxy or a private CA never lets
//! ExecuteCommand through and then fails the websocket.
//!
//! Trusted roots are the operating system's store plus the PEM file named by `AWS_CA_BUNDLE`
//! (or the profile's `ca_bundle`), as the AWS CLI does. Proxies come from the environment
//! (`HTTPS_PROXY`/`https_proxy`, `HTTP_PROXY`, `NO_PROXY`), through the SDK's own proxy support
//! for AWS calls and an HTTP CONNECT tunnel for the websocket.

use crate::env_vars::{EnvVars, ProfileKeys};
use crate::error::{Error, Result};
use aws_runtime::env_config::EnvConfigValue;
use aws_runtime::env_config::section::EnvConfigSections;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_types::os_shim_internal::Env;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::PathBuf;
use std::sync::Arc;

/// The extra CA certificates to trust, as read from `AWS_CA_BUNDLE` / `ca_bundle`.
#[derive(Debug, Clone, Default)]
pub struct CaBundle {
    pub path: Option<PathBuf>,
    pem: Vec<u8>,
}

impl CaBundle {
    /// Read the bundle the environment or profile names (none: only the OS store).
    pub fn resolve(env: &Env, profiles: Option<&EnvConfigSections>) -> Result<CaBundle> {
        let named = EnvConfigValue::new()
            .env(EnvVars::AWS_CA_BUNDLE)
            .profile(ProfileKeys::CA_BUNDLE)
            .validate(env, profiles, |value| Ok::<_, std::convert::Infallible>(PathBuf::from(value)))
            .ok()
            .flatten();
        let Some(path) = named.filter(|p| !p.as_os_str().is_empty()) else { return Ok(CaBundle::default()) };
        // Read and checked once per process: the credential chains of several accounts name the
        // same file.
        static READ: std::sync::Mutex<Vec<CaBundle>> = std::sync::Mutex::new(Vec::new());
        let mut read = READ.lock().expect("CA bundle cache");
        if let Some(bundle) = read.iter().find(|b| b.path.as_deref() == Some(path.as_path())) {
            return Ok(bundle.clone());
        }
        let bundle = CaBundle::read(path)?;
        read.push(bundle.clone());
        Ok(bundle)
    }

    fn read(path: PathBuf) -> Result<CaBundle> {
        let pem = std::fs::read(&path).map_err(|e| {
            Error::usage(
                format!("cannot read the CA bundle {} (AWS_CA_BUNDLE / ca_bundle): {e}", path.display()),
                "point AWS_CA_BUNDLE (or the profile's ca_bundle) at a readable PEM file, or unset it",
            )
        })?;
        let bundle = CaBundle { path: Some(path), pem };
        let count = bundle.certificates()?.len();
        if count == 0 {
            return Err(Error::usage(
                format!("the CA bundle {} holds no PEM certificate", bundle.describe()),
                "AWS_CA_BUNDLE must name a file of `-----BEGIN CERTIFICATE-----` blocks",
            ));
        }
        tracing::info!(path = %bundle.describe(), certificates = count, "trusting the extra CA bundle");
        Ok(bundle)
    }

    fn describe(&self) -> String {
        self.path.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>> {
        if self.pem.is_empty() {
            return Ok(Vec::new());
        }
        CertificateDer::pem_slice_iter(&self.pem).collect::<std::result::Result<Vec<_>, _>>().map_err(|e| {
            Error::usage(
                format!("the CA bundle {} is not valid PEM: {e}", self.describe()),
                "AWS_CA_BUNDLE must name a file of `-----BEGIN CERTIFICATE-----` blocks",
            )
        })
    }

    /// The SDK HTTP client: its own rustls connector with proxy support from the environment
    /// and this bundle added to the OS roots. One per bundle per process: the credential chains
    /// of several accounts share it (its connection pools, and the OS roots loaded once).
    pub fn sdk_http_client(&self) -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient> {
        use aws_smithy_runtime_api::client::http::SharedHttpClient;
        static CLIENTS: std::sync::Mutex<Vec<(Vec<u8>, SharedHttpClient)>> = std::sync::Mutex::new(Vec::new());
        let mut clients = CLIENTS.lock().expect("HTTP client cache");
        if let Some((_, client)) = clients.iter().find(|(pem, _)| *pem == self.pem) {
            return Ok(client.clone());
        }
        let client = self.new_sdk_http_client()?;
        clients.push((self.pem.clone(), client.clone()));
        Ok(client)
    }

    fn new_sdk_http_client(&self) -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient> {
        let mut trust = TrustStore::default();
        if !self.pem.is_empty() {
            trust = trust.with_pem_certificate(self.pem.clone());
        }
        let context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| Error::usage(format!("cannot set up TLS: {e}"), "check AWS_CA_BUNDLE"))?;
        let provider = tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc);
        Ok(aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
            let mut builder = aws_smithy_http_client::Connector::builder();
            builder.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                builder.set_sleep_impl(components.sleep_impl());
            }
            builder
                .proxy_config(ProxyConfig::from_env())
                .tls_provider(provider.clone())
                .tls_context(context.clone())
                .build()
        }))
    }

    /// The websocket's TLS settings: the OS store (as the SDK's connector loads it) plus this
    /// bundle.
    pub fn websocket_tls(&self) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "an OS root certificate could not be loaded");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "OS root certificates for the data channel");
        for certificate in self.certificates()? {
            roots.add(certificate).map_err(|e| {
                Error::usage(
                    format!("the CA bundle {} has an unusable certificate: {e}", self.describe()),
                    "check AWS_CA_BUNDLE",
                )
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::usage(format!("cannot set up TLS: {e}"), "report this"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// A retry classifier for every client: a TLS handshake that failed because the certificate is
/// not trusted fails the same way every time, so it is reported at once instead of after every
/// attempt and back-off (the SDK retries connection errors as transient).
#[derive(Debug, Default)]
pub struct UntrustedCertificate;

impl aws_smithy_runtime_api::client::retries::classifiers::ClassifyRetry for UntrustedCertificate {
    fn classify_retry(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
    ) -> aws_smithy_runtime_api::client::retries::classifiers::RetryAction {
        use aws_smithy_runtime_api::client::retries::classifiers::RetryAction;
        let Some(Err(error)) = ctx.output_or_error() else { return RetryAction::NoActionIndicated };
        let Some(connector) = error.as_connector_error() else { return RetryAction::NoActionIndicated };
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(connector);
        while let Some(error) = source {
            let text = error.to_string();
            if text.contains("invalid peer certificate") || text.contains("UnknownIssuer") {
                return RetryAction::RetryForbidden;
            }
            source = error.source();
        }
        RetryAction::NoActionIndicated
    }

    fn name(&self) -> &'static str {
        "evoctl: an untrusted certificate is not retried"
    }
}
