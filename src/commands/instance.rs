//! `evoctl instance list|create|state|connect|logout|delete|restart ENV [NAME]`: the Evolution
//! instance lifecycle as single commands, over the run envelope (no curl in the image).

use super::Context;
use crate::cli::{DestructiveInstanceArgs, EnvArg, InstanceArgs, InstanceCommand, InstanceConnectArgs};
use crate::config::Environment;
use crate::error::{Error, Result};
use crate::evolution::{Answer, Driver, failure};
use crate::exec::run::{RunOptions, Transport};
use crate::exec::target::{self, ExecTarget};
use crate::exit;
use crate::output::table;
use crate::qr;
use serde::Serialize;
use serde_json::{Value, json};
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

/// Config, AWS and the checked exec target for one environment.
pub(super) struct Reach {
    pub(super) env: Environment,
    pub(super) aws: crate::aws::Aws,
    pub(super) target: ExecTarget,
}

impl Reach {
    pub(super) async fn new(context: &Context, env_name: &str) -> Result<Reach> {
        let config = context.config()?;
        let env = config.environment(env_name)?.clone();
        let aws = context.aws(&config).await?;
        let target = target::resolve(&aws.ecs(), &env, None).await?;
        Ok(Reach { env, aws, target })
    }

    /// The instance name: the argument, else the environment's configured instance.
    pub(super) fn instance_name<'a>(&'a self, name: &'a Option<String>) -> &'a str {
        name.as_deref().unwrap_or(&self.env.instance)
    }

    pub(super) fn driver(&self) -> Driver<'_> {
        let options = RunOptions {
            timeout: Duration::from_secs(120),
            watchdog_every: Duration::from_secs(5),
            transport: Transport::Native,
        };
        Driver { aws: &self.aws, target: &self.target, options }
    }

    pub(super) async fn call(&self, method: &str, path: &str, body: Option<Value>, what: &str) -> Result<Answer> {
        let answer = self.driver().call(method, path, body, None).await?;
        match failure(&answer, what) {
            Some(err) => Err(err),
            None => Ok(answer),
        }
    }
}

/// Percent-encode an instance name for a URL path.
pub(super) fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Serialize)]
struct InstanceRow {
    name: String,
    id: Option<String>,
    connection_status: Option<String>,
    number: Option<String>,
    profile_name: Option<String>,
    client_name: Option<String>,
}

async fn list(context: &Context, args: &EnvArg) -> Result<u8> {
    let reach = Reach::new(context, &args.env).await?;
    let answer = reach.call("GET", "/instance/fetchInstances", None, "fetchInstances").await?;
    let text = |row: &Value, key: &str| row[key].as_str().map(str::to_owned);
    let rows: Vec<InstanceRow> = answer
        .body
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| InstanceRow {
                    name: text(row, "name").unwrap_or_default(),
                    id: text(row, "id"),
                    connection_status: text(row, "connectionStatus"),
                    number: text(row, "ownerJid").map(|jid| jid.split('@').next().unwrap_or_default().to_owned()),
                    profile_name: text(row, "profileName"),
                    client_name: text(row, "clientName"),
                })
                .collect()
        })
        .unwrap_or_default();
    let report = json!({"schema": "evoctl.instances/v1", "env": reach.env.name, "instances": rows});
    context.printer.data(&report, || {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.connection_status.clone().unwrap_or_else(|| "-".into()),
                    r.number.clone().unwrap_or_else(|| "-".into()),
                    r.profile_name.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        if cells.is_empty() { "no instances\n".into() } else { table(&["NAME", "STATUS", "NUMBER", "PROFILE"], &cells) }
    });
    Ok(exit::OK)
}

/// The instance's row from fetchInstances, or `None` when this deployment does not have it.
async fn find(reach: &Reach, name: &str) -> Result<Option<Value>> {
    let answer = reach
        .driver()
        .call("GET", &format!("/instance/fetchInstances?instanceName={}", encode(name)), None, None)
        .await?;
    if answer.status == 404 {
        return Ok(None);
    }
    if let Some(err) = failure(&answer, "fetchInstances") {
        return Err(err);
    }
    Ok(answer.body.as_array().and_then(|rows| rows.first().cloned()))
}

async fn create(context: &Context, args: &InstanceArgs) -> Result<u8> {
    let reach = Reach::new(context, &args.env).await?;
    let name = reach.instance_name(&args.name).to_owned();
    let secret = match reach.env.webhook.as_ref().and_then(|w| w.jwt_secret.as_ref()) {
        Some(reference) => Some(super::secrets::resolve(&reach.aws, reference).await?),
        None => None,
    };
    if let Some(existing) = find(&reach, &name).await? {
        let status = existing["connectionStatus"].as_str().unwrap_or("unknown").to_owned();
        let report = json!({"schema": "evoctl.instance/v1", "env": reach.env.name, "instance": name, "created": false, "connection_status": status});
        context.printer.data(&report, || format!("instance {name} already exists ({status}); nothing changed"));
        return Ok(exit::OK);
    }
    let mut body = json!({
        "instanceName": name,
        "integration": "WHATSAPP-BAILEYS",
        "qrcode": true,
        "rejectCall": false,
        "groupsIgnore": true,
        "alwaysOnline": false,
        "readMessages": false,
        "readStatus": false,
        "syncFullHistory": false,
    });
    if let Some(webhook) = &reach.env.webhook {
        body["webhook"] = json!({
            "url": webhook.url.0,
            "byEvents": webhook.by_events,
            "base64": webhook.base64,
            "events": webhook.events.iter().map(|e| e.0.clone()).collect::<Vec<_>>(),
            "headers": {},
        });
    }
    let secret_field: &[&str] = &["webhook", "headers", "jwt_key"];
    let secret = secret.as_deref().filter(|_| reach.env.webhook.is_some()).map(|s| (secret_field, s));
    let answer = reach.driver().call("POST", "/instance/create", Some(body), secret).await?;
    if answer.status == 403 {
        return Err(Error::refused(
            format!(
                "the name {name} is taken in the database of {} but not loaded by this deployment: another environment shares the database",
                reach.env.name
            ),
            "give every environment its own DATABASE_CONNECTION_URI (`evoctl audit`)",
        ));
    }
    if let Some(err) = failure(&answer, "create") {
        return Err(err);
    }
    let status = answer.body["instance"]["status"].as_str().unwrap_or("unknown").to_owned();
    let report = json!({"schema": "evoctl.instance/v1", "env": reach.env.name, "instance": name, "created": true, "connection_status": status});
    context.printer.data(&report, || {
        format!("created instance {name} ({status}); link it with `evoctl instance connect {}`", reach.env.name)
    });
    Ok(exit::OK)
}

