//! The two probes run from inside the task, the network Evolution itself uses: can it reach
//! WhatsApp's web endpoint (DNS, TCP, TLS), and does the instance's webhook receiver accept a
//! delivery signed the way 2.3.7 signs it. Both are modes of the request program
//! ([`super::program`]); this module gives their answers a type and says what each means, with the
//! fix, once for `doctor`, `connect` and `webhook test`.

use super::Driver;
use crate::config::SecretRef;
use crate::env_vars::EnvVars;
use crate::error::{Error, Result};
use crate::output::sanitize::quote_line;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// WhatsApp's web endpoint, where Baileys opens its websocket.
pub const WHATSAPP_ENDPOINT: &str = "web.whatsapp.com:443";
/// How long the reach probe may take in all.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// The endpoint the reach probe tries: [`WHATSAPP_ENDPOINT`], or `EVOCTL_WHATSAPP_ENDPOINT`.
pub fn whatsapp_endpoint() -> Result<(String, u16)> {
    let text = std::env::var(EnvVars::EVOCTL_WHATSAPP_ENDPOINT).unwrap_or_else(|_| WHATSAPP_ENDPOINT.to_owned());
    let bad = || {
        Error::usage(
            format!("{}={text:?} is not HOST:PORT", EnvVars::EVOCTL_WHATSAPP_ENDPOINT),
            format!("set it like {WHATSAPP_ENDPOINT}, or unset it"),
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// The reach probe's settings as the request program takes them.
pub fn reach_request(timeout: Duration) -> Result<serde_json::Value> {
    let (host, port) = whatsapp_endpoint()?;
    Ok(json!({"host": host, "port": port, "timeout_ms": timeout.as_millis() as u64}))
}

/// What the reach probe found.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Reach {
    pub ok: bool,
    pub host: String,
    pub port: u16,
    /// The last stage reached: `dns`, `connect` or `tls`.
    pub stage: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    pub ms: u64,
    /// The call that had not answered when the route check beside it ran (`POST
    /// /instance/create`), and how long it had waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
}

/// How long a call may wait before the route to WhatsApp is checked beside it: longer than any
/// answer of a working 2.3.7 (create with `qrcode` waits 5 s for its first QR), short enough
/// that a black hole is said within 15 s of starting to wait (this, then [`REACH_TIMEOUT`]).
pub const ROUTE_CHECK_AFTER: Duration = Duration::from_secs(6);

/// The route check beside every call of a program (`stream`: its answers are JSON lines).
pub fn route_request(stream: bool) -> Result<serde_json::Value> {
    let mut route = reach_request(REACH_TIMEOUT)?;
    route["after_ms"] = json!(ROUTE_CHECK_AFTER.as_millis() as u64);
    route["stream"] = json!(stream);
    Ok(route)
}

impl Reach {
    /// A call that waits on WhatsApp while the task cannot reach it: the error, with the
    /// route's cause and fix (`None` when WhatsApp was reached or no call was waiting).
    pub fn waiting_error(&self, env: &str) -> Option<Error> {
        let waiting_on = self.waiting_on.as_deref()?;
        let (problem, fix) = self.problem()?;
        Some(Error::Unavailable {
            message: format!(
                "Evolution has not answered {waiting_on} in {} s (it waits on WhatsApp before it answers): {problem}",
                (self.waited_ms.unwrap_or(0) + 500) / 1000
            ),
            fix: format!("{fix}; then `evoctl doctor {env}` checks the route again (whatsapp-reach)"),
        })
    }

    /// What the failure means, and the fix; `None` when WhatsApp was reached.
    pub fn problem(&self) -> Option<(String, String)> {
        if self.ok {
            return None;
        }
        let at = format!("{}:{}", self.host, self.port);
        let code = self.code.as_deref().unwrap_or("?");
        let route_fix = "give the service's subnets a route to the internet (a NAT gateway for private subnets, or a public subnet with assignPublicIp ENABLED) and allow outbound TCP 443 in the task's security group and network ACL".to_owned();
        Some(match (self.stage.as_str(), code) {
            ("dns", _) => (
                format!("the task cannot resolve {} ({code}): Baileys cannot find WhatsApp, so no QR ever comes", self.host),
                "check the VPC's DNS resolution (enableDnsSupport) and any DNS firewall or custom resolver in the task's VPC".into(),
            ),
            ("connect", "TIMEOUT" | "ETIMEDOUT") => (
                format!(
                    "no route from the task to WhatsApp: the TCP connection to {at} got no answer within {} s (a private subnet without a NAT gateway, or egress blocked by a security group or NACL); Baileys cannot connect, so no QR ever comes",
                    (self.ms + 500) / 1000
                ),
                route_fix,
            ),
            ("connect", _) => (
                format!("the task's connection to {at} was refused or reset ({code}): something on the way blocks WhatsApp"),
                route_fix,
            ),
            (_, "TIMEOUT") => (
                format!("the TLS handshake with {at} got no answer within {} s: a firewall or proxy holds the connection", (self.ms + 500) / 1000),
                "allow the task direct TLS to web.whatsapp.com:443 (no TLS inspection)".into(),
            ),
            _ => (
                format!(
                    "TLS with {at} failed ({code}{}): a TLS-inspecting proxy or firewall is in the way, and Baileys refuses its certificate",
                    self.message.as_deref().map(|m| format!(": {}", quote_line(m, 300))).unwrap_or_default()
                ),
                "exempt web.whatsapp.com from TLS inspection for the task's subnets".into(),
            ),
        })
    }
}

/// A webhook probe's answer, as the request program reports it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct WebhookProbe {
    /// `answered`, `failed`, `no_webhook`, `jwt_unusable`, `bad_url`.
    pub e: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub by_events: bool,
    /// Whether the row has a `jwt_key` (so the probe carried a JWT).
    #[serde(default)]
    pub jwt: bool,
    /// Whether the row's `jwt_key` is the secret evoctl.toml names (None: not compared).
    #[serde(default)]
    pub matches_config: Option<bool>,
    /// The URL posted to (with the byEvents suffix).
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub http_status: Option<u16>,
    #[serde(default)]
    pub ms: Option<u64>,
    #[serde(default)]
    pub location: Option<String>,
    /// The receiver's body, with the token and keys cut out, then cut to 300 characters.
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The event name the probe carries: no receiver acts on it (its byEvents suffix is
/// `evoctl-probe`).
pub const PROBE_EVENT: &str = "evoctl.probe";
const PROBE_SUFFIX: &str = "evoctl-probe";

/// A probe's verdict: passed, or what is wrong and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered { status: u16, ms: u64 },
    Broken { problem: String, fix: String },
}

impl WebhookProbe {
    /// What the probe's answer means. `env`, `instance` (when it is not the environment's own)
    /// and `secret` (the config's jwt_secret) go into the fix.
    pub fn verdict(&self, env: &str, instance: Option<&str>, secret: Option<&SecretRef>) -> Verdict {
        let set = format!("`evoctl webhook set {}`", super::subject(env, instance));
        let secret_text = secret.map(|s| s.to_string()).unwrap_or_else(|| "the secret in evoctl.toml".into());
        let broken = |problem: String, fix: String| Verdict::Broken { problem, fix };
        let target = self.target.clone().or_else(|| self.url.clone()).unwrap_or_default();
        match self.e.as_str() {
            "no_webhook" => broken("the instance has no webhook".into(), format!("{set} writes the one evoctl.toml describes")),
            "jwt_unusable" => broken(
                "the instance's jwt_key is empty or not a string: 2.3.7 cannot sign, so it sends none of this instance's webhooks (its log says JWT generation failed)".into(),
                set,
            ),
            "bad_url" => broken(
                format!("the webhook URL {:?} is not http(s)://: Evolution never calls it", self.url.as_deref().unwrap_or("")),
                format!("fix url under [env.{env}.webhook], then {set}"),
            ),
            "answered" => {
                let status = self.http_status.unwrap_or(0);
                let ms = self.ms.unwrap_or(0);
                let said = self.body.as_deref().map(|b| quote_line(b, 300)).filter(|b| !b.is_empty()).map(|b| format!(" ({b})")).unwrap_or_default();
                match status {
                    200..=299 => Verdict::Delivered { status, ms },
                    401 | 403 if self.matches_config == Some(false) => broken(
                        format!("the receiver at {target} answered {status}{said}: it rejects the JWT, and this instance's jwt_key is not the secret evoctl.toml names ({secret_text})"),
                        format!("{set} puts {secret_text} in the instance's jwt_key; then make sure the receiver verifies with that same secret"),
                    ),
                    401 | 403 if !self.jwt => broken(
                        format!("the receiver at {target} answered {status}{said}: it wants a JWT and the instance sends none (no jwt_key)"),
                        format!("set jwt_secret under [env.{env}.webhook] to the secret the receiver verifies with, then {set}"),
                    ),
                    401 | 403 => broken(
                        format!("the receiver at {target} answered {status}{said}: the receiver rejects the JWT: its secret differs from this instance's jwt_key"),
                        rejected_jwt_fix(env, instance, secret),
                    ),
                    404 => broken(
                        format!("the receiver at {target} answered 404{said}: Evolution's deliveries to this URL get 404 and are not retried{}", if self.by_events { " (with byEvents every event goes to URL/<event>, so the receiver must route every such path)" } else { "" }),
                        format!("check url (and by_events) under [env.{env}.webhook], then {set}"),
                    ),
                    300..=399 => broken(
                        format!("the receiver at {target} answered {status}, a redirect to {}: Evolution's axios follows it, a 301/302 as a GET without the body", self.location.as_deref().map(|l| quote_line(l, 300)).unwrap_or_else(|| "?".into())),
                        format!("set url under [env.{env}.webhook] to the final URL, then {set}"),
                    ),
                    400 | 422 => broken(
                        format!("the receiver at {target} answered {status}{said}: it refuses Evolution's payload, and 2.3.7 does not retry a {status}"),
                        "check the receiver's payload validation against Evolution 2.3.7's webhook shape (event, instance, data, destination, date_time, sender, server_url, apikey)".into(),
                    ),
                    _ => broken(
                        format!("the receiver at {target} answered {status}{said}: Evolution retries such answers for about 20 minutes, then drops the event"),
                        "look at the receiver's own logs and health (it fails on its side)".into(),
                    ),
                }
            }
            _ => {
                let code = self.code.as_deref().unwrap_or("ERROR");
                let message = quote_line(self.message.as_deref().unwrap_or(""), 300);
                let host = host_of(&target);
                let (problem, fix) = match code {
                    "ENOTFOUND" | "EAI_AGAIN" => (
                        format!("{host} does not resolve from the task ({code})"),
                        "check the webhook URL's host name, and the VPC's DNS for it (a private hosted zone the task's VPC is not associated with?)".to_owned(),
                    ),
                    "PROBE_TIMEOUT" | "ETIMEDOUT" => (
                        format!("no answer from {target} within {} s ({code}): Evolution's deliveries time out and are retried, then dropped", (self.ms.unwrap_or(0) + 500) / 1000),
                        "check that the receiver is up and that the task may reach it (security groups, NAT, the receiver's own firewall)".to_owned(),
                    ),
                    "ECONNREFUSED" | "ECONNRESET" | "EHOSTUNREACH" | "ENETUNREACH" => (
                        format!("the connection to {target} failed ({code}: {message})"),
                        "check that the receiver listens on that address and port and that the task may reach it".to_owned(),
                    ),
                    tls if tls.contains("CERT") || tls.starts_with("ERR_TLS") || tls.starts_with("ERR_SSL") || tls.contains("SELF_SIGNED") || tls.starts_with("UNABLE_TO") => (
                        format!("TLS with {host} failed ({code}: {message}): Evolution's axios refuses the receiver's certificate"),
                        "give the receiver a certificate from a public CA for that host name (with its intermediates), or add the CA to the image (NODE_EXTRA_CA_CERTS)".to_owned(),
                    ),
                    _ => (
                        format!("the probe to {target} failed ({code}: {message})"),
                        "check the webhook URL and the receiver".to_owned(),
                    ),
                };
                broken(problem, fix)
            }
        }
    }
}

/// The fix for a receiver that rejects the JWT an instance signs with the configured secret.
pub fn rejected_jwt_fix(env: &str, instance: Option<&str>, secret: Option<&SecretRef>) -> String {
    let secret_text = secret.map(|s| s.to_string()).unwrap_or_else(|| "the secret in evoctl.toml".into());
    format!(
        "make the receiver verify with {secret_text} (the secret this instance signs with), or point jwt_secret under [env.{env}.webhook] at the parameter the receiver reads and run `evoctl webhook set {}`; both sides must read one SSM parameter",
        super::subject(env, instance)
    )
}

/// `https://host:port/path` → `host:port`.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or(rest).to_owned()
}

/// The secret evoctl.toml names for the webhook (None when none is named, it does not exist,
/// or it is blank), for the probe to compare with the row's `jwt_key` in the task.
pub async fn configured_secret(aws: &crate::aws::Aws, reference: Option<&SecretRef>) -> Result<Option<String>> {
    let Some(reference) = reference else { return Ok(None) };
    Ok(match crate::aws::secrets::fetch(aws, reference).await? {
        crate::aws::secrets::SecretValue::Value(value) if !value.is_empty() => Some(value),
        _ => None,
    })
}

impl Driver<'_> {
    /// Run the reach probe in the task.
    pub async fn whatsapp_reach(&self, timeout: Duration) -> Result<Reach> {
        let request =
            json!({"method": "GET", "path": "/", "body": null, "secret": null, "reach": reach_request(timeout)?});
        let parsed = self.run(super::program::Mode::Reach, &request, None).await?;
        read_reach(&parsed["reach"], &self.target.env)
    }

    /// Probe `name`'s webhook from the task; `expected` (the config's secret, over stdin) is
    /// compared with the row's `jwt_key` there.
    pub async fn webhook_probe(&self, name: &str, expected: Option<&str>, timeout: Duration) -> Result<WebhookProbe> {
        let request = json!({
            "method": "GET",
            "path": "/",
            "body": null,
            "secret": null,
            "guard": super::state_path(name),
            "probe": probe_request(name, expected.is_some(), timeout),
        });
        let parsed = self.run(super::program::Mode::Probe, &request, expected.map(|s| s.as_bytes().to_vec())).await?;
        read_probe(&parsed, name, self.acted(Some(name)))
    }
}

