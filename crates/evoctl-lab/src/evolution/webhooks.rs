//! Webhook delivery as Evolution 2.3.7's `WebhookController` does it.
//!
//! The stored `headers` are copied; a `jwt_key` key (any value) is replaced by
//! `Authorization: Bearer <HS256 JWT>` (claims `iat`, `exp` = iat+600, `app: evolution`,
//! `action: webhook`), and a `jwt_key` that is empty or not a string makes the signing throw
//! (jsonwebtoken's texts), so the whole emission fails. The POST goes out as axios sends it
//! (its `Accept`, `User-Agent`, `Accept-Encoding`), bounded by `WEBHOOK_REQUEST_TIMEOUT_MS`, and
//! is retried with the real policy: up to `WEBHOOK_RETRY_MAX_ATTEMPTS` tries, waits of
//! `min(initial·2^(n-1), max)` ± jitter floored at `initial`, a status in
//! `WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES` stops at once, timeouts, network errors and other
//! statuses are retried; each try is logged in Portuguese as the server logs it. The lab's
//! `--evolution-time-scale` multiplies the waits and the timeout.

use super::env::EvoConfig;
use super::js::{Js, number_text};
use super::log::{Level, Logger};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;

/// The axios 2.3.7 ships (`package-lock.json:5805-5806`), which names itself in `User-Agent`.
pub const AXIOS_VERSION: &str = "1.13.2";

/// `origin` of the instance webhook's log objects.
pub const LOCAL: &str = "ChannelStartupService.sendData-Webhook";

/// Why a webhook's headers could not be prepared: jsonwebtoken threw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtError(pub String);

/// The outgoing headers for a stored `headers` column, with the JWT when it has a `jwt_key`.
pub fn outgoing_headers(stored: &Value, now_secs: u64) -> Result<Vec<(String, String)>, JwtError> {
    // `{ ...(headers || {}) }`: a string spreads into its characters, anything else into nothing.
    let mut entries: Vec<(String, Value)> = match stored {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Value::String(s) if !s.is_empty() => {
            s.chars().enumerate().map(|(i, c)| (i.to_string(), Value::String(c.to_string()))).collect()
        }
        _ => Vec::new(),
    };
    if let Some(index) = entries.iter().position(|(k, _)| k == "jwt_key") {
        let (_, key) = entries.remove(index);
        let token = match &key {
            Value::String(secret) if !secret.is_empty() => sign_jwt(secret, now_secs),
            Value::Null | Value::Bool(false) => return Err(JwtError("secretOrPrivateKey must have a value".into())),
            Value::String(_) => return Err(JwtError("secretOrPrivateKey must have a value".into())),
            Value::Number(n) if n.as_f64() == Some(0.0) => {
                return Err(JwtError("secretOrPrivateKey must have a value".into()));
            }
            _ => return Err(JwtError("secretOrPrivateKey is not valid key material".into())),
        };
        entries.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        entries.push(("Authorization".into(), Value::String(format!("Bearer {token}"))));
    }
    Ok(entries
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, number_text(n.as_f64().unwrap_or(0.0)))),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect())
}

/// An HS256 JWT as jsonwebtoken would make it for Evolution's webhook claims.
pub fn sign_jwt(secret: &str, now_secs: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = format!(r#"{{"iat":{now_secs},"exp":{},"app":"evolution","action":"webhook"}}"#, now_secs + 600);
    let payload = URL_SAFE_NO_PAD.encode(claims);
    let signing_input = format!("{header}.{payload}");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac(secret, &signing_input)))
}

fn mac(secret: &str, input: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Check a `Bearer` JWT against candidate secrets as an app verifies one, with the
/// `jsonwebtoken` crate (independent of any signer here): HS256 only, a signature made with the
/// secret, `exp` not passed and `iat` present and not in the future (60 s of leeway each, the
/// crate's default). The name of the secret that verified it, and the claims, when valid.
pub fn verify_jwt<'a>(
    authorization: &str,
    secrets: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<(String, Value)> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let token = authorization.strip_prefix("Bearer ")?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp"]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    secrets.into_iter().find_map(|(name, secret)| {
        let data =
            jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation).ok()?;
        let iat = data.claims.get("iat").and_then(Value::as_u64)?;
        (iat <= now + validation.leeway).then(|| (name.to_owned(), data.claims))
    })
}

