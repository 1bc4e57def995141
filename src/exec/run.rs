//! Running one command through the envelope: choose the backend, stream the parsed stdout and
//! stderr to the caller, send stdin once the remote side is ready, and return the remote exit
//! status, or an error when the output was cut short.

use super::envelope::{Envelope, EnvelopeParser, Piece, RunSpec};
use super::native::{self, Input, SessionOptions};
use super::plugin;
use super::ssm::messages::TerminalSize;
use super::target::ExecTarget;
use crate::aws::Aws;
use crate::error::{Error, Result};
use std::time::Duration;
use tokio::sync::mpsc;

/// Where the parsed output goes.
pub trait OutputSink: Send {
    fn stdout(&mut self, bytes: &[u8]);
    fn stderr(&mut self, bytes: &[u8]);
}

/// Collects everything in memory (driver calls, tests).
#[derive(Debug, Default)]
pub struct Collected {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl OutputSink for Collected {
    fn stdout(&mut self, bytes: &[u8]) {
        self.stdout.extend_from_slice(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr.extend_from_slice(bytes);
    }
}

/// Which transport carries the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// evoctl's own data-channel client.
    Native,
    /// The official session-manager-plugin, run the way the AWS CLI runs it.
    Plugin,
}

/// Options for one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub timeout: Duration,
    pub watchdog_every: Duration,
    pub transport: Transport,
}

/// Run `spec` in the target's container; returns the remote exit status.
pub async fn run(
    aws: &Aws,
    target: &ExecTarget,
    spec: &RunSpec,
    options: &RunOptions,
    sink: &mut dyn OutputSink,
) -> Result<i32> {
    let envelope = Envelope::new(spec);
    tracing::debug!(bytes = envelope.command.len(), "command string prepared");
    let (input_tx, input_rx) = mpsc::channel::<Input>(16);
    let (output_tx, mut output_rx) = mpsc::channel::<Vec<u8>>(256);
    let session_options = SessionOptions {
        timeout: options.timeout,
        watchdog_every: options.watchdog_every,
        size: TerminalSize { cols: 200, rows: 50 },
    };
    let transport = async {
        match options.transport {
            Transport::Native => {
                native::run(aws, target, &envelope.command, input_rx, output_tx, &session_options).await
            }
            Transport::Plugin => {
                plugin::run(aws, target, &envelope.command, input_rx, output_tx, &session_options).await
            }
        }
    };
    let mut parser = EnvelopeParser::new(&envelope.nonce);
    let mut stdin = spec.stdin.as_ref().map(|data| Envelope::stdin_payload(data));
    let consume = async {
        while let Some(bytes) = output_rx.recv().await {
            for piece in parser.feed(&bytes) {
                match piece {
                    Piece::Stdout(data) => sink.stdout(&data),
                    Piece::Stderr(data) => sink.stderr(&data),
                    Piece::Ready => {
                        if let Some(payload) = stdin.take() {
                            let _ = input_tx.send(Input::Data(payload)).await;
                        }
                    }
                    Piece::Exit(_) => {}
                }
            }
        }
    };
    let (end, ()) = tokio::join!(transport, consume);
    let end = end?;
    parser.finish().map_err(|_| {
        let detail = if end.closing_output.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", end.closing_output.trim())
        };
        Error::exec(
            format!("the session ended before the command's exit status arrived; output may be truncated{detail}"),
            "run it again; if it repeats, check the container (`evoctl doctor`)",
        )
    })
}
