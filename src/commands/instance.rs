//! `evoctl instance list|create|state|connect|logout|delete|restart ENV [NAME]`: the Evolution
//! instance lifecycle as single commands, over the run envelope (no curl in the image).

use super::Context;
use super::reach::Reach;
use crate::cli::{
    DestructiveInstanceArgs, EnvArg, InstanceArgs, InstanceCommand, InstanceConnectArgs, InstanceDeleteArgs,
};
use crate::error::{Error, Result};
use crate::evolution::api::{CreateRequest, Created, LoggedOut};
use crate::evolution::reasons::{Connection, RowFacts, stream_error_code};
use crate::evolution::retries::Awaited;
use crate::evolution::{Watch, WatchTiming};
use crate::exit;
use crate::output::OutputFormat;
use crate::output::table;
use crate::runbook::codes::{Code, CodeView};
use crate::runbook::link;
use crate::runbook::watch::{EventLines, WatchEvent};
use serde_json::json;
use std::time::Duration;

pub async fn run(context: &Context, command: &InstanceCommand) -> Result<u8> {
    match command {
        InstanceCommand::List(args) => list(context, args).await,
        InstanceCommand::Create(args) => create(context, args).await,
        InstanceCommand::State(args) => state(context, args).await,
        InstanceCommand::Connect(args) => connect(context, args).await,
        InstanceCommand::Logout(args) => logout(context, args).await,
        InstanceCommand::Delete(args) => delete(context, args).await,
        InstanceCommand::Restart(args) => restart(context, args).await,
    }
}

async fn list(context: &Context, args: &EnvArg) -> Result<u8> {
    let reach = Reach::new(context, &args.env).await?;
    let rows = reach.driver().fetch_instances(None).await?;
    let report = json!({
        "schema": "evoctl.instances/v1",
        "env": reach.env.name,
        "instances": rows.iter().map(|r| json!({
            "name": r.name, "id": r.id, "connection_status": r.connection_status, "number": r.number(),
            "profile_name": r.profile_name, "client_name": r.client_name,
        })).collect::<Vec<_>>(),
    });
    context.printer.data(&report, || {
        let dash = |value: Option<&str>| value.unwrap_or("-").to_owned();
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    dash(r.connection_status.as_deref()),
                    dash(r.number()),
                    dash(r.profile_name.as_deref()),
                ]
            })
            .collect();
        if cells.is_empty() { "no instances\n".into() } else { table(&["NAME", "STATUS", "NUMBER", "PROFILE"], &cells) }
    });
    Ok(exit::OK)
}

async fn create(context: &Context, args: &InstanceArgs) -> Result<u8> {
    let reach = Reach::for_linking(context, &args.env).await?;
    let name = reach.instance_name(&args.name).to_owned();
    // Resolve (and refuse an empty) secret before anything is written.
    let secret = match reach.env.webhook.as_ref().and_then(|w| w.jwt_secret.as_ref()) {
        Some(reference) => Some(super::secrets::resolve(&reach.aws, reference).await?),
        None => None,
    };
    let driver = reach.driver();
    if let Some(existing) = driver.fetch_instances(Some(&name)).await?.first() {
        let status = existing.connection_status.clone().unwrap_or_else(|| "unknown".into());
        let report = json!({"schema": "evoctl.instance/v1", "env": reach.env.name, "instance": name, "created": false, "connection_status": status});
        context.printer.data(&report, || format!("instance {name} already exists ({status}); nothing changed"));
        return Ok(exit::OK);
    }
    let request = CreateRequest::seed(&name, reach.webhook_request());
    let status = match driver.create(&request, secret.as_deref()).await? {
        Created::Created { status } => status,
        // Not listed here (checked above), yet taken: a row of this database that another
        // Evolution process (another client name) holds.
        Created::NameTaken => return Err(crate::evolution::foreign(&name)),
    };
    let report = json!({"schema": "evoctl.instance/v1", "env": reach.env.name, "instance": name, "created": true, "connection_status": status});
    context.printer.data(&report, || {
        format!("created instance {name} ({status}); link it with `evoctl instance connect {}`", reach.subject(&name))
    });
    Ok(exit::OK)
}

