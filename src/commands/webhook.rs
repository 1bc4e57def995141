//! `evoctl webhook show|set ENV [NAME]`: read the instance webhook (the `jwt_key` only as its
//! length, never its value) or make it match evoctl.toml, sending the secret over the data
//! channel. `set` writes nothing when the webhook already matches.

use super::Context;
use super::instance::Reach;
use crate::cli::{InstanceArgs, WebhookCommand};
use crate::config::WebhookConfig;
use crate::error::{Error, Result};
use crate::evolution::failure;
use crate::exit;
use serde_json::{Value, json};

pub async fn run(context: &Context, command: &WebhookCommand) -> Result<u8> {
    match command {
        WebhookCommand::Show(args) => show(context, args).await,
        WebhookCommand::Set(args) => set(context, args).await,
    }
}

/// What may be shown of a `jwt_key`: whether it is there and how long it is.
fn describe_jwt(headers: &Value) -> (Value, String) {
    match headers.get("jwt_key") {
        None => (json!({"set": false}), "not set".into()),
        Some(Value::String(key)) if !key.is_empty() => {
            (json!({"set": true, "length": key.chars().count()}), format!("set ({} chars)", key.chars().count()))
        }
        Some(_) => (json!({"set": true, "length": 0}), "EMPTY (breaks every webhook of the instance in 2.3.7)".into()),
    }
}

async fn current(reach: &Reach, name: &str) -> Result<Value> {
    let answer =
        reach.call("GET", &format!("/webhook/find/{}", super::instance::encode(name)), None, "webhook find").await?;
    Ok(answer.body)
}

async fn show(context: &Context, args: &InstanceArgs) -> Result<u8> {
    let reach = Reach::new(context, &args.env).await?;
    let name = reach.instance_name(&args.name).to_owned();
    let row = current(&reach, &name).await?;
    if row.is_null() {
        let report = json!({"schema": "evoctl.webhook/v1", "env": reach.env.name, "instance": name, "webhook": null});
        context.printer.data(&report, || format!("instance {name} has no webhook"));
        return Ok(exit::OK);
    }
    let (jwt, jwt_text) = describe_jwt(&row["headers"]);
    let other_headers: Vec<String> =
        row["headers"].as_object().map(|h| h.keys().filter(|k| *k != "jwt_key").cloned().collect()).unwrap_or_default();
    let webhook = json!({
        "url": row["url"], "enabled": row["enabled"], "events": row["events"],
        "by_events": row["webhookByEvents"], "base64": row["webhookBase64"],
        "jwt_key": jwt, "other_headers": other_headers,
    });
    let report = json!({"schema": "evoctl.webhook/v1", "env": reach.env.name, "instance": name, "webhook": webhook});
    context.printer.data(&report, || {
        let events: Vec<&str> =
            row["events"].as_array().map(|e| e.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        format!(
            "url        {}\nenabled    {}\nevents     {}\nby_events  {}\nbase64     {}\njwt_key    {jwt_text}\n",
            row["url"].as_str().unwrap_or("-"),
            row["enabled"],
            if events.is_empty() { "(all)".into() } else { events.join(", ") },
            row["webhookByEvents"],
            row["webhookBase64"],
        )
    });
    Ok(exit::OK)
}

/// Whether the stored row already is what the config asks for.
fn matches(row: &Value, wanted: &WebhookConfig, secret: Option<&str>) -> bool {
    let events: Vec<&str> =
        row["events"].as_array().map(|e| e.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let wanted_events: Vec<&str> = wanted.events.iter().map(|e| e.0.as_str()).collect();
    row["enabled"] == true
        && row["url"].as_str() == Some(wanted.url.0.as_str())
        && events == wanted_events
        && row["webhookByEvents"].as_bool() == Some(wanted.by_events)
        && row["webhookBase64"].as_bool() == Some(wanted.base64)
        && row["headers"].get("jwt_key").and_then(Value::as_str) == secret
}

async fn set(context: &Context, args: &InstanceArgs) -> Result<u8> {
    let reach = Reach::new(context, &args.env).await?;
    let name = reach.instance_name(&args.name).to_owned();
    let Some(wanted) = reach.env.webhook.clone() else {
        return Err(Error::usage(
            format!("no webhook is configured for {}", reach.env.name),
            format!("add [env.{}.webhook] with url and events to evoctl.toml", reach.env.name),
        ));
    };
    let secret = match &wanted.jwt_secret {
        Some(reference) => Some(super::secrets::resolve(&reach.aws, reference).await?),
        None => None,
    };
    let row = current(&reach, &name).await?;
    if !row.is_null() && matches(&row, &wanted, secret.as_deref()) {
        let report =
            json!({"schema": "evoctl.webhook-set/v1", "env": reach.env.name, "instance": name, "changed": false});
        context.printer.data(&report, || format!("webhook of {name} already matches evoctl.toml; nothing written"));
        return Ok(exit::OK);
    }
    let body = json!({"webhook": {
        "enabled": true,
        "url": wanted.url.0,
        "byEvents": wanted.by_events,
        "base64": wanted.base64,
        "events": wanted.events.iter().map(|e| e.0.clone()).collect::<Vec<_>>(),
        "headers": {},
    }});
    let secret_field: &[&str] = &["webhook", "headers", "jwt_key"];
    let answer = reach
        .driver()
        .call(
            "POST",
            &format!("/webhook/set/{}", super::instance::encode(&name)),
            Some(body),
            secret.as_deref().map(|s| (secret_field, s)),
        )
        .await?;
    if let Some(err) = failure(&answer, "webhook set") {
        return Err(err);
    }
    let report = json!({"schema": "evoctl.webhook-set/v1", "env": reach.env.name, "instance": name, "changed": true});
    let events: Vec<&str> = wanted.events.iter().map(|e| e.0.as_str()).collect();
    let events = if events.is_empty() { "all".to_owned() } else { events.join(", ") };
    context.printer.data(&report, || format!("webhook of {name} set to {} (events: {events})", wanted.url.0));
    Ok(exit::OK)
}
