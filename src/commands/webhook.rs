//! `evoctl webhook show|set|test ENV [NAME]`: read the instance webhook (the `jwt_key` only as
//! its length, never its value), make it match evoctl.toml (the secret over the data channel;
//! nothing written when it already matches), or test delivery from inside the task: a probe
//! signed with the instance's own `jwt_key` as 2.3.7 signs, POSTed to its URL (see
//! [`crate::evolution::probe`]); exit 1 when the receiver does not take it.

use super::Context;
use super::reach::Reach;
use crate::cli::{InstanceArgs, WebhookCommand, WebhookTestArgs};
use crate::error::{Error, Result};
use crate::evolution::probe::Verdict;
use crate::exit;
use serde_json::{Value, json};

pub async fn run(context: &Context, command: &WebhookCommand) -> Result<u8> {
    match command {
        WebhookCommand::Show(args) => show(context, args).await,
        WebhookCommand::Set(args) => set(context, args).await,
        WebhookCommand::Test(args) => test(context, args).await,
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

async fn test(context: &Context, args: &WebhookTestArgs) -> Result<u8> {
    let reach = Reach::new(context, &args.instance.env).await?;
    let name = reach.instance_name(&args.instance.name).to_owned();
    let reference = reach.env.webhook.as_ref().and_then(|w| w.jwt_secret.clone());
    // The secret evoctl.toml names, to tell which side differs on a 401 (compared in the task).
    let expected = crate::evolution::probe::configured_secret(&reach.aws, reference.as_ref()).await?;
    let probe = reach.driver().webhook_probe(&name, expected.as_deref(), args.timeout).await?;
    let verdict = probe.verdict(&reach.env.name, reach.named(&name), reference.as_ref());
    let (ok, problem, fix) = match &verdict {
        Verdict::Delivered { .. } => (true, None, None),
        Verdict::Broken { problem, fix } => (false, Some(problem.clone()), Some(fix.clone())),
    };
    let report = json!({
        "schema": "evoctl.webhook-test/v1",
        "env": reach.env.name,
        "instance": name,
        "ok": ok,
        "url": probe.url,
        "target": probe.target,
        "event": crate::evolution::probe::PROBE_EVENT,
        "jwt": probe.jwt,
        "jwt_key_matches_config": probe.matches_config,
        "http_status": probe.http_status,
        "latency_ms": probe.ms,
        "error_code": probe.code,
        "problem": problem,
        "fix": fix,
    });
    context.printer.data(&report, || match &verdict {
        Verdict::Delivered { status, ms } => format!(
            "webhook test: ok\nPOST {} answered {status} in {ms} ms ({})\n",
            probe.target.as_deref().unwrap_or(""),
            if probe.jwt {
                "JWT signed with the instance's jwt_key, as Evolution signs"
            } else {
                "no jwt_key: sent without a JWT"
            }
        ),
        Verdict::Broken { problem, .. } => format!("webhook test: FAILED\n{problem}\n"),
    });
    match verdict {
        Verdict::Delivered { .. } => Ok(exit::OK),
        Verdict::Broken { fix, .. } => {
            context.printer.note(&format!("fix: {fix}"));
            Ok(exit::FINDINGS)
        }
    }
}