/// Both states of the instance (the process's memory and the database row, read in one exec
/// session), its last disconnect with its meaning and age (the row's; the last stream error, such
/// as a 440, from the task's log, read meanwhile), and a disagreement between them. The first
/// line is the live state alone, as before. It reads from the oldest ready task even when two
/// run.
async fn state(context: &Context, args: &InstanceArgs) -> Result<u8> {
    let reach = Reach::for_reading(context, &args.env).await?;
    let name = reach.instance_name(&args.name).to_owned();
    let connection = read_connection(&reach.driver(), &reach.aws, &reach.env, &name, &reach.subject(&name)).await?;
    let state = connection.state.clone().unwrap_or_default();
    let report = json!({"schema": "evoctl.state/v1", "env": reach.env.name, "instance": name, "state": state,
                        "connection": connection});
    context.printer.data(&report, || format!("{state}\n{}", connection.text()));
    Ok(exit::OK)
}

/// Both states of `name` (the process's memory and the row, in one exec session) and its last
/// disconnects (the row's; the log's last stream error, read meanwhile). `subject`: how a fix's
/// command line names the environment and instance.
pub async fn read_connection(
    driver: &crate::evolution::Driver<'_>,
    aws: &crate::aws::Aws,
    env: &crate::config::Environment,
    name: &str,
    subject: &str,
) -> Result<Connection> {
    let (read, replaced) = tokio::join!(driver.connection(name), last_stream_error(aws, env));
    let (state, row) = read?;
    let now = crate::aws::logs::now_ms();
    Ok(Connection::new(Some(&state), row.as_ref().map(RowFacts::from), replaced, now, &env.name, subject))
}

/// An instance found linked by a link flow (`connect`, `instance connect`): `open` in memory,
/// the row as the watch read it, and the log's last stream error.
pub async fn linked_connection(
    aws: &crate::aws::Aws,
    env: &crate::config::Environment,
    row: RowFacts<'_>,
    subject: &str,
) -> Connection {
    let replaced = last_stream_error(aws, env).await;
    Connection::new(Some("open"), Some(row), replaced, crate::aws::logs::now_ms(), &env.name, subject)
}

/// The newest close Baileys logged (`stream errored out`, with its code) in this environment's
/// log over the conflict window: (code, ms since the epoch); `None` when none, or when the log
/// cannot be read (no awslogs group).
pub async fn last_stream_error(aws: &crate::aws::Aws, env: &crate::config::Environment) -> Option<(i64, i64)> {
    let target = crate::aws::discovery::ServiceRef { cluster: &env.cluster, service: &env.service };
    let source = crate::aws::logs::log_source(&aws.ecs(), target, &env.container).await.ok()?;
    let start_ms = crate::aws::logs::now_ms() - crate::guard::CONFLICT_WINDOW.as_millis() as i64;
    let lines = crate::aws::logs::filter(&aws.logs(), &source, "\"stream errored out\"", start_ms).await.ok()?;
    lines.iter().rev().find_map(|line| stream_error_code(&line.message).map(|code| (code, line.timestamp_ms)))
}

/// How long `instance connect` waits for a fresh code.
const FIRST_CODE_WAIT: Duration = Duration::from_secs(60);

