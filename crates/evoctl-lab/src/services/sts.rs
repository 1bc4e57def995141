//! STS (AWS query protocol): GetCallerIdentity for whoever signed the call, and AssumeRole into
//! any account's roles (`[roles.NAME]`, `[accounts.ID.roles.NAME]`, with the trust policy's
//! `sts:ExternalId` condition), answered in XML as AWS does. Assumed-role credentials are
//! temporary, belong to the role's account, and every call signed with them must carry their
//! session token.

use super::ApiError;
use crate::state::{Accounts, now_ms};
use serde_json::Value;

/// A credential the lab accepts and whose identity it is.
#[derive(Debug, Clone)]
pub struct Principal {
    pub secret: String,
    pub account: String,
    /// `arn:aws:iam::ACCOUNT:user/NAME` or `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub arn: String,
    pub user_id: String,
    /// Temporary credentials: every request must carry this `X-Amz-Security-Token`.
    pub session_token: Option<String>,
}

/// How long issued credentials are said to last (AssumeRole's default, 1 hour).
const DEFAULT_DURATION_S: u64 = 3600;

/// Credentials AssumeRole issued.
pub struct Issued {
    pub access_key_id: String,
    pub token: String,
    pub expiration_ms: u64,
    pub principal: Principal,
}

/// The GetCallerIdentity XML document for the caller.
pub fn get_caller_identity(caller: &Principal, request_id: &str) -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  \
         <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  \
         </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  \
         </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        escape(&caller.arn),
        escape(&caller.user_id),
        caller.account
    )
}

/// AssumeRole: the role must be one of its account's, that account not revoked, and the
/// ExternalId the one its trust policy requires (AWS says AccessDenied for all, with one text).
pub fn assume_role(accounts: &mut Accounts, caller: &Principal, parameters: &Value) -> Result<Issued, ApiError> {
    let text = |name: &str| parameters[name].as_str().unwrap_or_default().to_owned();
    let (role_arn, session_name, external_id) = (text("RoleArn"), text("RoleSessionName"), text("ExternalId"));
    // STS's own check (botocore checks the same lengths before it sends).
    let bound = match session_name.len() {
        0..2 => Some("greater than or equal to 2"),
        65.. => Some("less than or equal to 64"),
        _ => None,
    };
    if let Some(bound) = bound {
        return Err(ApiError::new(
            400,
            "ValidationError",
            format!(
                "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member must have length {bound}"
            ),
        ));
    }
    let denied = || {
        ApiError::new(
            403,
            "AccessDenied",
            format!("User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}", caller.arn),
        )
    };
    let (role_account, name) = role_arn
        .strip_prefix("arn:aws:iam::")
        .and_then(|rest| rest.split_once(":role/"))
        .filter(|(id, name)| id.len() == 12 && !name.is_empty())
        .map(|(id, name)| (id.to_owned(), name.to_owned()))
        .ok_or_else(denied)?;
    let required = accounts.roles_of(&role_account).and_then(|roles| roles.get(&name)).ok_or_else(denied)?;
    if accounts.revoked.contains(&role_account) {
        return Err(denied());
    }
    if let Some(required) = required
        && *required != external_id
    {
        return Err(denied());
    }
    let account = accounts.list.iter_mut().find(|a| a.account == role_account).expect("roles_of found it");
    let duration = parameters["DurationSeconds"].as_str().and_then(|d| d.parse().ok()).unwrap_or(DEFAULT_DURATION_S);
    let id = account.next_id().to_ascii_uppercase();
    let secret = account.next_id() + &account.next_id()[..8];
    let token = format!("IQoJb3JpZ2luX2VjEL{}{}", account.next_id(), account.next_id());
    let role_id = format!("AROA{}", &account.next_id().to_ascii_uppercase()[..17]);
    let principal = Principal {
        secret,
        account: account.account.clone(),
        arn: format!("arn:aws:sts::{}:assumed-role/{name}/{session_name}", account.account),
        user_id: format!("{role_id}:{session_name}"),
        session_token: Some(token.clone()),
    };
    Ok(Issued {
        access_key_id: format!("ASIA{}", &id[..16]),
        token,
        expiration_ms: now_ms() + duration * 1000,
        principal,
    })
}

/// The AssumeRole XML document.
pub fn assume_role_xml(issued: &Issued, request_id: &str) -> String {
    let expiration = aws_smithy_types::DateTime::from_millis(issued.expiration_ms as i64 / 1000 * 1000)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <AssumeRoleResult>\n    \
         <AssumedRoleUser>\n      <AssumedRoleId>{}</AssumedRoleId>\n      <Arn>{}</Arn>\n    </AssumedRoleUser>\n    \
         <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      \
         <SessionToken>{}</SessionToken>\n      <Expiration>{expiration}</Expiration>\n    </Credentials>\n  \
         </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n\
         </AssumeRoleResponse>\n",
        escape(&issued.principal.user_id),
        escape(&issued.principal.arn),
        issued.access_key_id,
        issued.principal.secret,
        issued.token,
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// An error in the query protocol's XML shape.
pub fn error_xml(code: &str, message: &str, request_id: &str) -> String {
    let kind = if code.starts_with("Internal") { "Receiver" } else { "Sender" };
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>{kind}</Type>\n    \
         <Code>{code}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        escape(message)
    )
}