/// How one try failed, as axios reports it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub message: String,
    pub code: Option<String>,
    pub status: Option<u16>,
    pub syscall: Option<&'static str>,
    pub hostname: Option<String>,
    pub errno: Option<i64>,
    pub timeout: bool,
}

impl Failure {
    fn network(code: &str, message: String, syscall: &'static str, errno: i64) -> Failure {
        Failure {
            message,
            code: Some(code.into()),
            status: None,
            syscall: Some(syscall),
            hostname: None,
            errno: Some(errno),
            timeout: false,
        }
    }

    fn stack(&self, awaited_by_cleanup: bool) -> String {
        let mut stack = if self.status.is_some() {
            format!(
                "AxiosError: {}\n    at settle (/evolution/node_modules/axios/lib/core/settle.js:19:12)\n    at IncomingMessage.handleStreamEnd (/evolution/node_modules/axios/lib/adapters/http.js:793:11)\n    at IncomingMessage.emit (node:events:536:35)\n    at endReadableNT (node:internal/streams/readable:1698:12)\n    at process.processTicksAndRejections (node:internal/process/task_queues:82:21)",
                self.message
            )
        } else {
            format!(
                "AxiosError: {}\n    at AxiosError.from (/evolution/node_modules/axios/lib/core/AxiosError.js:96:14)\n    at RedirectableRequest.handleRequestError (/evolution/node_modules/axios/lib/adapters/http.js:845:25)\n    at RedirectableRequest.emit (node:events:524:28)",
                self.message
            )
        };
        stack.push_str(
            "\n    at Axios.request (/evolution/node_modules/axios/lib/core/Axios.js:45:41)\n    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)\n    at async WebhookController.retryWebhookRequest (/evolution/src/api/integrations/event/webhook/webhook.controller.ts:224:9)\n    at async WebhookController.emit (/evolution/src/api/integrations/event/webhook/webhook.controller.ts:133:13)\n    at async EventManager.emit (/evolution/src/api/integrations/event/event.manager.ts:132:5)\n    at async BaileysStartupService.sendDataWebhook (/evolution/src/api/services/channel.service.ts:451:5)",
        );
        if awaited_by_cleanup {
            stack.push_str(
                "\n    at async EventEmitter.<anonymous> (/evolution/src/api/services/monitor.service.ts:395:9)",
            );
        }
        stack
    }
}

/// Split `http://host:port/path` into (host, port, path-and-query); `https` reports true.
fn split_url(url: &str) -> Option<(bool, String, u16, String)> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        let lower = url.to_ascii_lowercase();
        let tls = lower.starts_with("https://");
        let cut = if tls { 8 } else { 7 };
        if !lower.starts_with("http://") && !tls {
            return None;
        }
        (tls, &url[cut..])
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => match port.parse() {
            Ok(port) => (host.to_owned(), port),
            Err(_) if port.is_empty() => (host.to_owned(), if tls { 443 } else { 80 }),
            Err(_) => return None,
        },
        _ => (authority.to_owned(), if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return None;
    }
    Some((tls, host, port, if path.is_empty() { "/".into() } else { path }))
}

/// A wait in seconds as a duration: NaN and negatives are none, anything above a day a day (the
/// settings are the user's, and `parseInt` of a long number is Infinity).
fn seconds(value: f64) -> Duration {
    if value.is_nan() { Duration::ZERO } else { Duration::from_secs_f64(value.clamp(0.0, 86_400.0)) }
}

