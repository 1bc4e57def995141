//! The command line: clap definitions only.
//!
//! These types describe argv and nothing else; [`crate::commands`] turns them into work. Every
//! flag that can also come from the environment names its variable here (`env = ...`).

use crate::env_vars::EnvVars;
use crate::output::OutputFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub mod complete;

/// What `--version` says after the name: the package version and the commit it was built from
/// (short hash and commit date, or `unknown` outside a git checkout; see build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("EVOCTL_COMMIT"), ")");

/// Operate an Evolution API (WhatsApp over Baileys) service on AWS ECS Fargate.
#[derive(Debug, Parser)]
#[command(name = "evoctl", version = VERSION, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every command.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Config file [default: ./evoctl.toml]
    #[arg(long, global = true, env = EnvVars::EVOCTL_CONFIG, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// AWS profile (overrides [aws] profile in the config file)
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// AWS region (overrides [aws] region in the config file)
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// Output format for data on stdout
    #[arg(long, global = true, value_enum, default_value_t, env = EnvVars::EVOCTL_OUTPUT)]
    pub output: OutputFormat,
    /// More log detail on stderr (-v, -vv, -vvv)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only data and errors: no notes or progress
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter evoctl.toml (the seed's defaults)
    Init(InitArgs),
    /// Service, scaling, deployment settings and live tasks per environment
    Status(StatusArgs),
    /// Print the one live task id (exit 3 none, 4 more than one), or stop one task
    Task(TaskArgs),
    /// Run a command in the container and return its exit status
    Exec(ExecArgs),
    /// Interactive shell in the container
    Shell(ShellArgs),
    /// Run a node script in the container
    Node(NodeArgs),
    /// Copy files to or from the container (ENV:PATH on one side), verified by SHA-256
    Cp(CpArgs),
    /// Evolution instance lifecycle
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Read or write an instance's webhook
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Render a QR code in the terminal or to PNG/SVG
    Qr(QrArgs),
    /// Bring one environment to its configured scaling (plan; --apply to change)
    Scale(ScaleArgs),
    /// Bring every environment to its configured scaling, safely (plan; --apply to change)
    Enforce(EnforceArgs),
    /// Replace the live task safely: stop, then start, and check the instance came back open
    Redeploy(RedeployArgs),
    /// Pre-deploy isolation audit (exit 1 on findings)
    Audit(AuditArgs),
    /// The connect runbook: preflight, QR, wait until open, webhook, summary
    Connect(ConnectArgs),
    /// Troubleshoot an environment layer by layer
    Doctor(DoctorArgs),
    /// Evidence of a conflict/replaced loop (logs and state flapping)
    Conflicts(ConflictsArgs),
    /// Any Evolution API call, made inside the task; the answer as JSON
    Api(ApiArgs),
    /// The Evolution container's log (awslogs), each line with its task id
    Logs(LogsArgs),
    /// Forward local ports to ports in the task (or hosts it reaches) until Ctrl-C
    PortForward(PortForwardArgs),
    /// Forward the Evolution Manager to a local port and print its URL, until Ctrl-C
    Manager(ManagerArgs),
    /// Fetch Evolution's /metrics once through a port forward, or say why it is off
    Metrics(MetricsArgs),
    /// Print the IAM policy to paste (every command; --read-only: the read commands)
    IamPolicy(IamPolicyArgs),
    /// Print shell completions
    Completions(CompletionsArgs),
}

