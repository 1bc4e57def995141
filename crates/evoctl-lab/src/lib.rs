//! The lab: a faithful local stand-in for the AWS account evoctl operates, used by every
//! integration test and by the demo.
//!
//! One listener on 127.0.0.1 answers ECS, Application Auto Scaling, SSM, CloudWatch Logs, STS
//! and Lambda with SigV4 checks and AWS error shapes ([`server`], [`services`], [`sigv4`]);
//! a scheduler moves tasks through their lifecycle ([`state`]); scenarios seed the account
//! ([`scenario`]). When ready it writes a JSON ready file with the endpoint, credentials and an
//! `evoctl.toml` for the scenario. With `--tls` the one port speaks HTTPS/WSS under a private CA
//! made at start ([`tls`]). Product modules never import this one.

pub mod agent;
pub mod agent_handshake;
pub mod agent_link;
pub mod cli;
pub mod evolution;
pub mod fake_plugin;
pub mod gateway;
pub mod hub;
pub mod iam;
pub mod nonce;
pub mod plugin_link;
pub mod port_agent;
pub mod port_registry;
pub mod port_rules;
pub mod scenario;
pub mod server;
pub mod services;
pub mod shell_words;
pub mod sigv4;
pub mod state;
pub mod tls;
pub mod whatsapp;

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How to run the lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub scenario: String,
    pub port: u16,
    pub ready_file: Option<PathBuf>,
    pub config_out: Option<PathBuf>,
    pub timing: state::Timing,
    pub tick: Duration,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Delay before the exec agent reads its pty (the real agent waits 1 s).
    pub agent_delay: Duration,
    /// The exec agent's pause between pty reads (the real agent: 1 ms).
    pub agent_read_interval: Duration,
    /// How long the session-logging upload delays a session's close (cluster exec logging
    /// OVERRIDE).
    pub session_log_upload: Duration,
    /// How long each QR lives before the simulator rotates it.
    pub qr_rotate: Duration,
    /// A simulated phone scans any QR shown this long.
    pub auto_scan_after: Option<Duration>,
    /// Serve HTTPS/WSS under a private CA made at start ([`tls`]).
    pub tls: bool,
    /// The host stream URLs name (default: the listener's address).
    pub stream_host: Option<String>,
    /// Multiplies the Evolution stand-in's own waits (`--evolution-time-scale`).
    pub evolution_time_scale: f64,
    /// `--whatsapp`; when not given, the scenario's `whatsapp` key, else reachable.
    pub whatsapp: Option<evolution::process::WhatsApp>,
    /// `--evolution-version`; when not given, the scenario's `evolution_version`, else 2.3.7.
    pub evolution_version: Option<evolution::process::Version>,
    /// `--evolution-licence activated`; when not given, the scenario's `evolution_licence`.
    pub evolution_licence: Option<bool>,
    /// `--baileys-patched`: the images' Baileys handles `companion_reg_refresh`.
    pub baileys_patched: bool,
    /// `--pairing-refresh`; when not given, the scenario's `pairing_refresh`.
    pub pairing_refresh: bool,
    /// `--external-evolution CLUSTER/SERVICE=HOST:PORT` (added to the scenario's).
    pub external_evolution: Vec<(String, String)>,
    /// `--ssm-agent-version`; when not given, the scenario's `ssm_agent_version`, else
    /// [`agent_handshake::AGENT_VERSION`].
    pub ssm_agent_version: Option<String>,
}

/// The ready file's content.
#[derive(Debug, Serialize)]
pub struct ReadyInfo {
    pub aws_endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Path of the evoctl.toml written for the scenario.
    pub config: PathBuf,
    pub control: String,
    /// The PEM file holding the lab's CA certificate when it serves TLS (null otherwise).
    pub ca_bundle: Option<PathBuf>,
    /// The AWS config and credentials files for a scenario with `aws_profiles` (null otherwise):
    /// the lab's user is profile `lab`, the scenario's profiles assume roles from it.
    pub aws_config_file: Option<PathBuf>,
    pub aws_credentials_file: Option<PathBuf>,
    /// Every account and region the scenario describes, the primary first.
    pub accounts: Vec<AccountInfo>,
    pub scenario: String,
    pub pid: u32,
    pub env: BTreeMap<&'static str, String>,
}

/// An account-region of the lab.
#[derive(Debug, Serialize)]
pub struct AccountInfo {
    pub account: String,
    pub region: String,
}