/// What the probe program (`webhookProbe`) takes: where the row is, what to send, how long to
/// wait, and whether the configured secret follows on stdin.
pub(super) fn probe_request(name: &str, with_expected: bool, timeout: Duration) -> serde_json::Value {
    json!({
        "find_path": super::api::webhook_path(name),
        "instance": name,
        "event": PROBE_EVENT,
        "suffix": PROBE_SUFFIX,
        "timeout_ms": timeout.as_millis() as u64,
        "with_expected": with_expected,
    })
}

/// The reach probe's answer.
pub(super) fn read_reach(reach: &serde_json::Value, env: &str) -> Result<Reach> {
    super::shape::read(reach).map_err(|e| odd_answer("the reach probe", &e, env))
}

/// The webhook probe's answer (`{status: 200, probe}`, the row's failed read, or `foreign`).
pub(super) fn read_probe(parsed: &serde_json::Value, name: &str, acted: super::Acted<'_>) -> Result<WebhookProbe> {
    if parsed["foreign"] == true {
        return Err(super::foreign(name));
    }
    if let Some(problem) = parsed["error"].as_str() {
        return Err(super::no_answer(problem, acted.env));
    }
    if parsed.get("probe").is_none() {
        let answer = super::answer(parsed["status"].as_u64().unwrap_or(0) as u16, &parsed["body"]);
        return Err(super::failure(&answer, "webhook find", acted)
            .unwrap_or_else(|| odd_answer("the webhook probe", &"no probe in the answer", acted.env)));
    }
    super::shape::read(&parsed["probe"]).map_err(|e| odd_answer("the webhook probe", &e, acted.env))
}