impl Command {
    /// Whether the command ends cleanly by itself on Ctrl-C/SIGTERM (it has an exec session to
    /// end or a change to stop between steps); the others are simply dropped.
    pub fn cleans_up_on_interrupt(&self) -> bool {
        matches!(
            self,
            Command::Exec(_)
                | Command::Node(_)
                | Command::Cp(_)
                | Command::Shell(_)
                | Command::PortForward(_)
                | Command::Manager(_)
                | Command::Metrics(_)
                | Command::Connect(_)
                | Command::Scale(_)
                | Command::Enforce(_)
                | Command::Redeploy(_)
                | Command::Task(TaskArgs { command: Some(TaskCommand::Stop(_)), .. })
        )
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Replace an existing file
    #[arg(long)]
    pub force: bool,
    /// Find the Evolution API services in AWS and write their environments (read-only)
    #[arg(long)]
    pub discover: bool,
    /// With --discover: a profile to look in (repeatable) [default: the current credentials]
    #[arg(long = "discover-profile", value_name = "NAME", requires = "discover")]
    pub discover_profiles: Vec<String>,
    /// With --discover: a region to look in (repeatable) [default: each profile's region]
    #[arg(long = "discover-region", value_name = "REGION", requires = "discover")]
    pub discover_regions: Vec<String>,
    /// With --discover: print the config instead of writing it
    #[arg(long, requires = "discover")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Environments to show [default: all in the config file]
    #[arg(add = complete::environment_names())]
    pub envs: Vec<String>,
    /// Exit 1 when an environment has drifted from evoctl.toml or is unsafe (two live
    /// connections on one number)
    #[arg(long)]
    pub check: bool,
    /// Also read each environment's instance from inside its task (one exec session per
    /// environment with one ready task): both states and the last disconnect
    #[arg(long)]
    pub instances: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// Probe the webhook receiver from the task even when Evolution's log shows deliveries
    /// (without it the probe is sent only when the log of the last 15 minutes holds none)
    #[arg(long)]
    pub probe: bool,
}

/// `task ENV`, or `task stop ENV TASK_ID`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TaskArgs {
    /// Environment name from the config file
    #[arg(required = true, add = complete::environment_names())]
    pub env: Option<String>,
    #[command(subcommand)]
    pub command: Option<TaskCommand>,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Stop one task of the environment (ECS StopTask with a reason) and wait until it is
    /// STOPPED
    Stop(TaskStopArgs),
}

#[derive(Debug, Args)]
pub struct TaskStopArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// The task to stop: its id or ARN (`evoctl status ENV` lists them)
    pub task_id: String,
    /// Stop it even when it is a protected environment's only live task
    #[arg(long)]
    pub yes: bool,
    /// Why (ECS shows it as the task's stoppedReason; at most 255 characters)
    /// [default: evoctl task stop ENV]
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Give up waiting for STOPPED after this long (the StopTask stays sent)
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct EnvArg {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
}

/// How commands reach the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Backend {
    /// evoctl's own Session Manager client
    #[default]
    Native,
    /// `aws ecs execute-command` with session-manager-plugin
    AwsCli,
}

/// Which environment and container an exec-based command goes to, and how.
#[derive(Debug, Args)]
pub struct ExecTargetArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// Container name [default: from the config file]
    #[arg(long)]
    pub container: Option<String>,
    /// Transport to the container
    #[arg(long, value_enum, default_value_t, env = EnvVars::EVOCTL_BACKEND)]
    pub backend: Backend,
    /// How often the task is checked during a session (ms)
    #[arg(long, hide = true, default_value_t = 5000, env = EnvVars::EVOCTL_WATCHDOG_MS)]
    pub watchdog_ms: u64,
}

/// What a command run in the container reads on its stdin.
#[derive(Debug, Args)]
pub struct StdinArgs {
    /// Forward stdin even from a terminal (read until end of input, Ctrl-D); without it, stdin
    /// is forwarded when it is a pipe or a file
    #[arg(short = 'i', long, conflicts_with = "no_stdin")]
    pub interactive: bool,
    /// Send no stdin to the command: it reads an empty input
    #[arg(short = 'T', long)]
    pub no_stdin: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub target: ExecTargetArgs,
    #[command(flatten)]
    pub stdin: StdinArgs,
    /// Give up after this long, AWS calls included (e.g. 90s, 10m; a bare number is seconds)
    #[arg(long, default_value = "300s", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub timeout: std::time::Duration,
    /// The command and its arguments (after --)
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    #[command(flatten)]
    pub target: ExecTargetArgs,
    /// End the shell after this long without input or output (the service's own limit is 20m)
    #[arg(long, default_value = "20m", value_name = "DURATION", value_parser = crate::duration::parse, env = EnvVars::EVOCTL_SHELL_IDLE_TIMEOUT)]
    pub idle_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub target: ExecTargetArgs,
    #[command(flatten)]
    pub stdin: StdinArgs,
    /// Give up after this long, AWS calls included (e.g. 90s, 10m; a bare number is seconds)
    #[arg(long, default_value = "300s", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub timeout: std::time::Duration,
    /// Script text to evaluate
    #[arg(short = 'e', long = "eval", conflicts_with = "file", value_name = "JS")]
    pub eval: Option<String>,
    /// Script file to run, or - to read the script from stdin
    #[arg(required_unless_present = "eval")]
    pub file: Option<PathBuf>,
}

