//! `evoctl-lab`'s command line: `serve` (run a scenario), `evolution` (one Evolution stand-in
//! on its own), `scenarios` (list the built-ins), `env` and `fake-plugin`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use super::evolution::process::{Version, WhatsApp};
use super::{LabOptions, ReadyInfo, scenario, state::Timing};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A local stand-in for the AWS account evoctl operates (ECS, Auto Scaling, SSM, Logs, STS, Lambda).
#[derive(Debug, Parser)]
#[command(name = "evoctl-lab", version, max_term_width = 100)]
struct LabCli {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Serve a scenario on 127.0.0.1 until interrupted
    Serve(ServeArgs),
    /// Serve one Evolution API 2.3.7 stand-in process on its own until interrupted
    Evolution(EvolutionArgs),
    /// List the built-in scenarios
    Scenarios,
    /// Act as a stand-in session-manager-plugin (same arguments and output)
    FakePlugin {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print `export NAME=VALUE` lines for a running lab's environment (for `eval`)
    Env {
        /// The lab's ready file
        ready_file: PathBuf,
    },
}

/// A flag given twice takes the last value (tests start from fast defaults and override some).
#[derive(Debug, clap::Args)]
#[command(args_override_self = true)]
struct ServeArgs {
    /// Built-in scenario name or path to a scenario TOML file
    #[arg(long, default_value = "seed")]
    scenario: String,
    /// Port to listen on (0 picks a free one)
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write endpoint, credentials, config path and env here (JSON) once ready
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Where to write the scenario's evoctl.toml [default: <ready-file stem>-evoctl.toml]
    #[arg(long, value_name = "PATH")]
    config_out: Option<PathBuf>,
    /// Serve HTTPS and WSS under a private CA made at start; its certificate is written as PEM
    /// to <ready-file stem>-ca.pem (the ready file's `ca_bundle`, `AWS_CA_BUNDLE` in its env)
    #[arg(long)]
    tls: bool,
    /// Host name the data channel's stream URLs use instead of 127.0.0.1 (the real streamUrl is
    /// another host than the ECS endpoint; e.g. `localhost`, which the TLS certificate covers)
    #[arg(long, value_name = "HOST")]
    stream_host: Option<String>,
    /// Time a new task takes from PROVISIONING to RUNNING
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    task_start_ms: u64,
    /// Time a stopping task takes to reach STOPPED
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    task_stop_ms: u64,
    /// Time from task RUNNING to ExecuteCommandAgent RUNNING
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    agent_start_ms: u64,
    /// Scheduler tick
    #[arg(long, default_value_t = 20, value_name = "MS")]
    tick_ms: u64,
    /// Delay before the exec agent starts reading command output (the real agent waits 1 s)
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    agent_delay_ms: u64,
    /// The exec agent's pause between pty reads (the real agent sleeps 1 ms)
    #[arg(long, default_value_t = 1, value_name = "MS")]
    agent_read_interval_ms: u64,
    /// How long the session-logging step's upload delays a session's close when the cluster's
    /// exec logging is OVERRIDE
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    session_log_upload_ms: u64,
    /// How long each QR code lives before the Evolution stand-in rotates it (2.3.7: 45 s)
    #[arg(long, default_value_t = 45_000, value_name = "MS")]
    qr_rotate_ms: u64,
    /// A simulated phone scans whatever QR is shown this long after a connect began (demo)
    #[arg(long, value_name = "MS")]
    auto_scan_after_ms: Option<u64>,
    /// Multiply the Evolution stand-in's own waits by this (create's 5 s, connect's 2 s, the
    /// first QR's 3 s, the reconnect loop, webhook retry delays and timeouts, DEL_INSTANCE)
    #[arg(long, default_value_t = 1.0, value_name = "F", value_parser = time_scale)]
    evolution_time_scale: f64,
    /// Whether the Evolution stand-ins reach WhatsApp [default: the scenario's `whatsapp`,
    /// else reachable]
    #[arg(long, value_name = "reachable|unreachable|black-hole")]
    whatsapp: Option<WhatsApp>,
    /// The Evolution release the stand-ins play [default: the scenario's `evolution_version`,
    /// else 2.3.7]
    #[arg(long, value_name = "2.3.7|2.4.0-rc2")]
    evolution_version: Option<Version>,
    /// 2.4: whether the stand-ins' databases hold a licence [default: the scenario's
    /// `evolution_licence`, else unlicensed]
    #[arg(long, value_name = "unlicensed|activated", value_parser = licence)]
    evolution_licence: Option<bool>,
    /// The images' Baileys handles WhatsApp's companion_reg_refresh (no released one does)
    #[arg(long)]
    baileys_patched: bool,
    /// WhatsApp answers a QR scan with companion_reg_refresh, retiring the code's pairing secret
    /// (as since 2026-07-28): without --baileys-patched every scan then fails on the phone
    /// [default: the scenario's `pairing_refresh`]
    #[arg(long)]
    pairing_refresh: bool,
    /// The SSM agent version the tasks' agents report: it picks Port sessions' mode and smux
    /// keep-alive [default: the scenario's `ssm_agent_version`, else 3.3.1802.0]
    #[arg(long, value_name = "VERSION")]
    ssm_agent_version: Option<String>,
    /// Tasks of CLUSTER/SERVICE use the Evolution server at HOST:PORT instead of a stand-in
    /// (repeatable)
    #[arg(long, value_name = "CLUSTER/SERVICE=HOST:PORT", value_parser = external)]
    external_evolution: Vec<(String, String)>,
    /// Access key id the lab accepts
    #[arg(long, default_value = "AKIALABEVOCTL0000001")]
    access_key_id: String,
    /// Secret access key the lab verifies signatures with
    #[arg(long, default_value = "lab/secret/key/for/evoctl/0000000000000000")]
    secret_access_key: String,
}

/// `evoctl-lab evolution`'s options.
#[derive(Debug, clap::Args)]
#[command(args_override_self = true)]
struct EvolutionArgs {
    /// Write the API URL, the control URL and the pid here (JSON) once both ports are bound
    #[arg(long, value_name = "PATH")]
    ready_file: PathBuf,
    /// Port of the Evolution API (0 picks a free one); the control API gets a port of its own
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The process environment, KEY=VALUE lines (unset keys take the image's .env)
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Multiply the stand-in's own waits by this
    #[arg(long, default_value_t = 1.0, value_name = "F", value_parser = time_scale)]
    evolution_time_scale: f64,
    /// Whether the stand-in reaches WhatsApp
    #[arg(long, default_value = "reachable", value_name = "reachable|unreachable|black-hole")]
    whatsapp: WhatsApp,
    /// The Evolution release the stand-in plays
    #[arg(long, default_value = "2.3.7", value_name = "2.3.7|2.4.0-rc2")]
    evolution_version: Version,
    /// 2.4: whether its database holds a licence
    #[arg(long, default_value = "unlicensed", value_name = "unlicensed|activated", value_parser = licence)]
    evolution_licence: bool,
    /// How long each QR code lives before it rotates (2.3.7: 45 s)
    #[arg(long, default_value_t = 45_000, value_name = "MS")]
    qr_rotate_ms: u64,
    /// A simulated phone scans whatever QR is shown this long after a connect began
    #[arg(long, value_name = "MS")]
    auto_scan_after_ms: Option<u64>,
}

fn licence(text: &str) -> Result<bool, String> {
    super::evolution::licence_activated(text)
}

fn time_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 && value <= 1000.0 => Ok(value),
        _ => Err(format!("`{text}` is not a time scale (a number above 0, e.g. 0.01)")),
    }
}