/// One POST, as axios makes it; `Ok` for a 2xx answer.
pub async fn post_once(
    url: &str,
    headers: &[(String, String)],
    body: &str,
    timeout: Duration,
    timeout_ms_shown: f64,
) -> Result<u16, Failure> {
    let attempt = async {
        let Some((tls, host, port, path)) = split_url(url) else {
            return Err(Failure {
                code: Some("ERR_INVALID_URL".into()),
                ..Failure::network("ERR_INVALID_URL", "Invalid URL".to_owned(), "connect", 0)
            });
        };
        let lookup = tokio::net::lookup_host((host.as_str(), port)).await;
        let address = match lookup.ok().and_then(|mut found| found.next()) {
            // The lab reaches no TLS endpoint and nothing off this machine by name.
            Some(address) if !tls => address,
            _ => {
                let mut failure =
                    Failure::network("ENOTFOUND", format!("getaddrinfo ENOTFOUND {host}"), "getaddrinfo", -3008);
                failure.hostname = Some(host.clone());
                return Err(failure);
            }
        };
        let stream = tokio::net::TcpStream::connect(address).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                Failure::network("ECONNREFUSED", format!("connect ECONNREFUSED {address}"), "connect", -111)
            }
            _ => Failure::network("ECONNRESET", format!("connect {e}"), "connect", -104),
        })?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let hang_up = || Failure::network("ECONNRESET", "socket hang up".into(), "read", -104);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|_| hang_up())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = hyper::Request::post(path.as_str());
        let authority = if port == 80 { host.clone() } else { format!("{host}:{port}") };
        let mut names: Vec<String> = Vec::new();
        let mut put = |request: hyper::http::request::Builder, name: &str, value: &str| {
            names.push(name.to_ascii_lowercase());
            request.header(name, value)
        };
        let custom = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        if !custom("accept") {
            request = put(request, "Accept", "application/json, text/plain, */*");
        }
        if !custom("content-type") {
            request = put(request, "Content-Type", "application/json");
        }
        for (name, value) in headers {
            if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Failure::network(
                    "ERR_INVALID_HTTP_TOKEN",
                    format!("Header name must be a valid HTTP token [\"{name}\"]"),
                    "write",
                    0,
                ));
            }
            if hyper::header::HeaderValue::from_str(value).is_err() {
                return Err(Failure::network(
                    "ERR_INVALID_CHAR",
                    format!("Invalid character in header content [\"{name}\"]"),
                    "write",
                    0,
                ));
            }
            request = put(request, name, value);
        }
        if !custom("user-agent") {
            request = put(request, "User-Agent", &format!("axios/{AXIOS_VERSION}"));
        }
        request = put(request, "Content-Length", &body.len().to_string());
        request = put(request, "Accept-Encoding", "gzip, compress, deflate, br");
        request = put(request, "Host", &authority);
        request = put(request, "Connection", "keep-alive");
        let request = request
            .body(http_body_util::Full::new(axum::body::Bytes::from(body.to_owned())))
            .map_err(|e| Failure::network("ERR_INVALID_CHAR", e.to_string(), "write", 0))?;
        let response = sender.send_request(request).await.map_err(|_| hang_up())?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            let code = match status / 100 {
                4 => Some("ERR_BAD_REQUEST".to_owned()),
                5 => Some("ERR_BAD_RESPONSE".to_owned()),
                _ => None,
            };
            Err(Failure {
                message: format!("Request failed with status code {status}"),
                code,
                status: Some(status),
                syscall: None,
                hostname: None,
                errno: None,
                timeout: false,
            })
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Failure {
            message: format!("timeout of {}ms exceeded", number_text(timeout_ms_shown)),
            code: Some("ECONNABORTED".into()),
            status: None,
            syscall: None,
            hostname: None,
            errno: None,
            timeout: true,
        }),
    }
}

/// What a delivery needs from its process.
pub struct Context<'a> {
    pub config: &'a EvoConfig,
    pub logger: &'a Logger,
    pub time_scale: f64,
    /// `Math.random()`.
    pub random: &'a (dyn Fn() -> f64 + Send + Sync),
    /// Whether a cleanup awaits this delivery (its stack shows the monitor's handler).
    pub awaited: bool,
}