/// Load the scenario, bind, write the config and ready files, then serve until SIGINT/SIGTERM.
pub async fn serve(options: LabOptions) -> Result<(), String> {
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let scenario = scenario::load(&options.scenario)?;
    let mut accounts = state::Accounts::from_scenario(&scenario, options.timing)?;
    let region = accounts.primary().region.clone();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port)))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", options.port))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let tls = if options.tls { Some(tls::issue_for(options.stream_host.as_slice())?) } else { None };
    let endpoint = format!("{}://{address}", if tls.is_some() { "https" } else { "http" });
    for account in &mut accounts.list {
        account.endpoint = endpoint.clone();
        account.stream_host = options.stream_host.clone();
    }
    // The stand-in containers' files live beside the ready file (or in the temp dir).
    let root = match &options.ready_file {
        Some(path) => absolute(path).with_extension("containers"),
        None => std::env::temp_dir().join(format!("evoctl-lab-{}-{}", std::process::id(), address.port())),
    };
    let whatsapp = match options.whatsapp {
        Some(whatsapp) => whatsapp,
        None => match scenario.whatsapp.as_deref() {
            Some(text) => text.parse().map_err(|e| format!("scenario {}: whatsapp: {e}", options.scenario))?,
            None => evolution::process::WhatsApp::Reachable,
        },
    };
    let version = match options.evolution_version {
        Some(version) => version,
        None => match scenario.evolution_version.as_deref() {
            Some(text) => text.parse().map_err(|e| format!("scenario {}: evolution_version: {e}", options.scenario))?,
            None => evolution::process::Version::V237,
        },
    };
    let activated = match options.evolution_licence {
        Some(activated) => activated,
        None => match scenario.evolution_licence.as_deref() {
            Some(text) => evolution::licence_activated(text)
                .map_err(|e| format!("scenario {}: evolution_licence: {e}", options.scenario))?,
            None => false,
        },
    };
    let whatsapp_endpoint = whatsapp::start(whatsapp == evolution::process::WhatsApp::Reachable).await?;
    let mut container_env = Vec::new();
    if let Some(ca) = &whatsapp_endpoint.ca_pem {
        let path = sibling(options.ready_file.as_deref().map(absolute).as_deref(), "whatsapp-ca.pem");
        write_atomically(&path, ca)?;
        container_env.push(("NODE_EXTRA_CA_CERTS".to_owned(), path.display().to_string()));
    }
    let agents = agent::AgentHub::new(agent::AgentOptions {
        agent_delay: options.agent_delay,
        read_interval: options.agent_read_interval,
        session_log_upload: options.session_log_upload,
        root,
        container_env,
        agent_version: options
            .ssm_agent_version
            .clone()
            .or_else(|| scenario.ssm_agent_version.clone())
            .unwrap_or_else(|| agent_handshake::AGENT_VERSION.to_owned()),
    })
    .map_err(|e| format!("cannot prepare the exec agent's container dir: {e}"))?;
    let mut externals: indexmap::IndexMap<String, String> = scenario
        .services
        .iter()
        .filter_map(|(key, service)| service.external_evolution.as_ref().map(|e| (key.clone(), e.address.clone())))
        .collect();
    externals.extend(options.external_evolution.iter().cloned());
    let evolution = evolution::EvolutionHub::new(evolution::SimOptions {
        qr_rotate: options.qr_rotate,
        auto_scan_after: options.auto_scan_after,
        time_scale: options.evolution_time_scale,
        whatsapp,
        version,
        activated,
        baileys_patched: options.baileys_patched,
        pairing_refresh: options.pairing_refresh || scenario.pairing_refresh,
        tick: options.tick,
        externals,
    });
    for (target, spec) in &scenario.receiver {
        evolution.receiver.verify_with(target, &spec.verify_with);
    }
    for (account, (_, spec)) in accounts.list.iter().zip(scenario.account_specs()) {
        evolution.seed(account, &spec.linked_instances)?;
    }
    let shared = Arc::new(hub::Shared::new(
        accounts,
        options.access_key_id.clone(),
        options.secret_access_key.clone(),
        evolution,
    ));
    let lab = server::Lab { shared: Arc::clone(&shared), agents: Arc::new(agents) };

    let ticker = Arc::clone(&shared);
    let tick = options.tick;
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            let mut accounts = ticker.accounts.lock().expect("lab lock");
            accounts.advance(state::now_ms());
            ticker.evolution.tick(&mut accounts);
        }
    });

    let ready_file = options.ready_file.as_deref().map(absolute);
    let config_path =
        options.config_out.as_deref().map(absolute).unwrap_or_else(|| default_config_path(ready_file.as_deref()));
    let config_text = format!(
        "# evoctl.toml for the lab scenario `{}` ({})\n{}",
        options.scenario,
        scenario.description,
        toml::to_string(&scenario.evoctl).map_err(|e| e.to_string())?.replace("{lab}", &endpoint)
    );
    write_atomically(&config_path, &config_text)?;
    let ca_bundle = match &tls {
        Some(tls) => {
            let path = ca_bundle_path(ready_file.as_deref());
            write_atomically(&path, &tls.ca_pem)?;
            Some(path)
        }
        None => None,
    };
    let profiles = match scenario.aws_profiles.is_empty() {
        true => None,
        false => Some(write_aws_profiles(ready_file.as_deref(), &scenario, &options, &region)?),
    };
    let mut env = BTreeMap::from([
        ("AWS_ENDPOINT_URL", endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", options.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", options.secret_access_key.clone()),
        ("AWS_REGION", region.clone()),
        ("AWS_DEFAULT_REGION", region.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("EVOCTL_CONFIG", config_path.display().to_string()),
        ("EVOCTL_WHATSAPP_ENDPOINT", format!("localhost:{}", whatsapp_endpoint.address.port())),
    ]);
    if let Some(path) = &ca_bundle {
        env.insert("AWS_CA_BUNDLE", path.display().to_string());
    }
    if let Some((config, credentials)) = &profiles {
        env.insert("AWS_CONFIG_FILE", config.display().to_string());
        env.insert("AWS_SHARED_CREDENTIALS_FILE", credentials.display().to_string());
    }
    let account_list = shared
        .accounts
        .lock()
        .expect("lab lock")
        .list
        .iter()
        .map(|a| AccountInfo { account: a.account.clone(), region: a.region.clone() })
        .collect();
    let ready = ReadyInfo {
        aws_endpoint: endpoint.clone(),
        region,
        access_key_id: options.access_key_id.clone(),
        secret_access_key: options.secret_access_key.clone(),
        config: config_path,
        control: format!("{endpoint}/_lab"),
        ca_bundle,
        aws_config_file: profiles.as_ref().map(|(config, _)| config.clone()),
        aws_credentials_file: profiles.as_ref().map(|(_, credentials)| credentials.clone()),
        accounts: account_list,
        scenario: options.scenario.clone(),
        pid: std::process::id(),
        env,
    };
    let ready_json = serde_json::to_string_pretty(&ready).map_err(|e| e.to_string())?;
    if let Some(path) = &ready_file {
        write_atomically(path, &ready_json)?;
    }
    cli::announce(&ready, &ready_json, ready_file.is_none());

    match tls {
        Some(tls) => tls::serve(listener, server::router(lab), tls.server_config, shutdown_signal()).await,
        None => axum::serve(listener, server::router(lab))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| e.to_string()),
    }
}