fn odd_answer(what: &str, error: &dyn std::fmt::Display, env: &str) -> Error {
    Error::exec(
        crate::error::ExecKind::Container,
        format!("{what} in the container gave an answer evoctl cannot read: {error}"),
        format!("check that the container has node 18 or later (`evoctl doctor {env}`)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, jwt: bool, matches: Option<bool>) -> WebhookProbe {
        WebhookProbe {
            e: "answered".into(),
            url: Some("https://app.example/hook".into()),
            enabled: true,
            by_events: true,
            jwt,
            matches_config: matches,
            target: Some("https://app.example/hook/evoctl-probe".into()),
            http_status: Some(status),
            ms: Some(12),
            location: None,
            body: Some("invalid signature".into()),
            code: None,
            message: None,
        }
    }

    #[test]
    fn a_401_names_the_jwt_and_which_side_to_fix() {
        let secret = SecretRef::try_from("ssm:/alinhou/production/evolution-webhook-secret".to_owned()).unwrap();
        let Verdict::Broken { problem, fix } =
            answered(401, true, Some(true)).verdict("production", None, Some(&secret))
        else {
            panic!()
        };
        assert_eq!(
            problem,
            "the receiver at https://app.example/hook/evoctl-probe answered 401 (invalid signature): the receiver rejects the JWT: its secret differs from this instance's jwt_key"
        );
        assert!(
            fix.starts_with("make the receiver verify with ssm:/alinhou/production/evolution-webhook-secret"),
            "{fix}"
        );
        let Verdict::Broken { fix, .. } = answered(403, true, Some(false)).verdict("production", None, Some(&secret))
        else {
            panic!()
        };
        assert!(fix.starts_with("`evoctl webhook set production` puts ssm:/alinhou/"), "{fix}");
        // A fix for a named instance acts on that instance, never on the environment's own.
        let Verdict::Broken { fix, .. } =
            answered(403, true, Some(false)).verdict("production", Some("named1"), Some(&secret))
        else {
            panic!()
        };
        assert!(fix.starts_with("`evoctl webhook set production named1` puts ssm:/alinhou/"), "{fix}");
        let Verdict::Broken { fix, .. } =
            answered(401, true, Some(true)).verdict("production", Some("named1"), Some(&secret))
        else {
            panic!()
        };
        assert!(fix.contains("and run `evoctl webhook set production named1`;"), "{fix}");
        assert_eq!(
            answered(204, true, Some(true)).verdict("p", None, None),
            Verdict::Delivered { status: 204, ms: 12 }
        );
    }

    #[test]
    fn a_reach_timeout_at_connect_is_a_missing_route() {
        let reach = Reach {
            ok: false,
            host: "web.whatsapp.com".into(),
            port: 443,
            stage: "connect".into(),
            code: Some("TIMEOUT".into()),
            message: None,
            ms: 5003,
            waiting_on: None,
            waited_ms: None,
        };
        let (problem, fix) = reach.problem().unwrap();
        assert!(problem.starts_with("no route from the task to WhatsApp: the TCP connection to web.whatsapp.com:443 got no answer within 5 s"), "{problem}");
        assert!(fix.contains("NAT gateway"), "{fix}");
    }
}
