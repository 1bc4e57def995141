//! Command implementations: each turns parsed arguments into work and a printed result.
//!
//! [`run`] dispatches; [`Context`] carries what every command shares (global flags, the printer)
//! and loads the config file and AWS configuration only for commands that need them.

mod api;
mod audit;
mod conflicts;
mod connect;
mod cp;
mod doctor;
mod exec;
mod iam_policy;
mod init;
mod instance;
mod logs;
mod manager;
mod port_forward;
mod qr;
mod reach;
mod redeploy;
mod scale;
mod secrets;
mod shell;
mod status;
mod task;
mod webhook;

use crate::aws::credentials::{NamedBy, ProfileNamedBy};
use crate::aws::{Aws, AwsSettings, Fleet};
use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::{Config, Environment};
use crate::error::Result;
use crate::exit;
use crate::output::Printer;

/// What every command can use.
pub struct Context {
    pub global: GlobalArgs,
    pub printer: Printer,
}

impl Context {
    /// Load and validate the config file (`--config`, `EVOCTL_CONFIG`, `./evoctl.toml`).
    pub fn config(&self) -> Result<Config> {
        Config::load(self.global.config.as_deref())
    }

    /// The `--profile`/`--region` flags, which win over the config file.
    pub fn aws_flags(&self) -> AwsSettings {
        AwsSettings {
            region: self.global.region.clone(),
            profile: self.global.profile.clone(),
            profile_named_by: ProfileNamedBy(Some(NamedBy::Flag("--profile"))),
            ..Default::default()
        }
    }

    /// The AWS chains of every environment of the config (each distinct chain once).
    pub async fn aws(&self, config: &Config) -> Result<Fleet> {
        let environments: Vec<&Environment> = config.environments.iter().collect();
        Fleet::load(&self.aws_flags(), &config.aws, &environments).await
    }

    /// The AWS chain one environment is read with: flags, then `env.NAME.aws`, then `[aws]`,
    /// then the SDK chain.
    pub async fn aws_for(&self, config: &Config, env: &Environment) -> Result<Aws> {
        Aws::load(&crate::aws::fleet::settings_for(&self.aws_flags(), &config.aws, env)).await
    }
}

/// Run one parsed command line; returns the exit code on success.
pub async fn run(cli: Cli, printer: Printer) -> Result<u8> {
    let context = Context { global: cli.global, printer };
    match cli.command {
        Command::Init(args) => init::run(&context, &args).await,
        Command::Status(args) => status::run(&context, &args).await,
        Command::Task(args) => task::run(&context, &args).await,
        Command::Exec(args) => Ok(exec::exec(&context, &args).await),
        Command::Node(args) => Ok(exec::node(&context, &args).await),
        Command::Cp(args) => cp::run(&context, &args).await,
        Command::Shell(args) => shell::run(&context, &args).await,
        Command::Qr(args) => qr::run(&context, &args),
        Command::Instance(command) => instance::run(&context, &command).await,
        Command::Webhook(command) => webhook::run(&context, &command).await,
        Command::Conflicts(args) => conflicts::run(&context, &args).await,
        Command::Api(args) => api::run(&context, &args).await,
        Command::Logs(args) => logs::run(&context, &args).await,
        Command::PortForward(args) => port_forward::run(&context, &args).await,
        Command::Manager(args) => manager::manager(&context, &args).await,
        Command::Metrics(args) => manager::metrics(&context, &args).await,
        Command::Audit(args) => audit::run(&context, &args).await,
        Command::Connect(args) => connect::run(&context, &args).await,
        Command::Doctor(args) => doctor::run(&context, &args).await,
        Command::Scale(args) => scale::scale(&context, &args).await,
        Command::Enforce(args) => scale::enforce(&context, &args).await,
        Command::Redeploy(args) => redeploy::run(&context, &args).await,
        Command::IamPolicy(args) => iam_policy::run(&context, &args),
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut buffer = Vec::new();
            clap_complete::generate(args.shell, &mut command, "evoctl", &mut buffer);
            context.printer.text(&String::from_utf8_lossy(&buffer));
            Ok(exit::OK)
        }
    }
}