fn external(text: &str) -> Result<(String, String), String> {
    let (service, address) =
        text.split_once('=').ok_or_else(|| format!("`{text}`: expected CLUSTER/SERVICE=HOST:PORT"))?;
    let port_ok = address.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !service.contains('/') || !port_ok {
        return Err(format!("`{text}`: expected CLUSTER/SERVICE=HOST:PORT"));
    }
    Ok((service.to_owned(), address.to_owned()))
}

/// Entry point of the `evoctl-lab` binary.
pub fn main() -> ExitCode {
    let cli = LabCli::parse();
    match cli.command {
        LabCommand::Scenarios => {
            let mut listing = String::new();
            for (name, _) in scenario::BUILT_IN {
                match scenario::load(name) {
                    Ok(s) => listing.push_str(&format!("{name:<18} {}\n", s.description)),
                    Err(e) => listing.push_str(&format!("{name:<18} (broken: {e})\n")),
                }
            }
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), listing.as_bytes());
            ExitCode::SUCCESS
        }
        LabCommand::FakePlugin { args } => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => {
                let code = runtime.block_on(super::fake_plugin::main(args));
                // A blocked stdin read must not keep the process alive (the real plugin exits).
                runtime.shutdown_background();
                code
            }
            Err(_) => ExitCode::SUCCESS,
        },
        LabCommand::Env { ready_file } => match read_env(&ready_file) {
            Ok(lines) => {
                print!("{lines}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("evoctl-lab: {e}");
                ExitCode::from(2)
            }
        },
        LabCommand::Evolution(args) => {
            let options = super::evolution::standalone::StandaloneOptions {
                ready_file: args.ready_file,
                port: args.port,
                env_file: args.env_file,
                sim: super::evolution::SimOptions {
                    qr_rotate: Duration::from_millis(args.qr_rotate_ms.max(1)),
                    auto_scan_after: args.auto_scan_after_ms.map(Duration::from_millis),
                    time_scale: args.evolution_time_scale,
                    whatsapp: args.whatsapp,
                    version: args.evolution_version,
                    activated: args.evolution_licence,
                    baileys_patched: false,
                    pairing_refresh: false,
                    tick: Duration::from_millis(5),
                    externals: Default::default(),
                },
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("evoctl-lab: cannot start runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(super::evolution::standalone::run(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("evoctl-lab: {e}");
                    ExitCode::from(2)
                }
            }
        }
        LabCommand::Serve(args) => {
            let options = LabOptions {
                scenario: args.scenario,
                port: args.port,
                ready_file: args.ready_file,
                config_out: args.config_out,
                timing: Timing {
                    task_start_ms: args.task_start_ms,
                    task_stop_ms: args.task_stop_ms,
                    agent_start_ms: args.agent_start_ms,
                },
                tick: Duration::from_millis(args.tick_ms.max(1)),
                access_key_id: args.access_key_id,
                secret_access_key: args.secret_access_key,
                agent_delay: Duration::from_millis(args.agent_delay_ms),
                agent_read_interval: Duration::from_millis(args.agent_read_interval_ms),
                session_log_upload: Duration::from_millis(args.session_log_upload_ms),
                qr_rotate: Duration::from_millis(args.qr_rotate_ms.max(1)),
                auto_scan_after: args.auto_scan_after_ms.map(Duration::from_millis),
                tls: args.tls,
                stream_host: args.stream_host,
                evolution_time_scale: args.evolution_time_scale,
                whatsapp: args.whatsapp,
                evolution_version: args.evolution_version,
                evolution_licence: args.evolution_licence,
                baileys_patched: args.baileys_patched,
                pairing_refresh: args.pairing_refresh,
                external_evolution: args.external_evolution,
                ssm_agent_version: args.ssm_agent_version,
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("evoctl-lab: cannot start runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(super::serve(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("evoctl-lab: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Say where the lab is; without a ready file the ready JSON goes to stdout.
pub(super) fn announce(ready: &ReadyInfo, ready_json: &str, to_stdout: bool) {
    let ca = ready.ca_bundle.as_ref().map(|path| format!(", CA {}", path.display())).unwrap_or_default();
    eprintln!(
        "evoctl-lab: scenario `{}` on {} (config {}{ca})",
        ready.scenario,
        ready.aws_endpoint,
        ready.config.display()
    );
    if to_stdout {
        println!("{ready_json}");
    }
}

/// The ready file's `env` map as shell `export` lines, values single-quoted.
fn read_env(ready_file: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(ready_file).map_err(|e| format!("cannot read {}: {e}", ready_file.display()))?;
    let ready: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a ready file: {e}", ready_file.display()))?;
    let env = ready["env"].as_object().ok_or_else(|| format!("{} has no `env` map", ready_file.display()))?;
    Ok(env
        .iter()
        .map(|(name, value)| {
            let value = value.as_str().unwrap_or_default().replace('\'', "'\\''");
            format!("export {name}='{value}'\n")
        })
        .collect())
}
