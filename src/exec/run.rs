//! Running one command through the envelope: choose the backend, stream the parsed stdout and
//! stderr to the caller, send the program and then the input once the bootstrap is ready (the
//! input streamed in pieces alongside the output, so a large input never sits in memory whole
//! and a command that reads as it writes keeps going), and return the remote exit status, or an
//! error when the output was cut short. The whole run, from the first AWS call on,
//! is bounded by its deadline.

use super::envelope::{Envelope, EnvelopeError, EnvelopeParser, Piece, Program, RunSpec, Stdin};
use super::flow::{OUTPUT_QUEUE_BYTES, OutputReceiver, output_queue};
use super::input;
use super::native::{self, Input, SessionOptions};
use super::plugin;
use super::ssm::messages::TerminalSize;
use super::target::ExecTarget;
use crate::aws::Aws;
use crate::error::{Error, ExecKind, Result};
use futures::future::BoxFuture;
use std::time::Duration;
use tokio::sync::mpsc;

/// Where the parsed output goes.
pub trait OutputSink: Send {
    fn stdout(&mut self, bytes: &[u8]);
    fn stderr(&mut self, bytes: &[u8]);
    /// Resolves when the sink can take more (a sink in front of a slow stdout holds the session
    /// back); an error (stdout closed or failing) ends the run.
    fn room(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
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
    /// The bound on the run (from its start unless `deadline` is set).
    pub timeout: Duration,
    /// A deadline fixed earlier (`exec` starts its clock before it looks up the task).
    pub deadline: Option<tokio::time::Instant>,
    pub watchdog_every: Duration,
    pub transport: Transport,
    /// What to do about a run that reached its bound, when it is not the command's `--timeout`.
    pub timeout_fix: Option<String>,
}

impl RunOptions {
    /// A native run bounded by `timeout`, its task checked every 5 s.
    pub fn new(timeout: Duration) -> RunOptions {
        RunOptions {
            timeout,
            deadline: None,
            watchdog_every: Duration::from_secs(5),
            transport: Transport::Native,
            timeout_fix: None,
        }
    }

    /// The session options for one run starting now.
    pub fn session(&self, size: TerminalSize) -> SessionOptions {
        SessionOptions {
            deadline: Some(self.deadline.unwrap_or_else(|| tokio::time::Instant::now() + self.timeout)),
            limit: self.timeout,
            setup: None,
            idle_timeout: None,
            watchdog_every: self.watchdog_every,
            size,
            resume_budget: super::resume::RUN_BUDGET,
            timeout_fix: self.timeout_fix.clone(),
        }
    }
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
    let (output, received) = output_queue(OUTPUT_QUEUE_BYTES);
    let session_options = options.session(TerminalSize { cols: 200, rows: 50 });
    let transport = async {
        match options.transport {
            Transport::Native => native::run(aws, target, &envelope.command, input_rx, output, &session_options).await,
            Transport::Plugin => plugin::run(aws, target, &envelope.command, input_rx, output, &session_options).await,
        }
    };
    let mut parser = EnvelopeParser::new(&envelope.nonce);
    let end = {
        let streamed = match &spec.program {
            Program::NodeFrom(source) => Some(source.clone()),
            _ => None,
        };
        let input = Sent { program: envelope.program.clone(), streamed, stdin: spec.stdin.clone() };
        let consume = consume(received, &mut parser, input, input_tx, sink, &target.env);
        tokio::pin!(transport, consume);
        let mut consumed = false;
        // A consumer that fails (stdout closed) ends the run at once; the dropped session is ended
        // on the way out (`sessions::end_leftovers`).
        let end = loop {
            tokio::select! {
                end = &mut transport => break end,
                result = &mut consume, if !consumed => {
                    result?;
                    consumed = true;
                }
            }
        };
        if !consumed {
            consume.await?;
        }
        end?
    };
    parser.finish().map_err(|err| {
        let detail = if end.closing_output.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", end.closing_output.trim())
        };
        envelope_error(err, &target.env, &detail)
    })
}

/// The error for a run whose envelope ended badly; `detail` is what the session said as it closed.
fn envelope_error(err: EnvelopeError, env: &str, detail: &str) -> Error {
    match err {
        EnvelopeError::NeverStarted => Error::exec(
            ExecKind::CannotStart,
            format!(
                "the command did not start in the container: the session closed without a byte of output, which is how the ECS Exec agent reports a command it cannot start (evoctl runs `node`){detail}"
            ),
            format!(
                "check that the image has `node` on its PATH (`evoctl doctor {env}` runs `node -v`; evoapicloud/evolution-api ships it)"
            ),
        ),
        EnvelopeError::Truncated => Error::exec(
            ExecKind::Truncated,
            format!("the session ended before the command's exit status arrived; output may be truncated{detail}"),
            format!("run it again; if it repeats, check the container (`evoctl doctor {env}`)"),
        ),
        EnvelopeError::InflatesTooLarge | EnvelopeError::NotDeflate => Error::exec(
            ExecKind::Protocol,
            format!("the container's output broke evoctl's envelope: {err}; the run was ended"),
            format!(
                "run it again; if it repeats, something in the container writes evoctl's markers (`evoctl doctor {env}`)"
            ),
        ),
    }
}

/// What a run types into the session once the bootstrap is ready: the program, then the streams.
struct Sent {
    program: Vec<u8>,
    /// A node program streamed after the runner.
    streamed: Option<Stdin>,
    stdin: Option<Stdin>,
}

/// Parse the session's output into the sink, releasing it only once the sink has room; at the
/// ready mark, start typing the program and the input. The input is typed alongside (a command
/// reads while it writes); once the output ends, input still unread locally is abandoned (the
/// command has exited: `yes | evoctl exec ENV -- head -1`), and a local read error ends the run.
async fn consume(
    mut received: OutputReceiver,
    parser: &mut EnvelopeParser,
    sent: Sent,
    input: mpsc::Sender<Input>,
    sink: &mut dyn OutputSink,
    env: &str,
) -> Result<()> {
    let mut sent = Some(sent);
    let mut feeder: Option<tokio::task::JoinHandle<Result<()>>> = None;
    loop {
        let bytes = tokio::select! {
            bytes = received.recv() => match bytes {
                Some(bytes) => bytes,
                None => break,
            },
            typed = async { feeder.as_mut().expect("guarded").await }, if feeder.is_some() => {
                feeder = None;
                match typed {
                    Ok(Err(err)) => return Err(err),
                    _ => continue,
                }
            }
        };
        for piece in parser.feed(&bytes) {
            match piece {
                Piece::Stdout(data) => sink.stdout(&data),
                Piece::Stderr(data) => sink.stderr(&data),
                Piece::Ready => {
                    if let Some(sent) = sent.take() {
                        feeder = Some(tokio::spawn(feed(sent, input.clone())));
                    }
                }
                Piece::Exit(_) => {}
            }
        }
        if let Some(failure) = parser.failure() {
            return Err(envelope_error(failure.clone(), env, ""));
        }
        sink.room().await?;
        received.release(bytes.len());
    }
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    Ok(())
}

/// Type the program, then each stream. The channel is bounded and the session stops taking
/// input while 256 KiB are unacknowledged, so this waits instead of reading ahead.
async fn feed(sent: Sent, input: mpsc::Sender<Input>) -> Result<()> {
    if input.send(Input::Data(sent.program)).await.is_err() {
        return Ok(());
    }
    for source in [sent.streamed, sent.stdin].into_iter().flatten() {
        input::type_stream(&source, &input).await?;
    }
    Ok(())
}
