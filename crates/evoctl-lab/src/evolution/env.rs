//! The settings one Evolution 2.3.7 process runs with, read as its `env.config.ts` reads them:
//! a variable the task does not set takes the image's baked `.env` (a copy of `.env.example`,
//! which dotenv loads without overriding what is set, even to ""), and then the code applies its
//! own `x || default`, so a variable set to "" gets the *code* default. Booleans are `=== 'true'`
//! (case-sensitive), numbers `parseInt(x) || default`, `DEL_INSTANCE` is
//! `isBooleanString(v) ? v === 'true' : parseInt(v) || false`. Also a reader for the
//! `KEY=VALUE` files the standalone stand-in takes (`--env-file`).

use super::js;
use indexmap::IndexMap;

/// The image's `/evolution/.env` (`.env.example` at 2.3.7), the keys the stand-in reads, plus
/// the Dockerfile's `ENV TZ` and `DOCKER_ENV`.
pub const IMAGE_DOTENV: &[(&str, &str)] = &[
    ("SERVER_NAME", "evolution"),
    ("SERVER_TYPE", "http"),
    ("SERVER_PORT", "8080"),
    ("SERVER_URL", "http://localhost:8080"),
    ("TELEMETRY_ENABLED", "true"),
    ("PROMETHEUS_METRICS", "false"),
    ("METRICS_AUTH_REQUIRED", "true"),
    ("METRICS_USER", "prometheus"),
    ("METRICS_PASSWORD", "secure_random_password_here"),
    ("METRICS_ALLOWED_IPS", "127.0.0.1,10.0.0.100,192.168.1.50"),
    ("LOG_LEVEL", "ERROR,WARN,DEBUG,INFO,LOG,VERBOSE,DARK,WEBHOOKS,WEBSOCKET"),
    ("LOG_COLOR", "true"),
    ("LOG_BAILEYS", "error"),
    ("DEL_INSTANCE", "false"),
    ("DATABASE_PROVIDER", "postgresql"),
    ("DATABASE_CONNECTION_URI", "postgresql://user:pass@postgres:5432/evolution_db?schema=evolution_api"),
    ("DATABASE_CONNECTION_CLIENT_NAME", "evolution_exchange"),
    ("DATABASE_SAVE_DATA_INSTANCE", "true"),
    ("WEBHOOK_GLOBAL_ENABLED", "false"),
    ("WEBHOOK_GLOBAL_URL", ""),
    ("WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS", "false"),
    ("WEBHOOK_REQUEST_TIMEOUT_MS", "60000"),
    ("WEBHOOK_RETRY_MAX_ATTEMPTS", "10"),
    ("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", "5"),
    ("WEBHOOK_RETRY_USE_EXPONENTIAL_BACKOFF", "true"),
    ("WEBHOOK_RETRY_MAX_DELAY_SECONDS", "300"),
    ("WEBHOOK_RETRY_JITTER_FACTOR", "0.2"),
    ("WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES", "400,401,403,404,422"),
    ("CONFIG_SESSION_PHONE_CLIENT", "Evolution API"),
    ("CONFIG_SESSION_PHONE_NAME", "Chrome"),
    ("QRCODE_LIMIT", "30"),
    ("QRCODE_COLOR", "#175197"),
    ("CACHE_REDIS_ENABLED", "true"),
    ("CACHE_REDIS_URI", "redis://localhost:6379/6"),
    ("CACHE_REDIS_TTL", "604800"),
    ("CACHE_REDIS_PREFIX_KEY", "evolution"),
    ("CACHE_REDIS_SAVE_INSTANCES", "false"),
    ("CACHE_LOCAL_ENABLED", "false"),
    ("AUTHENTICATION_API_KEY", "429683C4C977415CAAFCCE10F7D57E11"),
    ("AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES", "true"),
    ("LANGUAGE", "en"),
    ("WA_BUSINESS_TOKEN_WEBHOOK", "evolution"),
    ("CHATWOOT_ENABLED", "false"),
    ("TZ", "America/Sao_Paulo"),
    ("DOCKER_ENV", "true"),
];

/// The baked `.env` as a file (what the stand-in container's work dir holds).
pub fn image_dotenv_text() -> String {
    IMAGE_DOTENV
        .iter()
        .filter(|(key, _)| !matches!(*key, "TZ" | "DOCKER_ENV"))
        .map(|(key, value)| {
            if value.contains(['#', ' ', ',']) || value.contains("://") {
                format!("{key}='{value}'\n")
            } else {
                format!("{key}={value}\n")
            }
        })
        .collect()
}