/// Write the scenario's AWS config file (`[profile lab]` and its `aws_profiles`) and a
/// credentials file holding the lab's user as profile `lab`, beside the ready file.
fn write_aws_profiles(
    ready_file: Option<&Path>,
    scenario: &scenario::Scenario,
    options: &LabOptions,
    region: &str,
) -> Result<(PathBuf, PathBuf), String> {
    let base = match ready_file {
        Some(path) => path.with_file_name(file_stem(path)),
        None => std::env::temp_dir().join(format!("evoctl-lab-{}", std::process::id())),
    };
    let (config_path, credentials_path) = (
        PathBuf::from(format!("{}-aws-config", base.display())),
        PathBuf::from(format!("{}-aws-credentials", base.display())),
    );
    let mut config =
        format!("# AWS config for the lab scenario `{}`\n[profile lab]\nregion = {region}\n", options.scenario);
    for (name, keys) in &scenario.aws_profiles {
        config.push_str(&format!("\n[profile {name}]\n"));
        for (key, value) in keys {
            config.push_str(&format!("{key} = {value}\n"));
        }
    }
    let credentials = format!(
        "[lab]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        options.access_key_id, options.secret_access_key
    );
    write_atomically(&config_path, &config)?;
    write_atomically(&credentials_path, &credentials)?;
    Ok((config_path, credentials_path))
}

/// `ready.json` -> `ready-NAME` beside it; no ready file -> a file in the temp dir.
fn sibling(ready_file: Option<&Path>, name: &str) -> PathBuf {
    match ready_file {
        Some(path) => path.with_file_name(format!("{}-{name}", file_stem(path))),
        None => std::env::temp_dir().join(format!("evoctl-lab-{}-{name}", std::process::id())),
    }
}

/// `ready.json` -> `ready-ca.pem` beside it; no ready file -> a file in the temp dir.
fn ca_bundle_path(ready_file: Option<&Path>) -> PathBuf {
    match ready_file {
        Some(path) => path.with_file_name(format!("{}-ca.pem", file_stem(path))),
        None => std::env::temp_dir().join(format!("evoctl-lab-{}-ca.pem", std::process::id())),
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "lab".into())
}

/// `ready.json` -> `ready-evoctl.toml` beside it; no ready file -> a file in the temp dir.
fn default_config_path(ready_file: Option<&Path>) -> PathBuf {
    match ready_file {
        Some(path) => path.with_file_name(format!("{}-evoctl.toml", file_stem(path))),
        None => std::env::temp_dir().join(format!("evoctl-lab-{}.toml", std::process::id())),
    }
}

/// Write via a temporary file and rename, so readers never see a half-written file.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let temporary = path.with_extension("tmp-write");
    std::fs::write(&temporary, text).map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return interrupt.await.unwrap_or(()),
        };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