/// `cp SRC DST`: one side `ENV:PATH` (a path in the environment's container), the other local.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// What to copy: a local path, or ENV:PATH in the container (a relative PATH starts at the
    /// container's working directory)
    #[arg(value_name = "SRC")]
    pub source: String,
    /// Where to: a local path, or ENV:PATH (an existing directory receives the source under its
    /// own name)
    #[arg(value_name = "DST")]
    pub destination: String,
    /// Copy a directory and everything in it
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Container name [default: from the config file]
    #[arg(long)]
    pub container: Option<String>,
    /// Transport to the container
    #[arg(long, value_enum, default_value_t, env = EnvVars::EVOCTL_BACKEND)]
    pub backend: Backend,
    /// How often the task is checked during the copy (ms)
    #[arg(long, hide = true, default_value_t = 5000, env = EnvVars::EVOCTL_WATCHDOG_MS)]
    pub watchdog_ms: u64,
    /// Give up after this long, AWS calls included (e.g. 90s, 10m; a bare number is seconds)
    #[arg(long, default_value = "60m", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct InstanceArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// Instance name [default: the environment's instance]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct DestructiveInstanceArgs {
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// Confirm a destructive action on a protected environment
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct InstanceDeleteArgs {
    #[command(flatten)]
    pub instance: DestructiveInstanceArgs,
    /// Give up waiting for Evolution's cleanup after this long (2.3.7 removes the instance only
    /// after its REMOVE_INSTANCE webhook was delivered or retried for about 20 minutes)
    #[arg(long, default_value = "30m", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// List instances
    List(EnvArg),
    /// Create the instance with the environment's settings
    Create(InstanceArgs),
    /// Connection state (open, connecting, close)
    State(InstanceArgs),
    /// Show the QR code or pairing code
    Connect(InstanceConnectArgs),
    /// Log the instance out of WhatsApp
    Logout(DestructiveInstanceArgs),
    /// Delete the instance and wait until Evolution has removed it
    Delete(InstanceDeleteArgs),
    /// Restart the instance
    Restart(InstanceArgs),
}

#[derive(Debug, Args)]
pub struct InstanceConnectArgs {
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// Ask for a pairing code for this phone number (digits, with country code)
    #[arg(long, value_name = "DIGITS")]
    pub pairing_number: Option<String>,
    /// Also write the QR as PNG
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Show the instance's webhook (the jwt_key only as its length)
    Show(InstanceArgs),
    /// Set the webhook from the config file (secret sent over stdin)
    Set(InstanceArgs),
    /// From inside the task, POST a probe signed as Evolution signs (the instance's jwt_key)
    /// to the webhook URL and report the receiver's answer (exit 1 when it is not 2xx)
    Test(WebhookTestArgs),
}

