//! AWS Lambda (REST JSON): GetFunctionConfiguration, ListFunctions (with each function's
//! environment, as AWS answers) and ListTags: enough to read an app's environment and find an
//! app's function by its tags.

use super::{ActionResult, ApiError};
use crate::state::Account;
use serde_json::json;

pub fn get_function_configuration(account: &Account, name: &str) -> ActionResult {
    let short = name.rsplit(':').next().unwrap_or(name);
    let short = if name.contains(":function:") {
        name.split(":function:").nth(1).and_then(|s| s.split(':').next()).unwrap_or(short)
    } else {
        name
    };
    if !account.lambdas.contains_key(short) {
        return Err(ApiError::new(
            404,
            "ResourceNotFoundException",
            format!("Function not found: arn:aws:lambda:{}:{}:function:{short}", account.region, account.account),
        ));
    }
    Ok(configuration(account, short))
}

/// ListFunctions: every function's configuration, `MaxItems` per page (default 50), `Marker`.
pub fn list_functions(account: &Account, marker: Option<&str>, max_items: Option<u64>) -> ActionResult {
    let names: Vec<String> = account.lambdas.keys().cloned().collect();
    let (page, next) = super::page(&names, marker, max_items, 50);
    let functions: Vec<serde_json::Value> = page.iter().map(|name| configuration(account, name)).collect();
    let mut out = json!({"Functions": functions});
    if let Some(next) = next {
        out["NextMarker"] = json!(next);
    }
    Ok(out)
}

/// ListTags for a function ARN.
pub fn list_tags(account: &Account, arn: &str) -> ActionResult {
    let name = arn.split(":function:").nth(1).and_then(|rest| rest.split(':').next()).unwrap_or(arn);
    match account.lambda_tags.get(name) {
        Some(tags) => Ok(json!({"Tags": tags})),
        None => Err(ApiError::new(404, "ResourceNotFoundException", format!("Function not found: {arn}"))),
    }
}

fn configuration(account: &Account, short: &str) -> serde_json::Value {
    let environment = &account.lambdas[short];
    json!({
        "FunctionName": short,
        "FunctionArn": format!("arn:aws:lambda:{}:{}:function:{short}", account.region, account.account),
        "Runtime": "nodejs20.x",
        "Role": format!("arn:aws:iam::{}:role/{short}-Role", account.account),
        "Handler": "index.handler",
        "CodeSize": 1024,
        "Description": "",
        "Timeout": 20,
        "MemorySize": 1024,
        "LastModified": "2026-11-01T00:00:00.000+0000",
        "CodeSha256": "lab",
        "Version": "$LATEST",
        "Environment": {"Variables": environment},
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["arm64"],
    })
}
