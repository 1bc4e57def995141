//! `evoctl instance list|create|state|connect|logout|delete|restart ENV [NAME]`: the Evolution
//! instance lifecycle as single commands, over the run envelope (no curl in the image).

use super::Context;
use super::reach::Reach;
use crate::cli::{DestructiveInstanceArgs, EnvArg, InstanceArgs, InstanceCommand, InstanceConnectArgs};
use crate::error::{Error, Result};
use crate::evolution::api::{Connect, CreateRequest, Created};
use crate::exit;
use crate::output::table;
use crate::qr;
use serde_json::json;
use std::io::IsTerminal;
use std::time::Duration;

pub async fn run(context: &Context, command: &InstanceCommand) -> Result<u8> {
    match command {
        InstanceCommand::List(args) => list(context, args).await,
        InstanceCommand::Create(args) => create(context, args).await,
        InstanceCommand::State(args) => state(context, args).await,
        InstanceCommand::Connect(args) => connect(context, args).await,
        InstanceCommand::Logout(args) => destructive(context, args, "logout").await,
        InstanceCommand::Delete(args) => destructive(context, args, "delete").await,
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
        Created::NameTaken => {
            return Err(Error::refused(
                format!(
                    "the name {name} is taken in the database of {} but not loaded by this deployment: another environment shares the database",
                    reach.env.name
                ),
                "give every environment its own DATABASE_CONNECTION_URI (`evoctl audit`)",
            ));
        }
    };
    let report = json!({"schema": "evoctl.instance/v1", "env": reach.env.name, "instance": name, "created": true, "connection_status": status});
    context.printer.data(&report, || {
        format!("created instance {name} ({status}); link it with `evoctl instance connect {}`", reach.env.name)
    });
    Ok(exit::OK)
}

async fn state(context: &Context, args: &InstanceArgs) -> Result<u8> {
    let reach = Reach::new(context, &args.env).await?;
    let name = reach.instance_name(&args.name).to_owned();
    let state = reach.driver().connection_state(&name).await?;
    let report = json!({"schema": "evoctl.state/v1", "env": reach.env.name, "instance": name, "state": state});
    context.printer.data(&report, || state.clone());
    Ok(exit::OK)
}

async fn connect(context: &Context, args: &InstanceConnectArgs) -> Result<u8> {
    check_pairing_number(args.pairing_number.as_deref())?;
    let reach = Reach::for_linking(context, &args.instance.env).await?;
    let name = reach.instance_name(&args.instance.name).to_owned();
    let driver = reach.driver();
    // A fresh socket may need a moment before its first QR ({"count":0}): ask again briefly.
    let mut answer = driver.connect(&name, args.pairing_number.as_deref()).await?;
    for _ in 0..5 {
        if !matches!(answer, Connect::NotReady { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        answer = driver.connect(&name, args.pairing_number.as_deref()).await?;
    }
    let (code, pairing, count) = match answer {
        Connect::Open => {
            let report =
                json!({"schema": "evoctl.connect/v1", "env": reach.env.name, "instance": name, "state": "open"});
            context.printer.data(&report, || format!("instance {name} is already connected (open)"));
            return Ok(exit::OK);
        }
        Connect::NotReady { count } => {
            return Err(Error::Evolution {
                status: 200,
                message: format!("Evolution has no QR for {name} yet (count {count})"),
                fix: "try again in a few seconds; if it persists check the instance (`evoctl instance state`)".into(),
            });
        }
        Connect::Qr { code, pairing_code, count } => (code, pairing_code, count),
    };
    if let Some(path) = &args.png {
        qr::write_png(&code, path)?;
    }
    let report = json!({
        "schema": "evoctl.connect/v1", "env": reach.env.name, "instance": name, "state": "connecting",
        "code": code, "pairing_code": pairing, "count": count, "png": args.png,
    });
    let art = qr::to_terminal(&code, std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())?;
    context.printer.data(&report, || match &pairing {
        Some(pairing) => {
            format!("pairing code for {name}: {pairing}\n(WhatsApp > Linked devices > Link with phone number)")
        }
        None => format!("{art}scan with WhatsApp > Linked devices > Link a device (QR {count} for {name})"),
    });
    Ok(exit::OK)
}

/// `--pairing-number` must be digits only (with the country code).
pub(super) fn check_pairing_number(number: Option<&str>) -> Result<()> {
    match number.filter(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_digit())) {
        Some(number) => Err(Error::usage(
            format!("--pairing-number `{number}` must be digits only, with the country code"),
            "e.g. --pairing-number 5511987654321",
        )),
        None => Ok(()),
    }
}

async fn destructive(context: &Context, args: &DestructiveInstanceArgs, action: &str) -> Result<u8> {
    let reach = Reach::new(context, &args.instance.env).await?;
    let name = reach.instance_name(&args.instance.name).to_owned();
    if reach.env.protected && !args.yes {
        return Err(Error::usage(
            format!("{} is protected: `instance {action}` on {name} needs --yes", reach.env.name),
            format!("run `evoctl instance {action} {} {name} --yes` if you mean it", reach.env.name),
        ));
    }
    let driver = reach.driver();
    if action == "delete" {
        driver.delete(&name).await?;
        // 2.3.7 answers before its cleanup runs: wait until the name is really gone.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !driver.fetch_instances(Some(&name)).await?.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    message: format!("instance {name} was deleted but is still listed after 60s"),
                    fix: Some("Evolution cleans up after its REMOVE_INSTANCE webhook; an empty jwt_key header blocks that cleanup (check `evoctl webhook show`)".into()),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    } else {
        driver.logout(&name).await?;
    }
    let done = if action == "delete" { "deleted" } else { "logged out" };
    let report = json!({"schema": "evoctl.instance/v1", "env": reach.env.name, "instance": name, "action": action});
    context.printer.data(&report, || format!("instance {name} {done}"));
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
