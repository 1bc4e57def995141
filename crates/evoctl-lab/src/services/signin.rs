//! AWS Sign-In, the service behind `aws login` (the AWS CLI's console sign-in): the lab plays
//! the browser half with `POST /_lab/login` (a console session of the lab's user: temporary
//! credentials and a refresh token, what `aws login` writes to its token cache), and answers
//! the SDK's refresh, `CreateOAuth2Token` (`POST /v1/token`, restJson, authorized by a DPoP
//! proof instead of SigV4): a known refresh token is rotated and fresh temporary credentials of
//! the same identity are issued; any other is `AccessDeniedException` `TOKEN_EXPIRED`, as AWS
//! says for a session that ended.

use super::ApiError;
use super::sts::{Issued, Principal};
use crate::state::Accounts;
use serde_json::{Value, json};

/// The client id the AWS CLI's same-device `aws login` flow uses.
pub const CLIENT_ID: &str = "arn:aws:signin:::devtools/same-device";

/// How long the credentials a refresh issues last (Sign-In's 15 minutes).
pub const EXPIRES_IN_S: u64 = 900;

/// Temporary credentials of `user`'s console session and a new refresh token.
pub fn issue(accounts: &mut Accounts, user: &Principal) -> (Issued, String) {
    let account = accounts.primary_mut();
    let id = account.next_id().to_ascii_uppercase();
    let secret = account.next_id() + &account.next_id()[..8];
    let token = format!("IQoJb3JpZ2luX2VjELOGIN{}{}", account.next_id(), account.next_id());
    let refresh = format!("lab-login-refresh-{}", account.next_id());
    let principal = Principal { secret, session_token: Some(token.clone()), ..user.clone() };
    let expiration_ms = crate::state::now_ms() + EXPIRES_IN_S * 1000;
    (Issued { access_key_id: format!("ASIA{}", &id[..16]), token, expiration_ms, principal }, refresh)
}

/// `POST /_lab/login`'s answer: what `aws login` learns at the end of the browser flow.
pub fn login_document(issued: &Issued, refresh: &str) -> Value {
    json!({
        "login_session": issued.principal.arn,
        "account_id": issued.principal.account,
        "access_key_id": issued.access_key_id,
        "secret_access_key": issued.principal.secret,
        "session_token": issued.token,
        "refresh_token": refresh,
        "client_id": CLIENT_ID,
    })
}

/// CreateOAuth2Token's checks of the request body (the refresh grant only).
pub fn refresh_grant(body: &Value) -> Result<(&str, &str), ApiError> {
    let text = |key: &str| body.get(key).and_then(Value::as_str);
    let invalid = |message: &str| ApiError::client("ValidationException", message);
    match (text("grantType"), text("clientId"), text("refreshToken")) {
        (Some("refresh_token"), Some(client), Some(refresh)) => Ok((client, refresh)),
        (Some("refresh_token"), _, _) => Err(invalid("clientId and refreshToken are required")),
        _ => Err(invalid("the lab answers the refresh_token grant only")),
    }
}

/// The session ended (or never was): AWS's answer to an unknown refresh token (its OAuth2
/// code, `TOKEN_EXPIRED`, goes in the body's `error`).
pub fn token_expired() -> ApiError {
    ApiError::new(400, "AccessDeniedException", "The session has expired; sign in again")
}

/// The OAuth2 code Sign-In puts in an error body's `error` field.
pub fn oauth2_code(error: &ApiError) -> &'static str {
    if error.code == "AccessDeniedException" { "TOKEN_EXPIRED" } else { "INVALID_REQUEST" }
}

/// CreateOAuth2Token's response body (the `tokenOutput` payload).
pub fn token_document(issued: &Issued, refresh: &str) -> Value {
    json!({
        "accessToken": {
            "accessKeyId": issued.access_key_id,
            "secretAccessKey": issued.principal.secret,
            "sessionToken": issued.token,
        },
        "tokenType": "aws_sigv4",
        "expiresIn": EXPIRES_IN_S,
        "refreshToken": refresh,
    })
}
