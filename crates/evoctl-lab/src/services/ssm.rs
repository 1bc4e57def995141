//! SSM Parameter Store (AWS JSON 1.1, `AmazonSSM`): GetParameter, with SecureString values
//! only in clear text when `WithDecryption` is true.

use super::{ActionResult, ApiError, epoch, required};
use crate::state::Account;
use serde_json::{Value, json};

pub fn handle(account: &mut Account, action: &str, params: &Value, _now: u64) -> ActionResult {
    match action {
        "GetParameter" => {
            let name = required(params, "Name", "ValidationException")?;
            let parameter = account.parameters.get(name).ok_or_else(|| ApiError::client("ParameterNotFound", ""))?;
            let decrypt = params.get("WithDecryption").and_then(Value::as_bool).unwrap_or(false);
            let value = if parameter.kind == "SecureString" && !decrypt {
                format!("AQICAHh{}", hex::encode(&parameter.value.as_bytes()[..parameter.value.len().min(8)]))
            } else {
                parameter.value.clone()
            };
            Ok(json!({
                "Parameter": {
                    "Name": name,
                    "Type": parameter.kind,
                    "Value": value,
                    "Version": 1,
                    "LastModifiedDate": epoch(1_700_000_000_000),
                    "ARN": format!("arn:aws:ssm:{}:{}:parameter{}", account.region, account.account, name),
                    "DataType": "text",
                }
            }))
        }
        "ResumeSession" => {
            let id = required(params, "SessionId", "ValidationException")?.to_owned();
            if !account.exec_sessions.contains_key(&id) {
                return Err(ApiError::client("DoesNotExistException", format!("Session {id} does not exist.")));
            }
            let token = format!("{}{}", account.next_id(), account.next_id());
            account.issued_tokens.push(token.clone());
            if let Some(grant) = account.exec_sessions.get_mut(&id) {
                grant.token = token.clone();
            }
            let url = super::ecs::stream_url(account, &id);
            Ok(json!({"SessionId": id, "TokenValue": token, "StreamUrl": url}))
        }
        _ => Err(ApiError::client("InvalidAction", format!("The action {action} is not valid for this web service."))),
    }
}