/// Effective settings of one Evolution process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvoConfig {
    pub server_port: u16,
    /// `SERVER_URL` (undefined when neither the task nor `.env` set it).
    pub server_url: Option<String>,
    pub disable_manager: bool,
    /// `PROMETHEUS_METRICS === 'true'`: `GET /metrics` is routed.
    pub metrics_enabled: bool,
    /// `METRICS_AUTH_REQUIRED === 'true'`: basic auth in front of `/metrics`.
    pub metrics_auth_required: bool,
    /// `METRICS_USER` / `METRICS_PASSWORD` as set (`""` is falsy: "not configured").
    pub metrics_user: Option<String>,
    pub metrics_password: Option<String>,
    pub api_key: String,
    pub expose_in_fetch_instances: bool,
    pub database_uri: String,
    pub client_name: String,
    pub save_data_instance: bool,
    /// `PROVIDER_ENABLED`: an external session provider holds the auth state.
    pub provider_enabled: bool,
    pub cache_redis_enabled: bool,
    pub cache_redis_uri: String,
    pub cache_redis_prefix_key: String,
    pub cache_redis_save_instances: bool,
    pub qrcode_limit: f64,
    /// `DEL_INSTANCE` when it is a number (minutes); `None` when it reads as a boolean or NaN.
    pub del_instance_minutes: Option<f64>,
    pub webhook_timeout_ms: f64,
    pub retry_max_attempts: f64,
    pub retry_initial_delay_s: f64,
    pub retry_exponential: bool,
    pub retry_max_delay_s: f64,
    pub retry_jitter_factor: f64,
    /// `Number()` of each comma-separated code (`None` = NaN, which matches nothing).
    pub retry_non_retryable: Vec<Option<f64>>,
    pub phone_client: String,
    pub phone_name: String,
    pub log_levels: Vec<String>,
    /// pino's number for `LOG_BAILEYS` (`|| 'error'`, `env.config.ts:738`): lines of the
    /// Baileys logger below it are not written (`silent`: none).
    pub log_baileys_level: u8,
    pub log_color: bool,
    pub wa_business_token: String,
    pub chatwoot_enabled: bool,
    /// Minutes east of UTC of `TZ` (webhook `date_time` and log dates are local wall clock).
    pub tz_offset_minutes: i64,
}