/// `retryWebhookRequest`: try, log, wait, try again; `Err` with the last failure once the tries
/// are spent or a status is not retryable.
pub async fn retry(ctx: &Context<'_>, url: &str, headers: &[(String, String)], body: &str) -> Result<(), Failure> {
    let config = ctx.config;
    let max = config.retry_max_attempts;
    let initial = config.retry_initial_delay_s;
    let server_url = Js::opt(config.server_url.as_deref());
    let timeout = seconds(config.webhook_timeout_ms / 1000.0 * ctx.time_scale).max(Duration::from_millis(1));
    let mut attempts = 0.0;
    while attempts < max {
        match post_once(url, headers, body, timeout, config.webhook_timeout_ms).await {
            Ok(_) => {
                if attempts > 0.0 {
                    let message = format!("Sucesso no envio após {} tentativas", number_text(attempts + 1.0));
                    ctx.logger.write(
                        Level::Log,
                        "WebhookController",
                        None,
                        &Js::obj(vec![("local", Js::str(LOCAL)), ("message", Js::str(message)), ("url", Js::str(url))]),
                    );
                }
                return Ok(());
            }
            Err(failure) => {
                attempts += 1.0;
                if let Some(status) = failure.status.filter(|s| config.non_retryable(*s)) {
                    let message =
                        format!("Erro não recuperável ({status}): {}. Cancelando retentativas.", failure.message);
                    ctx.logger.write(
                        Level::Error,
                        "WebhookController",
                        None,
                        &Js::obj(vec![
                            ("local", Js::str(LOCAL)),
                            ("message", Js::str(message)),
                            ("statusCode", Js::Num(f64::from(status))),
                            ("url", Js::str(url)),
                            ("server_url", server_url.clone()),
                        ]),
                    );
                    return Err(failure);
                }
                let reason =
                    if failure.timeout { "Timeout da requisição".to_owned() } else { failure.message.clone() };
                let message = format!("Tentativa {}/{} falhou: {reason}", number_text(attempts), number_text(max));
                ctx.logger.write(
                    Level::Error,
                    "WebhookController",
                    None,
                    &Js::obj(vec![
                        ("local", Js::str(LOCAL)),
                        ("message", Js::str(message)),
                        ("hostName", Js::opt(failure.hostname.as_deref())),
                        ("syscall", Js::opt(failure.syscall)),
                        ("code", Js::opt(failure.code.as_deref())),
                        ("isTimeout", Js::Bool(failure.timeout)),
                        ("statusCode", failure.status.map_or(Js::Undefined, |s| Js::Num(f64::from(s)))),
                        ("error", failure.errno.map_or(Js::Undefined, |e| Js::Num(e as f64))),
                        ("stack", Js::str(failure.stack(ctx.awaited))),
                        ("name", Js::str("AxiosError")),
                        ("url", Js::str(url)),
                        ("server_url", server_url.clone()),
                    ]),
                );
                if attempts == max {
                    return Err(failure);
                }
                let mut next = initial;
                if config.retry_exponential {
                    next = (initial * 2f64.powf(attempts - 1.0)).min(config.retry_max_delay_s);
                    let jitter = next * config.retry_jitter_factor * ((ctx.random)() * 2.0 - 1.0);
                    next = initial.max(next + jitter);
                }
                ctx.logger.write(
                    Level::Log,
                    "WebhookController",
                    None,
                    &Js::obj(vec![
                        ("local", Js::str(LOCAL)),
                        ("message", Js::str(format!("Aguardando {next:.1} segundos antes da próxima tentativa"))),
                        ("url", Js::str(url)),
                    ]),
                );
                tokio::time::sleep(seconds(next * ctx.time_scale)).await;
            }
        }
    }
    Ok(())
}

/// The `Todas as tentativas falharam` object the emitter logs when `retry` gives up.
pub fn log_gave_up(ctx: &Context<'_>, url: &str, failure: &Failure) {
    ctx.logger.write(
        Level::Error,
        "WebhookController",
        None,
        &Js::obj(vec![
            ("local", Js::str(LOCAL)),
            ("message", Js::str(format!("Todas as tentativas falharam: {}", failure.message))),
            ("hostName", Js::opt(failure.hostname.as_deref())),
            ("syscall", Js::opt(failure.syscall)),
            ("code", Js::opt(failure.code.as_deref())),
            ("error", failure.errno.map_or(Js::Undefined, |e| Js::Num(e as f64))),
            ("stack", Js::str(failure.stack(ctx.awaited))),
            ("name", Js::str("AxiosError")),
            ("url", Js::str(url)),
            ("server_url", Js::opt(ctx.config.server_url.as_deref())),
        ]),
    );
}

/// The per-send dump the server writes when `LOG_LEVEL` has `WEBHOOKS`.
pub fn log_send(logger: &Logger, url: &str, payload: &Value) {
    if !logger.enabled("WEBHOOKS") {
        return;
    }
    let mut entries = vec![("local".to_owned(), Js::str(LOCAL)), ("url".to_owned(), Js::str(url))];
    if let Some(map) = payload.as_object() {
        for key in ["event", "instance", "data", "destination", "date_time", "sender", "server_url", "apikey"] {
            let value = map.get(key).map_or(Js::Undefined, Js::from);
            entries.push((key.to_owned(), value));
        }
    }
    logger.write(Level::Log, "WebhookController", None, &Js::Obj(entries));
}

