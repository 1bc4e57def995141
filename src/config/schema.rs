//! The serde types that mirror `evoctl.toml` one to one, with the value rules each one enforces.
//!
//! Rules live in `TryFrom` conversions so that the TOML parser reports a broken value at its
//! exact position; the messages say what is allowed.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub aws: AwsSection,
    #[serde(default)]
    pub service: ServiceDefaults,
    #[serde(default)]
    pub env: IndexMap<EnvName, EnvSection>,
}

/// `[aws]`: optional region and profile; the normal AWS chain applies otherwise.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// The config file the section was read from (messages name its keys with it).
    #[serde(skip)]
    pub file: std::path::PathBuf,
}

/// `[service]`: defaults shared by every environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDefaults {
    #[serde(default = "default_service_name")]
    pub name: String,
    #[serde(default = "default_service_name")]
    pub container: String,
}

impl Default for ServiceDefaults {
    fn default() -> Self {
        ServiceDefaults { name: default_service_name(), container: default_service_name() }
    }
}

fn default_service_name() -> String {
    "EvolutionService".into()
}

/// `[env.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    pub cluster: String,
    pub service: Option<String>,
    pub container: Option<String>,
    pub instance: Option<String>,
    pub scaling: Option<Scaling>,
    #[serde(default)]
    pub protected: bool,
    /// A label for the WhatsApp number the environment uses; environments with the same label
    /// (all of them when unset) must never be live together.
    pub number: Option<String>,
    pub webhook: Option<WebhookConfig>,
    pub app: Option<AppConfig>,
    /// Where this environment is read: its own profile, region and role (each optional).
    #[serde(default)]
    pub aws: EnvAws,
}

/// `env.NAME.aws = { profile, region, role_arn, external_id, session_name }`: the credentials
/// and region one environment is read with. Unset keys fall back to `[aws]`, then the AWS
/// chain; the `--profile`/`--region` flags win over both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvAws {
    pub profile: Option<String>,
    pub region: Option<String>,
    /// A role to assume (STS AssumeRole) on top of the profile's credentials.
    pub role_arn: Option<RoleArn>,
    /// The ExternalId the role's trust policy requires.
    pub external_id: Option<String>,
    /// The assumed role's session name (default `evoctl`), as CloudTrail shows it.
    pub session_name: Option<SessionName>,
}

/// An IAM role ARN, `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct RoleArn(pub String);

impl RoleArn {
    /// The 12-digit account the role belongs to.
    pub fn account(&self) -> &str {
        self.0.split(':').nth(4).unwrap_or_default()
    }
}

impl TryFrom<String> for RoleArn {
    type Error = String;
    fn try_from(arn: String) -> Result<Self, String> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "iam"
            && parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5].strip_prefix("role/").is_some_and(|name| !name.is_empty());
        if ok {
            Ok(RoleArn(arn))
        } else {
            Err(format!("role_arn `{arn}` is not an IAM role ARN: write it as arn:aws:iam::123456789012:role/NAME"))
        }
    }
}

/// An STS role session name: 2 to 64 of letters, digits and `+=,.@-_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct SessionName(pub String);

impl TryFrom<String> for SessionName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let ok =
            (2..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c));
        if ok {
            Ok(SessionName(name))
        } else {
            Err(format!("session_name `{name}` is not an STS session name: use 2-64 ASCII letters, digits or +=,.@-_"))
        }
    }
}

/// Keys that evoctl.toml once had, each with why it went away. `deny_unknown_fields` rejects
/// them like any unknown key; the config error then gives this reason instead of the generic
/// "remove or rename" hint, and the fix is to delete the line.
pub const REMOVED_KEYS: &[(&str, &str)] = &[(
    "server_port",
    "evoctl calls Evolution on the container's own SERVER_PORT (read inside the task), so the file cannot set it",
)];

/// An environment name: letters, digits, `-` and `_`, 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct EnvName(String);

impl EnvName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EnvName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(EnvName(name))
        } else {
            Err(format!(
                "environment name `{}` is not allowed: use 1-64 ASCII letters, digits, `-` or `_`",
                name.chars().take(80).collect::<String>()
            ))
        }
    }
}