async fn connect(context: &Context, args: &InstanceConnectArgs) -> Result<u8> {
    link::check_pairing_number(args.pairing_number.as_deref())?;
    let reach = Reach::for_linking(context, &args.instance.env).await?;
    let name = reach.instance_name(&args.instance.name).to_owned();
    let driver = reach.driver();
    // One session: the state, then connect polled until a code this flow made (never the last
    // flow's code, which 2.3.7 keeps after a logout), or `open`.
    let timing = WatchTiming {
        interval: Duration::from_secs(1),
        first_code_interval: Duration::from_secs(1),
        timeout: FIRST_CODE_WAIT,
        stable: Duration::ZERO,
    };
    let watch = Watch {
        name: &name,
        number: args.pairing_number.as_deref(),
        create: None,
        timing,
        first_only: true,
        reach_after: None,
    };
    let mut sink = EventLines::new(|_| {});
    driver.watch_link(watch, &mut sink).await?;
    let acted = crate::evolution::Acted { env: &reach.env.name, instance: Some(&name) };
    let (last, stray) = (sink.last.clone(), link::stray_text(&sink.stray));
    let (code, pairing, count, limit) = match last {
        Some(WatchEvent::Qr { code, pairing, count, limit }) => (code, pairing, count, limit),
        Some(WatchEvent::Linked { number, row_status, row_code, row_at }) => {
            // Both states and the last disconnect, as `instance state` says them.
            let facts = RowFacts { status: row_status.as_deref(), code: row_code, at: row_at.as_deref() };
            let connection = linked_connection(&reach.aws, &reach.env, facts, &reach.subject(&name)).await;
            let report = json!({"schema": "evoctl.connect/v1", "env": reach.env.name, "instance": name, "state": "open",
                                "number": number, "already_connected": true, "connection": connection});
            let to = number.as_deref().map(|n| format!(" to {n}")).unwrap_or_default();
            context
                .printer
                .data(&report, || format!("instance {name} is already connected (open){to}\n{}", connection.text()));
            return Ok(exit::OK);
        }
        Some(WatchEvent::Timeout) => {
            return Err(Error::Timeout {
                message: format!(
                    "Evolution showed no new {} for {name} within {} s (its socket may not reach WhatsApp)",
                    if args.pairing_number.is_some() { "pairing code" } else { "QR" },
                    FIRST_CODE_WAIT.as_secs()
                ),
                fix: Some(format!(
                    "`evoctl doctor {}` checks the task's route to WhatsApp (whatsapp-reach); `evoctl logs {} --kind qr` shows what Evolution logged about QRs",
                    reach.env.name, reach.env.name
                )),
            });
        }
        Some(WatchEvent::Foreign) => return Err(crate::evolution::foreign(&name)),
        Some(WatchEvent::PairingIgnored) => return Err(link::pairing_ignored(&name, &reach.env.name)),
        Some(WatchEvent::Error { status, body }) => return Err(link::watch_error("connect", status, body, acted)),
        _ => {
            return Err(Error::exec(
                crate::error::ExecKind::Container,
                format!("the connect call in the container ended early: {stray}"),
                format!("check the task (`evoctl doctor {}`)", reach.env.name),
            ));
        }
    };
    // The code is a prompt: on the terminal (or as text on stderr), never on stdout.
    let mut view = CodeView::new(&context.printer, &reach.env.name, &name, args.png.as_deref(), pairing.is_some());
    view.show(Code { qr: &code, pairing: pairing.as_deref(), count, limit })?;
    let report = json!({
        "schema": "evoctl.connect/v1", "env": reach.env.name, "instance": name, "state": "connecting",
        "code": code, "pairing_code": pairing, "count": count, "png": args.png,
    });
    if context.printer.format() == OutputFormat::Json {
        context.printer.json(&report);
    }
    Ok(exit::OK)
}

/// Refuse a destructive action on a protected environment without `--yes`.
fn confirm(reach: &Reach, args: &DestructiveInstanceArgs, name: &str, action: &str) -> Result<()> {
    if reach.env.protected && !args.yes {
        return Err(Error::usage(
            format!("{} is protected: `instance {action}` on {name} needs --yes", reach.env.name),
            format!("run `evoctl instance {action} {} {name} --yes` if you mean it", reach.env.name),
        ));
    }
    Ok(())
}