/// The JWT failure object (`WebhookController.generateJwtToken`).
pub fn log_jwt_failure(logger: &Logger, error: &JwtError) {
    logger.write(
        Level::Error,
        "WebhookController",
        None,
        &Js::obj(vec![
            ("local", Js::str("WebhookController.generateJwtToken")),
            ("message", Js::str(format!("JWT generation failed: {}", error.0))),
        ]),
    );
}

/// What wraps an event's `data` in the webhook payload (`webhookData`).
pub struct Envelope<'a> {
    pub event: &'a str,
    pub instance: &'a str,
    /// The row's URL, without the `byEvents` suffix.
    pub destination: &'a str,
    pub date_time: &'a str,
    pub sender: Option<&'a str>,
    pub server_url: Option<&'a str>,
    pub apikey: Option<&'a str>,
}

impl Envelope<'_> {
    /// The payload; `sender` and `server_url` are left out when undefined.
    pub fn payload(&self, data: Value) -> Value {
        let mut body = json!({
            "event": self.event,
            "instance": self.instance,
            "data": data,
            "destination": self.destination,
            "date_time": self.date_time,
            "apikey": self.apikey,
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(sender) = self.sender {
                map.insert("sender".into(), Value::String(sender.to_owned()));
            }
            if let Some(server_url) = self.server_url {
                map.insert("server_url".into(), Value::String(server_url.to_owned()));
            }
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_signs_and_verifies() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let token = sign_jwt("s3cret", now);
        let (name, claims) = verify_jwt(&format!("Bearer {token}"), [("wrong", "nope"), ("right", "s3cret")]).unwrap();
        assert_eq!(name, "right");
        assert_eq!(claims, json!({"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"}));
        assert!(verify_jwt(&format!("Bearer {token}"), [("wrong", "nope")]).is_none());
        // Expired (signed 12 minutes ago: past the leeway), issued in the future, or another
        // algorithm: refused.
        assert!(verify_jwt(&format!("Bearer {}", sign_jwt("s3cret", now - 720)), [("right", "s3cret")]).is_none());
        assert!(verify_jwt(&format!("Bearer {}", sign_jwt("s3cret", now + 300)), [("right", "s3cret")]).is_none());
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
        let claims = json!({"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"});
        let hs512 = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(b"s3cret")).unwrap();
        assert!(verify_jwt(&format!("Bearer {hs512}"), [("right", "s3cret")]).is_none());
        let unsigned =
            format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), token.split('.').nth(1).unwrap());
        assert!(verify_jwt(&format!("Bearer {unsigned}"), [("right", "s3cret")]).is_none());
    }

    #[test]
    fn headers_pass_through_and_jwt_key_becomes_authorization() {
        let headers = outgoing_headers(&json!({"jwt_key": "k", "x-custom": "abc", "n": 5}), 1).unwrap();
        assert!(headers.contains(&("x-custom".to_owned(), "abc".to_owned())));
        assert!(headers.contains(&("n".to_owned(), "5".to_owned())));
        assert!(headers.iter().all(|(k, _)| k != "jwt_key"));
        let (_, authorization) = headers.iter().find(|(k, _)| k == "Authorization").unwrap();
        assert!(verify_jwt(authorization, [("k", "k")]).is_none(), "signed at t=1: long expired");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let headers = outgoing_headers(&json!({"jwt_key": "k"}), now).unwrap();
        let (_, authorization) = headers.iter().find(|(k, _)| k == "Authorization").unwrap();
        assert!(verify_jwt(authorization, [("k", "k")]).is_some());
        assert_eq!(outgoing_headers(&Value::Null, 1).unwrap(), vec![]);
        assert_eq!(outgoing_headers(&json!({"jwt_key": ""}), 1).unwrap_err().0, "secretOrPrivateKey must have a value");
        assert_eq!(
            outgoing_headers(&json!({"jwt_key": 12}), 1).unwrap_err().0,
            "secretOrPrivateKey is not valid key material"
        );
    }

    #[test]
    fn urls_split_as_axios_reads_them() {
        assert_eq!(
            split_url("http://127.0.0.1:18999/hook/x"),
            Some((false, "127.0.0.1".into(), 18999, "/hook/x".into()))
        );
        assert_eq!(
            split_url("https://hooks.example/evolution"),
            Some((true, "hooks.example".into(), 443, "/evolution".into()))
        );
        assert_eq!(split_url("http://h?x=1"), Some((false, "h".into(), 80, "/?x=1".into())));
        assert_eq!(split_url("not-a-url"), None);
    }
}
