//! `evoctl connect ENV [NAME]`: the connect-production runbook as one command.
//!
//! (a) preflight: every other environment of the number at 0 tasks, this one at its configured
//! scaling with exactly one live task whose exec agent runs; refused (exit 4) before any
//! Evolution call, or fixed first with `--enforce`. (b)-(d) one exec session creates the
//! instance if it is missing (without its socket, which the watch's first connect starts, so
//! the first QR is shown as soon as Evolution has it), shows each QR (or pairing code) as it appears on the terminal
//! whatever stdout is (a QR replacing the last one in place; see [`crate::runbook::codes`]), and
//! waits until the instance is `open` and stays open. (e) the webhook is made to
//! match the config (secret over the data channel). (f) a summary, or JSON. Ctrl-C stops the
//! wait and says what state things are in.

use super::Context;
use crate::aws::discovery::{self, LiveTask, ServiceRef};
use crate::aws::{Aws, Fleet};
use crate::cli::ConnectArgs;
use crate::config::{Config, Environment};
use crate::error::{Error, ExecKind, Result};
use crate::evolution::api::{CreateRequest, WebhookRequest};
use crate::evolution::reasons::{Connection, RowFacts};
use crate::evolution::{Driver, Watch, WatchTiming};
use crate::exec::run::RunOptions;
use crate::exec::target::{self, ExecTarget};
use crate::exit;
use crate::guard::plan::{self, Observed};
use crate::runbook::codes::{Code, CodeView};
use crate::runbook::watch::{EventLines, WatchEvent};
use crate::runbook::{link, preflight, refresh};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Time between two connect polls in the container (Evolution's docs: every 1-3 s).
const POLL: Duration = Duration::from_secs(1);
/// The same before a first code: the instance is created without its socket (so create answers
/// at once), the first connect starts it and answers after 2.3.7's fixed 2 s, and the first QR
/// exists about 3 s after the start. Until then connect of the connecting instance answers
/// from memory, so polling it this often draws the QR within this much of its existence.
const FIRST_CODE_POLL: Duration = Duration::from_millis(200);
/// How long to wait for the exec agent of a task that just started.
const AGENT_WAIT: Duration = Duration::from_secs(60);
/// Warn when this few QRs are left before QRCODE_LIMIT refuses the instance.
const LIMIT_MARGIN: u64 = 3;
/// No QR after this long: check from the task that WhatsApp can be reached at all (2.3.7 answers
/// `{count:0}` for ever when Baileys cannot connect). A first QR normally comes within seconds.
const NO_QR_CHECK: Duration = Duration::from_secs(10);
/// How long past --timeout the watch's session may take to end (the program in the container
/// ends itself at the bound).
const ENDING: Duration = Duration::from_secs(1);

/// `--output json` document (schema `evoctl.connect/v1`).
#[derive(Debug, Serialize)]
struct ConnectReport {
    schema: &'static str,
    env: String,
    instance: String,
    task: String,
    state: &'static str,
    number: Option<String>,
    already_connected: bool,
    created: bool,
    enforced: bool,
    /// QRs (or pairing codes) shown while waiting.
    qr_shown: u64,
    /// "set", "unchanged", "none" (no webhook configured) or "skipped" (already connected).
    webhook: &'static str,
    seconds: f64,
    /// Already connected: both states and the last disconnect (see `instance state`).
    #[serde(skip_serializing_if = "Option::is_none")]
    connection: Option<Connection>,
}

pub async fn run(context: &Context, args: &ConnectArgs) -> Result<u8> {
    link::check_pairing_number(args.pairing_number.as_deref())?;
    let started = Instant::now();
    let config = context.config()?;
    let env = config.environment(&args.env)?.clone();
    let name = args.name.clone().unwrap_or_else(|| env.instance.clone());
    // How the fixes name what this run acts on (`production`, `production NAME`).
    let again = crate::evolution::subject(&env.name, (name != env.instance).then_some(name.as_str()));
    let fleet = context.aws(&config).await?;
    let aws = fleet.of(&env).clone();

    // (a) preflight, before anything touches Evolution; the webhook secret is read meanwhile.
    let read_secret = async {
        match env.webhook.as_ref().and_then(|w| w.jwt_secret.as_ref()) {
            Some(reference) => super::secrets::resolve(&aws, reference).await.map(Some),
            None => Ok(None),
        }
    };
    let ((enforced, seen), secret) = tokio::try_join!(preflight(context, &fleet, &config, &env, args), read_secret)?;
    // The preflight's own read of the task serves when it is ready; after changes, read again.
    let target = match seen.and_then(|task| target::ready(&env, task, None).ok()) {
        Some(target) => target,
        None => ready_target(context, &aws, &env).await?,
    };
    context.printer.note(&format!(
        "preflight ok: {} is the only live environment on its number; task {} (exec agent RUNNING)",
        env.name, target.task.id
    ));
    let wanted_webhook = env.webhook.as_ref().map(WebhookRequest::from_config);
    let options = RunOptions::new(args.timeout + Duration::from_secs(60));
    let driver = Driver { aws: &aws, target: &target, options };
    // The watch ends itself at --timeout from the command's start (whatever call it waits on);
    // its session is bounded a moment after, so nothing runs past the bound.
    let deadline = started + args.timeout;
    let watch_options = RunOptions {
        deadline: Some(tokio::time::Instant::from_std(deadline + ENDING)),
        ..RunOptions::new(args.timeout + ENDING)
    };
    let watcher = Driver { aws: &aws, target: &target, options: watch_options };

    // (b)-(d) in one exec session.
    // A missing instance is created without its socket: 2.3.7 answers create with `qrcode`
    // only after a fixed 5 s although its first QR exists 3 s after the socket starts, while
    // without it create answers at once and leaves the instance `close`. The watch's first
    // connect then starts the socket, with `?number=` for a pairing flow (2.3.7 reads it from
    // `close`; it ignores it on an instance that is already connecting), so the first code is
    // a pairing code; the number is stored at create too, as the row's.
    let create =
        CreateRequest::seed(&name, wanted_webhook.clone()).pairing(args.pairing_number.as_deref()).socket_later();
    let timing = |now: Instant| WatchTiming {
        interval: POLL,
        first_code_interval: FIRST_CODE_POLL,
        timeout: deadline.saturating_duration_since(now),
        stable: args.stable_for,
    };
    // A scan that fails to WhatsApp's pairing refresh, seen in the log (see runbook::refresh),
    // once the watch said the image ignores it.
    let (follow_log, mut refresh_seen) = tokio::sync::watch::channel(None::<String>);
    let since_ms = crate::aws::logs::now_ms();
    let scan_failed = async {
        let version = match refresh_seen.wait_for(Option::is_some).await {
            Ok(version) => version.clone().unwrap_or_default(),
            Err(_) => return std::future::pending().await,
        };
        match refresh::first_refresh(&aws, &env, since_ms).await {
            Ok(line) => (line, version),
            Err(err) => {
                context.printer.warn(&format!("a failed scan cannot be seen: reading the log failed: {err}"));
                std::future::pending().await
            }
        }
    };
    tokio::pin!(scan_failed);
    let mut view = QrView::new(context, &env.name, &name, args, follow_log);
    context.printer.note(&format!("waiting for {name} to be linked (up to {} s)…", args.timeout.as_secs()));
    let mut sink = EventLines::new(|event| view.show(event));
    let agent_wait = Instant::now();
    let status = loop {
        let watch = Watch {
            name: &name,
            number: args.pairing_number.as_deref(),
            create: Some((&create, secret.as_deref())),
            timing: timing(Instant::now()),
            first_only: false,
            reach_after: Some(NO_QR_CHECK),
        };
        let watched = watcher.watch_link(watch, &mut sink);
        let status = tokio::select! {
            status = watched => status,
            // The watch's session is ended on the way out (its future was dropped here).
            signal = crate::interrupt::wait() => Err(Error::Interrupted { signal, message: String::new(), fix: None }),
            // The watch's session is ended the same way.
            (line, version) = &mut scan_failed => Err(refresh::failed_scan(&name, &again, &line, &version)),
        };
        // The exec session sees the same signal and may answer first (it ended the watch
        // itself); either way the operator is told where the link stands.
        if let Err(Error::Interrupted { signal, .. }) = status {
            drop(sink);
            return Err(Error::Interrupted { signal, message: interrupted(&again, &name, &view, enforced), fix: None });
        }
        match status {
            // The agent of a task that just started may not be connected yet: that can still
            // become ready, so wait a little (nothing was run).
            Err(err)
                if err.exec_kind().is_some_and(ExecKind::can_become_ready) && agent_wait.elapsed() < AGENT_WAIT =>
            {
                context.printer.note(&format!("waiting for the task to take exec sessions: {err}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => break other,
        }
    };
    let (last, stray) = (sink.last.clone(), link::stray_text(&sink.stray));
    drop(sink);
    let status = status?;
    if let Some(err) = view.png_error.take() {
        return Err(err);
    }
    let (number, row) = match last {
        Some(WatchEvent::Linked { number, row_status, row_code, row_at }) => (number, (row_status, row_code, row_at)),
        Some(WatchEvent::Timeout) => {
            let again = format!("evoctl connect {again}");
            let (waiting, fix) = match &args.pairing_number {
                Some(number) => (
                    "its pairing code to be entered",
                    format!("run `{again} --pairing-number {number}` again and enter the new code"),
                ),
                None => ("a scan", format!("run `{again}` again and scan the new QR")),
            };
            return Err(Error::Timeout {
                message: format!(
                    "{name} was not linked within {} s ({} {} shown); it is left waiting for {waiting}",
                    args.timeout.as_secs(),
                    view.codes.shown,
                    view.codes.noun()
                ),
                fix: Some(fix),
            });
        }
        Some(WatchEvent::Flap { state }) => {
            return Err(Error::Unverified {
                message: format!(
                    "{name} opened but dropped to `{state}` within {} s: the link does not hold",
                    args.stable_for.as_secs()
                ),
                fix: format!(
                    "another connection holds this number: `evoctl conflicts {}` and `evoctl audit`",
                    env.name
                ),
            });
        }
        Some(WatchEvent::Refused { count, limit }) => {
            return Err(Error::Unavailable {
                message: format!(
                    "{name} was not linked and Evolution refused it: its QRCODE_LIMIT of {limit} codes was reached (the last one shown here was number {count}), so it logged the instance out and closed it"
                ),
                fix: format!(
                    "run `evoctl connect {again}` again for a new flow of {limit} codes and use one as soon as it appears, or raise QRCODE_LIMIT in the task definition (2.3.7's default is 30)"
                ),
            });
        }
        Some(WatchEvent::Taken | WatchEvent::Foreign) => return Err(crate::evolution::foreign(&name)),
        Some(WatchEvent::PairingIgnored) => return Err(link::pairing_ignored(&name, &env.name)),
        Some(WatchEvent::Error { status, body }) => {
            let acted = crate::evolution::Acted { env: &env.name, instance: Some(&name) };
            return Err(link::watch_error("connect", status, body, acted));
        }
        Some(WatchEvent::Reach(reach)) if !reach.ok => {
            // A call that waited on WhatsApp (the route was checked beside it)…
            if let Some(Error::Unavailable { message, fix }) = reach.waiting_error(&env.name) {
                return Err(Error::Unavailable { message: format!("{name}: {message}"), fix });
            }
            // …or no code after a while.
            let (problem, fix) = reach.problem().unwrap_or_default();
            return Err(Error::Unavailable {
                message: format!(
                    "{name} has shown no code in {} s and Evolution answers {{count:0}}: {problem}",
                    NO_QR_CHECK.as_secs()
                ),
                fix: format!("{fix}; then `evoctl doctor {}` checks the route again (whatsapp-reach)", env.name),
            });
        }
        _ => {
            return Err(Error::exec(
                ExecKind::Container,
                format!("the link watch ended early (exit {status}): {stray}"),
                format!("check the task (`evoctl doctor {}`) and run `evoctl connect {again}` again", env.name),
            ));
        }
    };
    let already_connected = !view.created && view.codes.shown == 0;
    // Already linked: both states and the last disconnect, as `instance state` says them (the
    // row came with the number; the last stream error from the task's log).
    let connection = if already_connected {
        let (status, code, at) = &row;
        let facts = RowFacts { status: status.as_deref(), code: *code, at: at.as_deref() };
        Some(super::instance::linked_connection(&aws, &env, facts, &again).await)
    } else {
        None
    };

    // (e) the webhook (the linked number came with the watch's last event).
    let webhook = match (&wanted_webhook, already_connected) {
        (None, _) => "none",
        (Some(_), true) => "skipped",
        (Some(wanted), false) => {
            if driver.ensure_webhook(&name, wanted, secret.as_deref()).await? {
                "set"
            } else {
                "unchanged"
            }
        }
    };

    // (f) the summary.
    let report = ConnectReport {
        schema: "evoctl.connect/v1",
        env: env.name.clone(),
        instance: name.clone(),
        task: target.task.id.clone(),
        state: "open",
        number,
        already_connected,
        created: view.created,
        enforced,
        qr_shown: view.codes.shown,
        webhook,
        seconds: crate::output::seconds(started.elapsed()),
        connection,
    };
    context.printer.data(&report, || summary(&report));
    Ok(exit::OK)
}

/// Check the number's environments; with `--enforce` apply the scaling plan first. Returns
/// whether anything was enforced, and this environment's one live task as read (when nothing
/// was changed).
async fn preflight(
    context: &Context,
    fleet: &Fleet,
    config: &Config,
    env: &Environment,
    args: &ConnectArgs,
) -> Result<(bool, Option<LiveTask>)> {
    // Every environment, each in its own account and region: two accounts do not keep two
    // tasks off one number.
    let snapshots = crate::aws::for_each_env(&config.environments, |e| {
        let aws = fleet.of(e);
        async move {
            discovery::snapshot(&aws.ecs(), &aws.autoscaling(), ServiceRef { cluster: &e.cluster, service: &e.service })
                .await
        }
    })
    .await?;
    let observed: Vec<Observed> = snapshots.iter().map(Observed::from).collect();
    let problems = preflight::assess(&config.environments, &observed, &env.name);
    let index = config.environments.iter().position(|e| e.name == env.name).expect("env is in the config");
    if problems.is_empty() {
        return Ok((false, snapshots[index].tasks.first().cloned()));
    }
    let listed: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    if let Some(refusal) = preflight::runs_nothing(env, &observed[index]) {
        // Neither --enforce nor a link can help: the config itself keeps it at no task.
        return Err(refusal);
    }
    // More than one task here: enforcing would refuse too; the extra one goes first.
    let extra =
        discovery::stop_extra_fix(&env.name, &snapshots[index].tasks, 1).filter(|_| snapshots[index].tasks.len() > 1);
    if let Some(stop) = extra {
        return Err(Error::refused(format!("refused before touching Evolution: {}", listed.join("; ")), stop));
    }
    if !args.enforce {
        return Err(Error::refused(
            format!("refused before touching Evolution: {}", listed.join("; ")),
            format!(
                "bring every environment to its configured scaling first: `evoctl enforce --apply` (or `evoctl connect {} --enforce`)",
                env.name
            ),
        ));
    }
    context.printer.note(&format!("preflight: {}; --enforce: applying the scaling plan first", listed.join("; ")));
    let group: Vec<&str> =
        config.environments.iter().filter(|e| e.number == env.number).map(|e| e.name.as_str()).collect();
    let plan = plan::compute(&config.environments, &observed, &group)?;
    context.printer.note(&super::scale::render(&plan));
    let finish = format!("evoctl connect {} --enforce", env.name);
    super::scale::apply_with_progress(context, fleet, &config.environments, &plan, args.timeout, &finish).await?;
    let observed = crate::aws::for_each_env(&config.environments, |e| plan::observe(fleet.of(e), e)).await?;
    let left = preflight::assess(&config.environments, &observed, &env.name);
    if let Some(problem) = left.first() {
        return Err(Error::refused(
            format!("still not safe after enforcing: {}", problem.message),
            format!("check evoctl.toml's scaling for {} and `evoctl audit`", problem.env),
        ));
    }
    Ok((true, None))
}

/// The environment's one task, once its exec agent runs (a task that just started may need a
/// few seconds).
async fn ready_target(context: &Context, aws: &Aws, env: &Environment) -> Result<ExecTarget> {
    let started = Instant::now();
    let mut said = false;
    loop {
        match target::resolve(&aws.ecs(), env, None).await {
            Ok(target) => return Ok(target),
            Err(err) if err.exec_kind().is_some_and(ExecKind::can_become_ready) && started.elapsed() < AGENT_WAIT => {
                if !said {
                    context.printer.note(&format!("waiting for the task to take exec sessions: {err}"));
                    said = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Follows the watch: shows each code (see [`crate::runbook::codes`]), warns when QRCODE_LIMIT
/// is near, and keeps what the messages at the end need.
struct QrView<'a> {
    context: &'a Context,
    codes: CodeView<'a>,
    created: bool,
    last_state: Option<String>,
    warned_limit: bool,
    png_error: Option<Error>,
    /// Set to the image's Baileys version when it ignores `companion_reg_refresh` and its log
    /// shows the notification: the log is then read for a failed scan.
    follow_log: tokio::sync::watch::Sender<Option<String>>,
}

impl<'a> QrView<'a> {
    fn new(
        context: &'a Context,
        env: &'a str,
        name: &'a str,
        args: &'a ConnectArgs,
        follow_log: tokio::sync::watch::Sender<Option<String>>,
    ) -> Self {
        QrView {
            context,
            codes: CodeView::new(&context.printer, env, name, args.png.as_deref(), args.pairing_number.is_some()),
            created: false,
            last_state: None,
            warned_limit: false,
            png_error: None,
            follow_log,
        }
    }

    fn show(&mut self, event: WatchEvent) {
        let printer = &self.context.printer;
        match event {
            WatchEvent::Baileys { version: Some(version), handles_refresh: Some(false), log_baileys } => {
                let level = log_baileys.unwrap_or_else(|| "error".into());
                printer.warn(&format!("the image's {}; {}", refresh::ignored(&version), refresh::seen_or_not(&level)));
                if refresh::logs_refresh(&level) {
                    self.follow_log.send_replace(Some(version));
                }
            }
            WatchEvent::Baileys { .. } => {}
            WatchEvent::Created => {
                self.created = true;
                printer.note("created the instance");
            }
            WatchEvent::State { state } => self.last_state = Some(state),
            WatchEvent::Reach(reach) if reach.ok => printer.note(&format!(
                "no code after {} s, but the task reaches WhatsApp ({}:{} in {} ms); still waiting…",
                NO_QR_CHECK.as_secs(),
                reach.host,
                reach.port,
                reach.ms
            )),
            WatchEvent::Reach(_) => {}
            WatchEvent::Qr { code, pairing, count, limit } => {
                // Said before the code, so that the code stays the last thing on the screen.
                if count + LIMIT_MARGIN >= limit && !self.warned_limit {
                    self.warned_limit = true;
                    let noun = if pairing.is_some() { "pairing code" } else { "QR" };
                    printer.warn(&format!(
                        "{noun} {count} of {limit} (QRCODE_LIMIT): after the last one Evolution refuses the instance and a new connect starts over"
                    ));
                }
                let shown = self.codes.show(Code { qr: &code, pairing: pairing.as_deref(), count, limit });
                if let Err(err) = shown {
                    self.png_error.get_or_insert(err);
                }
            }
            WatchEvent::Linked { .. }
            | WatchEvent::Flap { .. }
            | WatchEvent::Timeout
            | WatchEvent::Refused { .. }
            | WatchEvent::Taken
            | WatchEvent::Foreign
            | WatchEvent::PairingIgnored
            | WatchEvent::Error { .. }
            | WatchEvent::Webhook { .. }
            | WatchEvent::Deleted
            | WatchEvent::Pending { .. }
            | WatchEvent::Gone { .. } => {}
        }
    }
}

fn interrupted(again: &str, name: &str, view: &QrView<'_>, enforced: bool) -> String {
    format!(
        "interrupted: {name} is not linked ({}{}){}; the watch in the container was ended and nothing else was changed. Run `evoctl connect {again}` again to continue",
        view.last_state.as_deref().map(|s| format!("state {s}")).unwrap_or_else(|| "state unknown".into()),
        if view.codes.shown > 0 {
            format!(", {} {} shown", view.codes.shown, view.codes.noun())
        } else {
            String::new()
        },
        if enforced { "; the scaling plan was applied before" } else { "" },
    )
}

fn summary(report: &ConnectReport) -> String {
    let number = report.number.as_deref().unwrap_or("unknown number");
    let headline = if report.already_connected {
        format!("{} is already connected (open) to {number}", report.instance)
    } else {
        format!("linked {number} to {}", report.instance)
    };
    let mut out = format!(
        "{headline}\nenv:      {}\ntask:     {}\nwebhook:  {}\ntime:     {:.1} s\n",
        report.env, report.task, report.webhook, report.seconds
    );
    if let Some(connection) = &report.connection {
        out.push_str(&connection.text());
    }
    out
}
