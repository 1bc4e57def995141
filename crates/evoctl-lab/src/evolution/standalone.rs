//! `evoctl-lab evolution`: one Evolution 2.3.7 stand-in process on its own, outside any lab
//! account: its own in-memory database, the environment of an `--env-file` read as the real
//! server reads it, the API on `127.0.0.1:--port`, and on a second port the control API with the
//! lab's paths (`/_lab/receiver`, `/_lab/webhooks[/…]`, `/_lab/evolution[/processes|/faults]`,
//! `/_lab/phone/*`, `/_lab/logs`). Its log lines go to stdout, as the server's do. The ready file
//! (written atomically once both ports are bound) says where everything is.

use super::env::{EvoConfig, read_env_file};
use super::{EvolutionHub, SimOptions, control};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How to run the standalone stand-in.
#[derive(Debug, Clone)]
pub struct StandaloneOptions {
    pub ready_file: PathBuf,
    pub port: u16,
    pub env_file: Option<PathBuf>,
    pub sim: SimOptions,
}

/// Serve until SIGINT/SIGTERM.
pub async fn run(options: StandaloneOptions) -> Result<(), String> {
    let env = match &options.env_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            read_env_file(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Default::default(),
    };
    let config = EvoConfig::from_env(&env);
    let hub = Arc::new(EvolutionHub::new(options.sim.clone()));
    let (port, process, server) = hub
        .start_process(
            "standalone",
            config.clone(),
            options.port,
            Some(std::process::id()),
            super::keys::KeyStore::task("standalone"),
        )
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", options.port))?;
    hub.adopt("standalone", port, process, server);
    let control = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| format!("cannot bind the control port: {e}"))?;
    let control_port = control.local_addr().map_err(|e| e.to_string())?.port();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let drain_hub = Arc::clone(&hub);
    let drain_logs = Arc::clone(&logs);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(std::time::Duration::from_millis(20));
        loop {
            interval.tick().await;
            let lines = drain_hub.drain_logs();
            if lines.is_empty() {
                continue;
            }
            let mut out = std::io::stdout().lock();
            for line in &lines {
                let _ = writeln!(out, "{}", line.message);
            }
            let _ = out.flush();
            drain_logs.lock().expect("lab lock").extend(lines);
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let control_url = format!("http://127.0.0.1:{control_port}/_lab");
    let ready = json!({
        "url": url,
        "port": port,
        "control": control_url,
        "receiver": format!("{control_url}/webhooks"),
        "pid": std::process::id(),
        "api_key": config.api_key,
        "client_name": config.client_name,
        "database_uri": config.database_uri,
        "whatsapp": options.sim.whatsapp,
        "time_scale": options.sim.time_scale,
    });
    let path = std::path::absolute(&options.ready_file).unwrap_or_else(|_| options.ready_file.clone());
    super::super::write_atomically(&path, &serde_json::to_string_pretty(&ready).map_err(|e| e.to_string())?)?;
    let _ = writeln!(std::io::stderr(), "evoctl-lab: Evolution 2.3.7 stand-in on {url} (control {control_url})");
    axum::serve(control, control::router(hub, logs))
        .with_graceful_shutdown(super::super::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
