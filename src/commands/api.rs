//! `evoctl api ENV METHOD PATH [--data JSON|@FILE] [--instance NAME]`: any Evolution API call,
//! for the calls evoctl has no command for. It runs in the task like every other call (the key
//! read there, never on a command line; the body travels inside the program over the data
//! channel), and the answer comes back scrubbed (the key cut out, token fields redacted), then
//! printed as JSON through the printer. HTTP >= 400 exits non-zero, the status said.

use super::Context;
use super::reach::Reach;
use crate::cli::ApiArgs;
use crate::error::{Error, Result};
use crate::evolution::{Acted, Call, failure, flatten};
use crate::exit;
use serde_json::{Value, json};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

pub async fn run(context: &Context, args: &ApiArgs) -> Result<u8> {
    let method = args.method.to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(Error::usage(
            format!("api: unknown method `{}`", args.method),
            format!("give one of {} (e.g. `evoctl api {} GET /instance/fetchInstances`)", METHODS.join(", "), args.env),
        ));
    }
    if !args.path.starts_with('/') || args.path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(Error::usage(
            format!("api: the path `{}` must start with / and hold no spaces or control characters", args.path),
            format!("e.g. `evoctl api {} GET /instance/fetchInstances` (percent-encode spaces as %20)", args.env),
        ));
    }
    let body = args.data.as_deref().map(read_data).transpose()?;
    let reach = Reach::new(context, &args.env).await?;
    let driver = reach.driver();
    let call = Call { body: body.as_ref(), owner_check: args.instance.as_deref(), ..Call::new(&method, &args.path) };
    let answer = driver.call(call).await?;
    let report = json!({
        "schema": "evoctl.api/v1", "env": reach.env.name, "method": method, "path": args.path,
        "status": answer.status, "body": answer.body,
    });
    context.printer.data(&report, || match &answer.body {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).expect("JSON values serialise"),
    });
    if answer.status >= 400 {
        let acted = Acted { env: &reach.env.name, instance: args.instance.as_deref() };
        let what = format!("{method} {}", args.path);
        let said = failure(&answer, &what, acted);
        let fix = said.as_ref().and_then(Error::fix).map(str::to_owned).unwrap_or_else(|| {
            format!(
                "check the path and body against Evolution's API; its log: `evoctl logs {} --kind error`",
                reach.env.name
            )
        });
        let message = flatten(&answer.body["response"]["message"]);
        return Err(Error::Evolution {
            status: answer.status,
            message: format!(
                "{what} answered HTTP {}{}",
                answer.status,
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", crate::output::sanitize::quote_line(&message, 600))
                }
            ),
            fix,
        });
    }
    Ok(exit::OK)
}

/// `--data`: JSON text, or `@FILE`.
fn read_data(data: &str) -> Result<Value> {
    let (text, origin) = match data.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| {
                Error::usage(
                    format!("--data @{path}: cannot read the file: {e}"),
                    "give a readable file of JSON after @",
                )
            })?,
            format!("the file {path}"),
        ),
        None => (data.to_owned(), "--data".to_owned()),
    };
    serde_json::from_str(&text).map_err(|e| {
        Error::usage(
            format!("{origin} is not JSON: {e}"),
            "give a JSON body, e.g. --data '{\"number\": \"5511912345678\"}', or --data @body.json",
        )
    })
}
