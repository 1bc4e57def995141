//! Webhook delivery as Evolution 2.3.7 does it, and the lab's own receiver.
//!
//! An event goes to the instance webhook when it is enabled, its events list has the event (an
//! empty list means all) and the URL is http(s); `byEvents` appends `/<event-name>`. A `jwt_key`
//! header becomes `Authorization: Bearer <HS256 JWT>` (claims `iat`, `exp` = iat+600,
//! `app: evolution`, `action: webhook`) and is not sent itself; an empty `jwt_key` makes the
//! signing throw, so nothing at all is delivered (2.3.7's cascade).

use super::db::Instance;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// A webhook POST ready to send.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub url: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// Why an event produced no delivery although a webhook is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// `JWT generation failed: secretOrPrivateKey must have a value` (empty `jwt_key`).
    EmptyJwtKey,
}

/// The delivery for `event` (e.g. `connection.update`), if the instance's webhook wants it.
pub fn prepare(
    instance: &Instance,
    event: &str,
    data: Value,
    server_url: &str,
    now_secs: u64,
) -> Result<Option<Delivery>, Skipped> {
    let Some(webhook) = &instance.webhook else { return Ok(None) };
    let authorization = match webhook.headers.get("jwt_key") {
        None => None,
        Some(Value::String(key)) if !key.is_empty() => Some(format!("Bearer {}", sign_jwt(key, now_secs))),
        Some(_) => return Err(Skipped::EmptyJwtKey),
    };
    let we = event.replace(['.', '-'], "_").to_uppercase();
    let wanted = webhook.enabled && (webhook.events.is_empty() || webhook.events.contains(&we));
    if !wanted || !(webhook.url.starts_with("http://") || webhook.url.starts_with("https://")) {
        return Ok(None);
    }
    let url = if webhook.by_events {
        format!("{}/{}", webhook.url, we.to_lowercase().replace('_', "-"))
    } else {
        webhook.url.clone()
    };
    let body = json!({
        "event": event,
        "instance": instance.name,
        "data": data,
        "destination": url,
        "date_time": super::db::iso(now_secs * 1000),
        "sender": instance.owner_jid,
        "server_url": server_url,
        "apikey": null,
    });
    Ok(Some(Delivery { url, authorization, body }))
}

/// An HS256 JWT as jsonwebtoken would make it for Evolution's webhook claims.
pub fn sign_jwt(secret: &str, now_secs: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"iat": now_secs, "exp": now_secs + 600, "app": "evolution", "action": "webhook"});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac(secret, &signing_input)))
}

fn mac(secret: &str, input: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Check a `Bearer` JWT against candidate secrets; the name of the one that signed it, and the
/// claims, when valid.
pub fn verify_jwt<'a>(
    authorization: &str,
    secrets: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<(String, Value)> {
    let token = authorization.strip_prefix("Bearer ")?;
    let (signing_input, signature) = token.rsplit_once('.')?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let (_, payload) = signing_input.split_once('.')?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    secrets
        .into_iter()
        .find(|(_, secret)| mac(secret, signing_input) == signature)
        .map(|(name, _)| (name.to_owned(), claims))
}

/// POST a delivery (http only; the lab has no route to the internet). Errors are returned
/// for logging, never retried.
pub async fn send(delivery: Delivery) -> Result<u16, String> {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    if !delivery.url.starts_with("http://") {
        return Err(format!("not delivered (the lab only reaches http:// URLs): {}", delivery.url));
    }
    let client: Client<_, Full<axum::body::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::post(&delivery.url).header("content-type", "application/json");
    if let Some(authorization) = &delivery.authorization {
        request = request.header("authorization", authorization);
    }
    let request =
        request.body(Full::new(axum::body::Bytes::from(delivery.body.to_string()))).map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_signs_and_verifies() {
        let token = sign_jwt("s3cret", 1_700_000_000);
        let (name, claims) = verify_jwt(&format!("Bearer {token}"), [("wrong", "nope"), ("right", "s3cret")]).unwrap();
        assert_eq!(name, "right");
        assert_eq!(
            claims,
            json!({"iat": 1_700_000_000u64, "exp": 1_700_000_600u64, "app": "evolution", "action": "webhook"})
        );
        assert!(verify_jwt(&format!("Bearer {token}"), [("wrong", "nope")]).is_none());
    }
}