#[derive(Debug, Args)]
pub struct WebhookTestArgs {
    #[command(flatten)]
    pub instance: InstanceArgs,
    /// Give up on the receiver after this long
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct QrArgs {
    /// The QR text, or - to read stdin
    pub code: Option<String>,
    /// Write a PNG
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Write an SVG
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Find the `code` in pasted `aws ecs execute-command` output
    #[arg(long)]
    pub from_output: bool,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// Apply the plan (default: only print it)
    #[arg(long)]
    pub apply: bool,
    /// Give up waiting for tasks after this long (e.g. 90s, 10m)
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct RedeployArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// Run this task definition: a revision of the service's family (e.g. 32), FAMILY:REV or
    /// an ARN [default: the service's current one]
    #[arg(long, value_name = "REV")]
    pub task_definition: Option<String>,
    /// Replace the task even when the session's keys would not survive it (the number then
    /// needs a new link)
    #[arg(long)]
    pub yes: bool,
    /// Give up waiting after this long (e.g. 90s, 10m)
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct EnforceArgs {
    /// Apply the plan (default: only print it)
    #[arg(long)]
    pub apply: bool,
    /// Give up waiting for tasks after this long (e.g. 90s, 10m)
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub timeout: std::time::Duration,
}

/// Audit report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AuditFormat {
    #[default]
    Table,
    Json,
    Github,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Environments to audit [default: all]
    #[arg(add = complete::environment_names())]
    pub envs: Vec<String>,
    /// Report format (overrides --output)
    #[arg(long, value_enum)]
    pub format: Option<AuditFormat>,
    /// Only these rule ids
    #[arg(long = "rule", value_name = "ID")]
    pub rules: Vec<String>,
    /// Skip these rule ids
    #[arg(long = "skip", value_name = "ID")]
    pub skip: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// Instance name [default: the environment's instance]
    pub name: Option<String>,
    /// Link with a pairing code for this number instead of a QR
    #[arg(long, value_name = "DIGITS")]
    pub pairing_number: Option<String>,
    /// Also write each QR as PNG
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Give up after this long (e.g. 10m, 90s)
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub timeout: std::time::Duration,
    /// Apply the scaling plan first when the preflight finds drift
    #[arg(long)]
    pub enforce: bool,
    /// How long the instance must stay open to count as linked
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = crate::duration::parse, hide = true)]
    pub stable_for: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// HTTP method: GET, POST, PUT, PATCH or DELETE
    pub method: String,
    /// Path on the Evolution API, with its query (e.g. /instance/fetchInstances)
    pub path: String,
    /// Request body: JSON text, or @FILE to read it from a file
    #[arg(long, value_name = "JSON|@FILE")]
    pub data: Option<String>,
    /// Check first (in the same session) that this Evolution process holds the instance NAME
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConflictsArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// How far back to look (e.g. 15m, 2h)
    #[arg(long, default_value = "15m", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub since: std::time::Duration,
    /// Also sample the instance's connectionState this long for flapping (0 to skip)
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub sample: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct PortForwardArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// What to forward: REMOTE or LOCAL:REMOTE (LOCAL 0 or omitted: a free port, printed);
    /// one session each
    #[arg(required = true, value_name = "[LOCAL:]REMOTE")]
    pub forwards: Vec<crate::portfwd::ForwardSpec>,
    /// Forward to this host as the task reaches it (a database, Redis) instead of the task itself
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Local address to listen on (another than loopback exposes the forward to the network)
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub address: std::net::IpAddr,
    /// Container name [default: from the config file]
    #[arg(long)]
    pub container: Option<String>,
    /// How often the task is checked while forwarding (ms)
    #[arg(long, hide = true, default_value_t = 5000, env = EnvVars::EVOCTL_WATCHDOG_MS)]
    pub watchdog_ms: u64,
}

#[derive(Debug, Args)]
pub struct ManagerArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// Open the URL in the default browser too
    #[arg(long)]
    pub open: bool,
    /// Local address to listen on (another than loopback exposes the Manager to the network)
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub address: std::net::IpAddr,
    /// Local port [default: a free one]
    #[arg(long, default_value_t = 0, value_name = "LOCAL")]
    pub port: u16,
    /// Container name [default: from the config file]
    #[arg(long)]
    pub container: Option<String>,
    /// How often the task is checked while forwarding (ms)
    #[arg(long, hide = true, default_value_t = 5000, env = EnvVars::EVOCTL_WATCHDOG_MS)]
    pub watchdog_ms: u64,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// Container name [default: from the config file]
    #[arg(long)]
    pub container: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Environment name from the config file
    #[arg(add = complete::environment_names())]
    pub env: String,
    /// How far back to start (e.g. 5m, 2h)
    #[arg(long, default_value = "15m", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub since: std::time::Duration,
    /// Keep reading new lines until Ctrl-C
    #[arg(short, long)]
    pub follow: bool,
    /// Only records matching this regular expression
    #[arg(long, value_name = "RE", value_parser = parse_regex)]
    pub grep: Option<regex::Regex>,
    /// Only the records evoctl recognises as this kind
    #[arg(long, value_enum)]
    pub kind: Option<crate::evolution::logs::Kind>,
    /// Read at most this many events of the window
    #[arg(long, default_value_t = 10_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub limit: u64,
}

#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    /// Only what `status`, `audit`, `doctor`, `logs` and `conflicts` call (docs/iam/read-only.json)
    #[arg(long)]
    pub read_only: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for
    pub shell: clap_complete::Shell,
}

/// A regular expression (Rust `regex` syntax).
pub fn parse_regex(text: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(text).map_err(|e| format!("`{text}` is not a regular expression: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
