//! `evoctl webhook show|set ENV [NAME]`: read the instance webhook (the `jwt_key` only as its
//! length, never its value) or make it match evoctl.toml, sending the secret over the data
//! channel. `set` writes nothing when the webhook already matches.

use super::Context;
use super::reach::Reach;
use crate::cli::{InstanceArgs, WebhookCommand};
use crate::error::{Error, Result};
use crate::exit;
use serde_json::{Value, json};

pub async fn run(context: &Context, command: &WebhookCommand) -> Result<u8> {
    match command {
        WebhookCommand::Show(args) => show(context, args).await,
        WebhookCommand::Set(args) => set(context, args).await,
    }
}

/// What may be shown of a `jwt_key`: whether it is there and how long it is.
fn describe_jwt(headers: &serde_json::Map<String, Value>) -> (Value, String) {
    match headers.get("jwt_key") {
        None => (json!({"set": false}), "not set".into()),
        Some(Value::String(key)) if !key.is_empty() => {
            (json!({"set": true, "length": key.chars().count()}), format!("set ({} chars)", key.chars().count()))
        }
        Some(_) => (json!({"set": true, "length": 0}), "EMPTY (breaks every webhook of the instance in 2.3.7)".into()),
    }
}

async fn show(context: &Context, args: &InstanceArgs) -> Result<u8> {
    let reach = Reach::new(context, &args.env).await?;
    let name = reach.instance_name(&args.name).to_owned();
    let Some(row) = reach.driver().webhook_find(&name).await? else {
        let report = json!({"schema": "evoctl.webhook/v1", "env": reach.env.name, "instance": name, "webhook": null});
        context.printer.data(&report, || format!("instance {name} has no webhook"));
        return Ok(exit::OK);
    };
    let (jwt, jwt_text) = describe_jwt(&row.headers);
    let other_headers: Vec<&String> = row.headers.keys().filter(|k| *k != "jwt_key").collect();
    let webhook = json!({
        "url": row.url, "enabled": row.enabled, "events": row.events, "all_events": row.all_events(), "by_events": row.by_events,
        "base64": row.base64, "jwt_key": jwt, "other_headers": other_headers,
    });
    let report = json!({"schema": "evoctl.webhook/v1", "env": reach.env.name, "instance": name, "webhook": webhook});
    context.printer.data(&report, || {
        let events = if row.all_events() { "(all)".to_owned() } else { row.events.join(", ") };
        format!(
            "url        {}\nenabled    {}\nevents     {events}\nby_events  {}\nbase64     {}\njwt_key    {jwt_text}\n",
            row.url, row.enabled, row.by_events, row.base64,
        )
    });
    Ok(exit::OK)
}

async fn set(context: &Context, args: &InstanceArgs) -> Result<u8> {
    let reach = Reach::new(context, &args.env).await?;
    let name = reach.instance_name(&args.name).to_owned();
    let (Some(config), Some(wanted)) = (reach.env.webhook.clone(), reach.webhook_request()) else {
        return Err(Error::usage(
            format!("no webhook is configured for {}", reach.env.name),
            format!("add [env.{}.webhook] with url and events to evoctl.toml", reach.env.name),
        ));
    };
    let secret = match &config.jwt_secret {
        Some(reference) => Some(super::secrets::resolve(&reach.aws, reference).await?),
        None => None,
    };
    if !reach.driver().ensure_webhook(&name, &wanted, secret.as_deref()).await? {
        let report = json!({"schema": "evoctl.webhook-set/v1", "env": reach.env.name, "instance": name, "changed": false, "webhook": "unchanged"});
        context.printer.data(&report, || format!("webhook of {name} already matches evoctl.toml; nothing written"));
        return Ok(exit::OK);
    }
    let report = json!({"schema": "evoctl.webhook-set/v1", "env": reach.env.name, "instance": name, "changed": true, "webhook": "set"});
    let events = if wanted.events.is_empty() { "all".to_owned() } else { wanted.events.join(", ") };
    context.printer.data(&report, || format!("webhook of {name} set to {} (events: {events})", wanted.url));
    Ok(exit::OK)
}
