//! AWS Lambda (REST JSON): GetFunctionConfiguration, enough to read an app's environment.

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
    let environment = account.lambdas.get(short).ok_or_else(|| {
        ApiError::new(
            404,
            "ResourceNotFoundException",
            format!("Function not found: arn:aws:lambda:{}:{}:function:{short}", account.region, account.account),
        )
    })?;
    Ok(json!({
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
    }))
}