async fn state(context: &Context, args: &InstanceArgs) -> Result<u8> {
    let reach = Reach::new(context, &args.env).await?;
    let name = reach.instance_name(&args.name).to_owned();
    let answer =
        reach.call("GET", &format!("/instance/connectionState/{}", encode(&name)), None, "connectionState").await?;
    let state = answer.body["instance"]["state"].as_str().unwrap_or("unknown").to_owned();
    let report = json!({"schema": "evoctl.state/v1", "env": reach.env.name, "instance": name, "state": state});
    context.printer.data(&report, || state.clone());
    Ok(exit::OK)
}

async fn connect(context: &Context, args: &InstanceConnectArgs) -> Result<u8> {
    let reach = Reach::new(context, &args.instance.env).await?;
    let name = reach.instance_name(&args.instance.name).to_owned();
    let mut path = format!("/instance/connect/{}", encode(&name));
    if let Some(number) = &args.pairing_number {
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::usage(
                format!("--pairing-number `{number}` must be digits only, with the country code"),
                "e.g. --pairing-number 5511987654321",
            ));
        }
        path.push_str(&format!("?number={number}"));
    }
    // A fresh socket may need a moment before its first QR ({"count":0}): ask again briefly.
    let mut answer = reach.call("GET", &path, None, "connect").await?;
    for _ in 0..5 {
        if answer.body.get("code").is_some() || answer.body["instance"]["state"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        answer = reach.call("GET", &path, None, "connect").await?;
    }
    if answer.body["instance"]["state"] == "open" {
        let report = json!({"schema": "evoctl.connect/v1", "env": reach.env.name, "instance": name, "state": "open"});
        context.printer.data(&report, || format!("instance {name} is already connected (open)"));
        return Ok(exit::OK);
    }
    let code = answer.body["code"].as_str().map(str::to_owned);
    let pairing = answer.body["pairingCode"].as_str().map(str::to_owned);
    let Some(code) = code else {
        return Err(Error::Evolution {
            status: answer.status,
            message: format!("Evolution has no QR for {name} yet ({})", answer.body),
            fix: "try again in a few seconds; if it persists check the instance (`evoctl instance state`)".into(),
        });
    };
    if let Some(path) = &args.png {
        qr::write_png(&code, path)?;
    }
    let report = json!({
        "schema": "evoctl.connect/v1", "env": reach.env.name, "instance": name, "state": "connecting",
        "code": code, "pairing_code": pairing, "count": answer.body["count"], "png": args.png,
    });
    let art = qr::to_terminal(&code, std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())?;
    context.printer.data(&report, || match &pairing {
        Some(pairing) => {
            format!("pairing code for {name}: {pairing}\n(WhatsApp > Linked devices > Link with phone number)")
        }
        None => {
            format!("{art}scan with WhatsApp > Linked devices > Link a device (QR {} for {name})", answer.body["count"])
        }
    });
    Ok(exit::OK)
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
    reach.call("DELETE", &format!("/instance/{action}/{}", encode(&name)), None, action).await?;
    if action == "delete" {
        // 2.3.7 answers before its cleanup runs: wait until the name is really gone.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while find(&reach, &name).await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    message: format!("instance {name} was deleted but is still listed after 60s"),
                    fix: Some("Evolution cleans up after its REMOVE_INSTANCE webhook; an empty jwt_key header blocks that cleanup (check `evoctl webhook show`)".into()),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let done = if action == "delete" { "deleted" } else { "logged out" };
    let report = json!({"schema": "evoctl.instance/v1", "env": reach.env.name, "instance": name, "action": action});
    context.printer.data(&report, || format!("instance {name} {done}"));
    Ok(exit::OK)
}

async fn restart(context: &Context, args: &InstanceArgs) -> Result<u8> {
    let reach = Reach::new(context, &args.env).await?;
    let name = reach.instance_name(&args.name).to_owned();
    let answer = reach.call("POST", &format!("/instance/restart/{}", encode(&name)), None, "restart").await?;
    let state = answer.body["instance"]["state"]
        .as_str()
        .unwrap_or(if answer.body.get("code").is_some() { "connecting" } else { "unknown" })
        .to_owned();
    let report = json!({"schema": "evoctl.state/v1", "env": reach.env.name, "instance": name, "state": state});
    context.printer.data(&report, || format!("instance {name} restarted ({state})"));
    Ok(exit::OK)
}
