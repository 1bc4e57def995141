//! evoctl: operate an Evolution API (WhatsApp over Baileys) service on AWS ECS Fargate.
//!
//! The binary `evoctl` is a thin shell over [`main_entry`]. Modules, one concern each:
//! [`cli`] (argv), [`config`] (evoctl.toml), [`aws`] (SDK access and discovery),
//! [`commands`] (what each command does), [`copy`] (`cp`'s program and records), [`output`] (the
//! one printer), [`error`] and [`exit`] (failures and exit codes). The local lab is its own crate (`crates/evoctl-lab`), which this
//! one never depends on outside its integration tests.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod aws;
pub mod cli;
pub mod commands;
pub mod config;
pub mod copy;
pub mod duration;
pub mod env_vars;
pub mod error;
pub mod evolution;
pub mod exec;
pub mod exit;
pub mod guard;
pub mod interrupt;
pub mod output;
pub mod portfwd;
pub mod qr;
pub mod runbook;
pub mod timestamp;

use clap::Parser;
use std::process::ExitCode;

/// Parse argv, run the command on a tokio runtime, print any error and return the exit code.
/// Ctrl-C or SIGTERM drops a command that has nothing to clean up; commands that do (an exec
/// session to end, a scaling change between steps) see the signal themselves, and a second
/// signal stops waiting for them. Exec sessions still open on the way out are ended.
pub fn main_entry() -> ExitCode {
    // A shell asking for completions (`COMPLETE=bash evoctl ...`): clap answers and exits.
    clap_complete::CompleteEnv::with_factory(<cli::Cli as clap::CommandFactory>::command)
        .var(env_vars::EnvVars::COMPLETE)
        .complete();
    let cli = cli::Cli::parse();
    let printer = output::Printer::new(cli.global.output, cli.global.quiet);
    for name in [env_vars::EnvVars::AWS_SECRET_ACCESS_KEY, env_vars::EnvVars::AWS_SESSION_TOKEN] {
        if let Ok(value) = std::env::var(name) {
            output::sanitize::hold(&value);
        }
    }
    init_logging(cli.global.verbose, cli.global.quiet);
    let notes = printer.clone();
    aws::retries::on_retry(move |retrying| notes.note(&retrying.to_string()));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(source) => {
            let err = error::Error::Io { path: "tokio runtime".into(), source };
            printer.error(&err);
            return ExitCode::from(err.exit_code());
        }
    };
    let cleans_up = cli.command.cleans_up_on_interrupt();
    let result = runtime.block_on(async {
        interrupt::install();
        let work = commands::run(cli, printer.clone());
        tokio::pin!(work);
        let interrupted = |signal: error::Signal, message: &str| error::Error::Interrupted {
            signal,
            message: format!("interrupted ({}){message}", signal.name()),
            fix: None,
        };
        let result = tokio::select! {
            result = &mut work => result,
            signal = interrupt::wait(), if !cleans_up => Err(interrupted(signal, "")),
            signal = interrupt::wait_again() => Err(interrupted(signal, " twice: stopped without waiting")),
        };
        exec::sessions::end_leftovers().await;
        result
    });
    // A blocked stdin read (shell, plugin input) must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    for note in exec::sessions::take_notes() {
        printer.warn(&note);
    }
    let code = match result {
        Ok(code) => code,
        // Stdout's reader has gone (`| head`): nothing failed, nothing to say.
        Err(err) if err.is_broken_pipe() => exit::OK,
        Err(err) => {
            printer.error(&err);
            err.exit_code()
        }
    };
    match printer.finish() {
        Ok(()) => ExitCode::from(code),
        Err(err) => {
            printer.error(&err);
            ExitCode::from(if code == exit::OK { err.exit_code() } else { code })
        }
    }
}

/// Logs go to stderr. `-v` shows evoctl's info, `-vv` debug, `-vvv` trace; the AWS SDK is kept
/// at info or below so request/response bodies (which can hold session tokens) never print.
fn init_logging(verbose: u8, quiet: bool) {
    let filter = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "evoctl=warn,error",
        (false, 1) => "evoctl=info,warn",
        (false, 2) => "evoctl=debug,aws_config=info,warn",
        (false, _) => "evoctl=trace,aws_config=info,aws_smithy_runtime=info,info",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(crate::output::LogWriter)
        .with_ansi(false)
        .without_time()
        .try_init();
}