/// The scalable target range an environment must have (`scaling = { min = 1, max = 1 }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "RawScaling")]
pub struct Scaling {
    pub min: u32,
    pub max: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScaling {
    min: u32,
    max: u32,
}

impl TryFrom<RawScaling> for Scaling {
    type Error = String;
    fn try_from(raw: RawScaling) -> Result<Self, String> {
        if raw.min > raw.max {
            return Err(format!("scaling min ({}) is greater than max ({}): make min <= max", raw.min, raw.max));
        }
        Ok(Scaling { min: raw.min, max: raw.max })
    }
}

impl fmt::Display for Scaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.min, self.max)
    }
}

/// `[env.NAME.webhook]`: what the instance's webhook must be.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: WebhookUrl,
    pub events: Vec<WebhookEvent>,
    #[serde(default)]
    pub by_events: bool,
    #[serde(default)]
    pub base64: bool,
    pub jwt_secret: Option<SecretRef>,
}

/// A webhook URL; Evolution silently skips anything that is not http(s), so it is refused here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WebhookUrl(pub String);

impl TryFrom<String> for WebhookUrl {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !url.chars().any(char::is_whitespace) => Ok(WebhookUrl(url)),
            _ => Err(format!(
                "webhook url `{url}` must start with http:// or https:// and name a host (Evolution 2.3.7 silently skips other URLs)"
            )),
        }
    }
}

/// The webhook events Evolution API 2.3.7 accepts (`event.controller.ts:138-170`).
pub const WEBHOOK_EVENTS: &[&str] = &[
    "APPLICATION_STARTUP",
    "QRCODE_UPDATED",
    "MESSAGES_SET",
    "MESSAGES_UPSERT",
    "MESSAGES_EDITED",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "SEND_MESSAGE",
    "SEND_MESSAGE_UPDATE",
    "CONTACTS_SET",
    "CONTACTS_UPSERT",
    "CONTACTS_UPDATE",
    "PRESENCE_UPDATE",
    "CHATS_SET",
    "CHATS_UPSERT",
    "CHATS_UPDATE",
    "CHATS_DELETE",
    "GROUPS_UPSERT",
    "GROUP_UPDATE",
    "GROUP_PARTICIPANTS_UPDATE",
    "CONNECTION_UPDATE",
    "LABELS_EDIT",
    "LABELS_ASSOCIATION",
    "CALL",
    "TYPEBOT_START",
    "TYPEBOT_CHANGE_STATUS",
    "REMOVE_INSTANCE",
    "LOGOUT_INSTANCE",
    "INSTANCE_CREATE",
    "INSTANCE_DELETE",
    "STATUS_INSTANCE",
];

/// One webhook event name from [`WEBHOOK_EVENTS`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub struct WebhookEvent(pub String);

impl TryFrom<String> for WebhookEvent {
    type Error = String;
    fn try_from(event: String) -> Result<Self, String> {
        if WEBHOOK_EVENTS.contains(&event.as_str()) {
            Ok(WebhookEvent(event))
        } else {
            Err(format!("`{event}` is not a 2.3.7 webhook event; allowed: {}", WEBHOOK_EVENTS.join(", ")))
        }
    }
}

/// Where a secret comes from: an SSM parameter (decrypted) or a local environment variable.
/// Only the reference is ever stored or printed, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum SecretRef {
    Ssm(String),
    Env(String),
}

impl TryFrom<String> for SecretRef {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("ssm:").filter(|p| p.starts_with('/') && p.len() > 1) {
            return Ok(SecretRef::Ssm(path.to_owned()));
        }
        let is_var = |v: &&str| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if let Some(var) = text.strip_prefix("env:").filter(is_var) {
            return Ok(SecretRef::Env(var.to_owned()));
        }
        // Never echo the value: a user may have pasted the secret itself here.
        Err(format!(
            "jwt_secret must be a reference, ssm:/path or env:VAR (got a {}-character value); never put the secret itself in the file",
            text.chars().count()
        ))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Ssm(path) => write!(f, "ssm:{path}"),
            SecretRef::Env(var) => write!(f, "env:{var}"),
        }
    }
}

/// `[env.NAME.app]`: the application side of isolation (a Lambda and the env it must have).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub lambda: String,
    #[serde(default)]
    pub expect: IndexMap<String, String>,
}