impl EvoConfig {
    /// Read the settings from a process environment (what the task definition sets).
    pub fn from_env(task: &IndexMap<String, String>) -> EvoConfig {
        // dotenv: a variable that is set stays as it is, whatever its value.
        let raw = |key: &str| -> Option<String> {
            task.get(key)
                .cloned()
                .or_else(|| IMAGE_DOTENV.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned()))
        };
        // `process.env.X || default`.
        let or = |key: &str, default: &str| raw(key).filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned());
        let truth = |key: &str| raw(key).as_deref() == Some("true");
        let int_or =
            |key: &str, default: f64| raw(key).and_then(|v| js::parse_int(&v)).filter(|n| *n != 0.0).unwrap_or(default);
        let del_instance = raw("DEL_INSTANCE");
        let del_instance_minutes = match del_instance.as_deref() {
            Some("true" | "false" | "1" | "0") => None,
            Some(other) => js::parse_int(other).filter(|n| *n != 0.0),
            None => None,
        };
        let non_retryable = match raw("WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES") {
            Some(list) => list.split(',').map(js::number).collect(),
            None => [400.0, 401.0, 403.0, 404.0, 422.0].into_iter().map(Some).collect(),
        };
        EvoConfig {
            server_port: raw("SERVER_PORT")
                .and_then(|v| js::parse_int(&v))
                .filter(|n| *n > 0.0 && *n < 65536.0)
                .map(|n| n as u16)
                .unwrap_or(8080),
            server_url: raw("SERVER_URL"),
            disable_manager: truth("SERVER_DISABLE_MANAGER"),
            metrics_enabled: truth("PROMETHEUS_METRICS"),
            metrics_auth_required: truth("METRICS_AUTH_REQUIRED"),
            metrics_user: raw("METRICS_USER"),
            metrics_password: raw("METRICS_PASSWORD"),
            api_key: or("AUTHENTICATION_API_KEY", "BQYHJGJHJ"),
            expose_in_fetch_instances: truth("AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES"),
            database_uri: or("DATABASE_CONNECTION_URI", ""),
            client_name: or("DATABASE_CONNECTION_CLIENT_NAME", "evolution"),
            save_data_instance: truth("DATABASE_SAVE_DATA_INSTANCE"),
            provider_enabled: truth("PROVIDER_ENABLED"),
            cache_redis_enabled: truth("CACHE_REDIS_ENABLED"),
            cache_redis_uri: or("CACHE_REDIS_URI", ""),
            cache_redis_prefix_key: or("CACHE_REDIS_PREFIX_KEY", "evolution-cache"),
            cache_redis_save_instances: truth("CACHE_REDIS_SAVE_INSTANCES"),
            qrcode_limit: int_or("QRCODE_LIMIT", 30.0),
            del_instance_minutes,
            webhook_timeout_ms: int_or("WEBHOOK_REQUEST_TIMEOUT_MS", 30_000.0),
            retry_max_attempts: int_or("WEBHOOK_RETRY_MAX_ATTEMPTS", 10.0),
            retry_initial_delay_s: int_or("WEBHOOK_RETRY_INITIAL_DELAY_SECONDS", 5.0),
            retry_exponential: raw("WEBHOOK_RETRY_USE_EXPONENTIAL_BACKOFF").as_deref() != Some("false"),
            retry_max_delay_s: int_or("WEBHOOK_RETRY_MAX_DELAY_SECONDS", 300.0),
            retry_jitter_factor: raw("WEBHOOK_RETRY_JITTER_FACTOR")
                .and_then(|v| js::parse_float(&v))
                .filter(|n| *n != 0.0)
                .unwrap_or(0.2),
            retry_non_retryable: non_retryable,
            phone_client: or("CONFIG_SESSION_PHONE_CLIENT", "Evolution API"),
            phone_name: or("CONFIG_SESSION_PHONE_NAME", "Chrome"),
            log_levels: raw("LOG_LEVEL").map_or_else(
                || {
                    ["ERROR", "WARN", "DEBUG", "INFO", "LOG", "VERBOSE", "DARK", "WEBHOOKS", "WEBSOCKET"]
                        .map(str::to_owned)
                        .to_vec()
                },
                |v| v.split(',').map(str::to_owned).collect(),
            ),
            log_baileys_level: pino_level(&or("LOG_BAILEYS", "error")),
            log_color: truth("LOG_COLOR"),
            wa_business_token: or("WA_BUSINESS_TOKEN_WEBHOOK", "evolution"),
            chatwoot_enabled: truth("CHATWOOT_ENABLED"),
            tz_offset_minutes: tz_offset(raw("TZ").as_deref().unwrap_or("")),
        }
    }

    /// Whether a status code stops the retries at once.
    pub fn non_retryable(&self, status: u16) -> bool {
        self.retry_non_retryable.iter().any(|code| *code == Some(f64::from(status)))
    }
}

/// pino's level numbers (`pino@9 lib/constants.js`); a name pino does not know throws when the
/// socket is made, which the lab does not play: it reads as `error`.
fn pino_level(name: &str) -> u8 {
    match name {
        "trace" => 10,
        "debug" => 20,
        "info" => 30,
        "warn" => 40,
        "fatal" => 60,
        "silent" => u8::MAX,
        _ => 50,
    }
}

/// The UTC offset of the time zones a deployment is likely to name (Brazil has had no daylight
/// saving time since 2019); anything else reads as UTC.
fn tz_offset(tz: &str) -> i64 {
    match tz {
        "America/Sao_Paulo" | "America/Fortaleza" | "America/Recife" | "America/Bahia" | "America/Belem"
        | "America/Maceio" | "America/Araguaina" | "Brazil/East" => -180,
        "America/Manaus"
        | "America/Cuiaba"
        | "America/Campo_Grande"
        | "America/Porto_Velho"
        | "America/Boa_Vista"
        | "Brazil/West" => -240,
        "America/Rio_Branco" | "America/Eirunepe" | "Brazil/Acre" => -300,
        "America/Noronha" | "Brazil/DeNoronha" => -120,
        _ => 0,
    }
}