/// Log out of WhatsApp. A `close` instance holds no session (2.3.7 refuses it as "not
/// connected"): nothing to do, which is said with the way forward, exit 0.
async fn logout(context: &Context, args: &DestructiveInstanceArgs) -> Result<u8> {
    let reach = Reach::new(context, &args.instance.env).await?;
    let name = reach.instance_name(&args.instance.name).to_owned();
    confirm(&reach, args, &name, "logout")?;
    let outcome = reach.driver().logout(&name).await?;
    let logged_out = outcome == LoggedOut::Done;
    let report = json!({
        "schema": "evoctl.instance/v1", "env": reach.env.name, "instance": name, "action": "logout",
        "logged_out": logged_out, "state": "close",
    });
    context.printer.data(&report, || {
        if logged_out {
            format!("instance {name} logged out")
        } else {
            format!(
                "instance {name} is not connected (close): there is no WhatsApp session to log out; nothing was changed"
            )
        }
    });
    if !logged_out {
        context.printer.note(&format!(
            "to link it again: `evoctl connect {}`; to remove it: `evoctl instance delete {}{}`",
            reach.subject(&name),
            reach.subject(&name),
            if reach.env.protected { " --yes" } else { "" }
        ));
    }
    Ok(exit::OK)
}

/// How often the delete wait asks whether the name is still listed.
const DELETE_POLL: Duration = Duration::from_secs(2);
/// How often the delete wait says what it is waiting for.
const DELETE_PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Delete, then wait (in the same session) until Evolution's cleanup has removed the name: 2.3.7
/// answers first and removes the row only after its REMOVE_INSTANCE webhook was delivered or
/// its retries ran out (about 20 minutes against a receiver that fails).
async fn delete(context: &Context, args: &InstanceDeleteArgs) -> Result<u8> {
    let started = std::time::Instant::now();
    let reach = Reach::new(context, &args.instance.instance.env).await?;
    let name = reach.instance_name(&args.instance.instance.name).to_owned();
    confirm(&reach, &args.instance, &name, "delete")?;
    let wait = args.timeout.saturating_sub(started.elapsed());
    let options = crate::exec::run::RunOptions::new(wait + Duration::from_secs(60));
    let driver = crate::evolution::Driver { aws: &reach.aws, target: &reach.target, options };
    let retries = crate::evolution::retries::RetryLog::new(&reach.aws, &reach.target, &reach.env.service);
    // The webhook the cleanup waits on: (its REMOVE_INSTANCE URL, subscribed, jwt_key empty).
    let mut webhook: Option<(Option<String>, bool, bool)> = None;
    // Say what the wait is for at the first poll that still lists the name, then whenever the
    // task's log shows a new retry, and at least every DELETE_PROGRESS_EVERY.
    let mut said: Option<(std::time::Instant, Option<String>)> = None;
    let mut sink = EventLines::new(|event| match event {
        WatchEvent::Webhook { url, remove, jwt_empty, by_events } => {
            let awaited = url.as_deref().map(|url| Awaited::new(&name, url, by_events, "REMOVE_INSTANCE"));
            if let Some(awaited) = &awaited {
                retries.watch(awaited.clone());
            }
            webhook = Some((awaited.map(|a| a.url), remove, jwt_empty));
        }
        WatchEvent::Deleted => context.printer.note(&format!("deleted {name}; waiting for Evolution's cleanup…")),
        WatchEvent::Pending { t } => {
            let latest = retries.latest();
            let due = match &said {
                None => true,
                Some((at, seen)) => *seen != latest || at.elapsed() >= DELETE_PROGRESS_EVERY,
            };
            if !due {
                return;
            }
            let log = latest.as_deref().map(|line| format!("the task's log: {line}"));
            let line = match (&said, &webhook) {
                (_, Some((_, _, true))) => format!(
                    "{name} still listed after {} s: an empty jwt_key header blocks Evolution's cleanup (it never runs)",
                    t / 1000
                ),
                (None, Some((Some(url), true, false))) => format!(
                    "{name} still listed after {} s: Evolution removes it once its REMOVE_INSTANCE webhook to {url} is delivered; it retries up to 10 times (about 20 min) while the receiver fails{}",
                    t / 1000,
                    log.map(|log| format!("; {log}")).unwrap_or_default()
                ),
                (Some(_), Some((Some(_), true, false))) => format!(
                    "{name} still listed after {} s (REMOVE_INSTANCE webhook{})",
                    t / 1000,
                    log.map(|log| format!("; {log}")).unwrap_or_default()
                ),
                _ => format!("{name} still listed after {} s: waiting for Evolution's cleanup", t / 1000),
            };
            context.printer.note(&line);
            said = Some((std::time::Instant::now(), latest));
        }
        _ => {}
    });
    let watched = driver.delete_and_wait(&name, DELETE_POLL, wait, &mut sink);
    let polled = retries.follow();
    let status = tokio::select! {
        status = watched => status,
        () = polled => unreachable!("the log follower never ends"),
    }?;
    let (last, stray) = (sink.last.clone(), link::stray_text(&sink.stray));
    drop(sink);
    match last {
        Some(WatchEvent::Gone { .. }) => {}
        Some(WatchEvent::Foreign) => return Err(crate::evolution::foreign(&name)),
        Some(WatchEvent::Error { status, body }) => {
            let acted = crate::evolution::Acted { env: &reach.env.name, instance: Some(&name) };
            return Err(link::watch_error("delete", status, body, acted));
        }
        Some(WatchEvent::Timeout) => {
            let (message, fix) = match webhook {
                Some((_, _, true)) => (
                    format!(
                        "instance {name} was deleted but is still listed after {} s: its webhook's jwt_key header is empty, so 2.3.7's REMOVE_INSTANCE webhook throws and the cleanup never runs",
                        args.timeout.as_secs()
                    ),
                    format!("set a non-empty jwt_key (`evoctl webhook set {}`) and delete again", reach.subject(&name)),
                ),
                Some((Some(url), true, false)) => (
                    format!(
                        "instance {name} was deleted but is still listed after {} s: Evolution removes it only once its REMOVE_INSTANCE webhook to {url} is delivered or its retries end{}",
                        args.timeout.as_secs(),
                        retries.latest().map(|line| format!(" (the task's log: {line})")).unwrap_or_default()
                    ),
                    format!(
                        "make the webhook receiver answer 2xx, or wait for the retries to end, then check `evoctl instance list {}`",
                        reach.env.name
                    ),
                ),
                _ => (
                    format!("instance {name} was deleted but is still listed after {} s", args.timeout.as_secs()),
                    format!(
                        "check Evolution's log (`evoctl logs {} --kind error`), then `evoctl instance list {}`",
                        reach.env.name, reach.env.name
                    ),
                ),
            };
            return Err(Error::Timeout { message, fix: Some(fix) });
        }
        _ => {
            return Err(Error::exec(
                crate::error::ExecKind::Container,
                format!("the delete wait in the container ended early (exit {status}): {stray}"),
                format!("check `evoctl instance list {}`", reach.env.name),
            ));
        }
    }
    let report = json!({"schema": "evoctl.instance/v1", "env": reach.env.name, "instance": name, "action": "delete",
                        "seconds": crate::output::seconds(started.elapsed())});
    context.printer.data(&report, || format!("instance {name} deleted"));
    Ok(exit::OK)
}

async fn restart(context: &Context, args: &InstanceArgs) -> Result<u8> {
    let reach = Reach::for_linking(context, &args.env).await?;
    let name = reach.instance_name(&args.name).to_owned();
    let state = reach.driver().restart(&name).await?;
    let report = json!({"schema": "evoctl.state/v1", "env": reach.env.name, "instance": name, "state": state});
    context.printer.data(&report, || format!("instance {name} restarted ({state})"));
    Ok(exit::OK)
}