/// Read a `KEY=VALUE` file as an environment: `#` comments and blank lines skipped, an optional
/// `export ` prefix, values optionally quoted (`'…'`, `"…"` with `\n` escapes, or `` `…` ``),
/// an unquoted value ends at ` #`. Lines without `=` are errors that name the line.
pub fn read_env_file(text: &str) -> Result<IndexMap<String, String>, String> {
    let mut env = IndexMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected KEY=VALUE, found `{line}`", number + 1));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
            return Err(format!("line {}: `{key}` is not a variable name", number + 1));
        }
        let value = value.trim();
        let unquoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
        let value = if unquoted('"') {
            value[1..value.len() - 1].replace("\\n", "\n").replace("\\r", "\r")
        } else if unquoted('\'') || unquoted('`') {
            value[1..value.len() - 1].to_owned()
        } else {
            value.split(" #").next().unwrap_or("").trim().to_owned()
        };
        env.insert(key.to_owned(), value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn unset_takes_the_image_env_and_empty_the_code_default() {
        let image = EvoConfig::from_env(&env(&[]));
        assert_eq!(image.api_key, "429683C4C977415CAAFCCE10F7D57E11");
        assert_eq!(image.client_name, "evolution_exchange");
        assert_eq!(image.cache_redis_prefix_key, "evolution");
        assert!(image.cache_redis_enabled && image.expose_in_fetch_instances && image.save_data_instance);
        assert_eq!(image.webhook_timeout_ms, 60_000.0);
        assert_eq!(image.server_url.as_deref(), Some("http://localhost:8080"));
        assert_eq!(image.tz_offset_minutes, -180);
        let empty = EvoConfig::from_env(&env(&[
            ("AUTHENTICATION_API_KEY", ""),
            ("DATABASE_CONNECTION_CLIENT_NAME", ""),
            ("CACHE_REDIS_PREFIX_KEY", ""),
            ("CACHE_REDIS_ENABLED", ""),
            ("WEBHOOK_REQUEST_TIMEOUT_MS", ""),
        ]));
        assert_eq!(empty.api_key, "BQYHJGJHJ");
        assert_eq!(empty.client_name, "evolution");
        assert_eq!(empty.cache_redis_prefix_key, "evolution-cache");
        assert!(!empty.cache_redis_enabled);
        assert_eq!(empty.webhook_timeout_ms, 30_000.0);
    }

    #[test]
    fn booleans_numbers_and_del_instance_parse_as_node() {
        let upper = EvoConfig::from_env(&env(&[("CACHE_REDIS_ENABLED", "TRUE"), ("QRCODE_LIMIT", "0")]));
        assert!(!upper.cache_redis_enabled, "=== 'true' is case-sensitive");
        assert_eq!(upper.qrcode_limit, 30.0, "parseInt('0') || 30");
        for (value, minutes) in [
            ("5", Some(5.0)),
            ("5m", Some(5.0)),
            ("10min", Some(10.0)),
            ("1", None),
            ("0", None),
            ("true", None),
            ("abc", None),
            ("false", None),
        ] {
            assert_eq!(EvoConfig::from_env(&env(&[("DEL_INSTANCE", value)])).del_instance_minutes, minutes, "{value}");
        }
        let codes = EvoConfig::from_env(&env(&[("WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES", "401, 503,x")]));
        assert!(codes.non_retryable(401) && codes.non_retryable(503) && !codes.non_retryable(404));
        let jitter = EvoConfig::from_env(&env(&[("WEBHOOK_RETRY_JITTER_FACTOR", "0")]));
        assert_eq!(jitter.retry_jitter_factor, 0.2);
        let backoff = EvoConfig::from_env(&env(&[("WEBHOOK_RETRY_USE_EXPONENTIAL_BACKOFF", "FALSE")]));
        assert!(backoff.retry_exponential, "only 'false' turns it off");
    }

    #[test]
    fn env_files_read_like_dotenv() {
        let text = "# comment\nexport A=1\nB='two words'\nC=\"x\\ny\"\nD=plain # note\nE=\n";
        let env = read_env_file(text).unwrap();
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "two words");
        assert_eq!(env["C"], "x\ny");
        assert_eq!(env["D"], "plain");
        assert_eq!(env["E"], "");
        assert!(read_env_file("oops").unwrap_err().starts_with("line 1:"));
    }
}
