//! Every environment variable evoctl reads, named once here (as uv's `EnvVars`), each with what
//! it does. The AWS ones are read through the SDK's own resolution (environment first, then the
//! profile's key) wherever the SDK has one; the `EVOCTL_*` ones are evoctl's own.

/// Environment variable names.
pub struct EnvVars;

impl EnvVars {
    /// The config file when `--config` is not given (then `./evoctl.toml`).
    pub const EVOCTL_CONFIG: &'static str = "EVOCTL_CONFIG";
    /// Set by a shell's completion function (`bash`, `zsh`, `fish`, `elvish`, `powershell`):
    /// evoctl prints the completion script (no other argument) or the candidates, and exits.
    pub const COMPLETE: &'static str = "COMPLETE";
    /// `--output`: `table` or `json`.
    pub const EVOCTL_OUTPUT: &'static str = "EVOCTL_OUTPUT";
    /// `--backend` for exec-based commands: `native` or `aws-cli`.
    pub const EVOCTL_BACKEND: &'static str = "EVOCTL_BACKEND";
    /// How often (ms) the task is checked during an exec session (hidden flag `--watchdog-ms`).
    pub const EVOCTL_WATCHDOG_MS: &'static str = "EVOCTL_WATCHDOG_MS";
    /// The session-manager-plugin executable for `--backend aws-cli`.
    pub const EVOCTL_SESSION_MANAGER_PLUGIN: &'static str = "EVOCTL_SESSION_MANAGER_PLUGIN";
    /// `shell --idle-timeout`: end a shell after this long without input or output.
    pub const EVOCTL_SHELL_IDLE_TIMEOUT: &'static str = "EVOCTL_SHELL_IDLE_TIMEOUT";
    /// Bound on setting a shell up (credentials, the task lookup, ExecuteCommand, opening the
    /// data channel, a KMS handshake) until the session opens; default 2 minutes.
    pub const EVOCTL_SHELL_SETUP_TIMEOUT: &'static str = "EVOCTL_SHELL_SETUP_TIMEOUT";
    /// Bound on setting a port forward up (credentials, the task lookup, StartSession, opening
    /// the data channel, the agent's handshake) until its sessions are open; default 1 minute.
    pub const EVOCTL_PORT_FORWARD_SETUP_TIMEOUT: &'static str = "EVOCTL_PORT_FORWARD_SETUP_TIMEOUT";

    /// Bound on opening a TCP connection to an AWS endpoint (the SDK's `connect_timeout`).
    pub const EVOCTL_AWS_CONNECT_TIMEOUT: &'static str = "EVOCTL_AWS_CONNECT_TIMEOUT";
    /// Bound on one attempt of an AWS call (the SDK's `operation_attempt_timeout`).
    pub const EVOCTL_AWS_OPERATION_ATTEMPT_TIMEOUT: &'static str = "EVOCTL_AWS_OPERATION_ATTEMPT_TIMEOUT";
    /// Bound on an AWS call with all its retries (the SDK's `operation_timeout`).
    pub const EVOCTL_AWS_OPERATION_TIMEOUT: &'static str = "EVOCTL_AWS_OPERATION_TIMEOUT";
    /// Bound on opening the data channel: TCP (or the proxy tunnel), TLS and the websocket upgrade.
    pub const EVOCTL_DATA_CHANNEL_CONNECT_TIMEOUT: &'static str = "EVOCTL_DATA_CHANNEL_CONNECT_TIMEOUT";

    /// Where `doctor`'s whatsapp-reach layer and `connect` look for WhatsApp from inside the task
    /// (`HOST:PORT`, default `web.whatsapp.com:443`); a rehearsal lab points it at its own listener.
    pub const EVOCTL_WHATSAPP_ENDPOINT: &'static str = "EVOCTL_WHATSAPP_ENDPOINT";

    /// Set (to anything): no colour, as https://no-color.org asks; the terminal QR is then drawn
    /// in plain half blocks.
    pub const NO_COLOR: &'static str = "NO_COLOR";

    /// The region (the SDK's, before `AWS_DEFAULT_REGION` and the profile's `region`; `init
    /// --discover` takes a named profile's own region before these).
    pub const AWS_REGION: &'static str = "AWS_REGION";
    pub const AWS_DEFAULT_REGION: &'static str = "AWS_DEFAULT_REGION";
    /// Attempts per AWS call (the SDK's; profile key `max_attempts`).
    pub const AWS_MAX_ATTEMPTS: &'static str = "AWS_MAX_ATTEMPTS";
    /// `standard` or `adaptive` (the SDK's; profile key `retry_mode`).
    pub const AWS_RETRY_MODE: &'static str = "AWS_RETRY_MODE";
    /// A PEM file of extra trusted CAs, for AWS calls and the data channel alike (as the AWS CLI;
    /// profile key `ca_bundle`).
    pub const AWS_CA_BUNDLE: &'static str = "AWS_CA_BUNDLE";
    /// Endpoint override for every AWS service (the SDK's), and the ECS-only one.
    pub const AWS_ENDPOINT_URL: &'static str = "AWS_ENDPOINT_URL";
    pub const AWS_ENDPOINT_URL_ECS: &'static str = "AWS_ENDPOINT_URL_ECS";
    /// The profile the SDK's chain reads when no `--profile` or config key names one; evoctl
    /// refuses one that is in neither profile file, as the AWS CLI does.
    pub const AWS_PROFILE: &'static str = "AWS_PROFILE";
    /// The AWS config and credentials files (the SDK's; defaults `~/.aws/config` and
    /// `~/.aws/credentials`), named in messages.
    pub const AWS_CONFIG_FILE: &'static str = "AWS_CONFIG_FILE";
    pub const AWS_SHARED_CREDENTIALS_FILE: &'static str = "AWS_SHARED_CREDENTIALS_FILE";
    /// Credentials in the environment (the SDK reads them); evoctl only holds their values so
    /// that no output ever shows them.
    pub const AWS_SECRET_ACCESS_KEY: &'static str = "AWS_SECRET_ACCESS_KEY";
    pub const AWS_SESSION_TOKEN: &'static str = "AWS_SESSION_TOKEN";
}

/// The profile keys that go with some of the variables above.
pub struct ProfileKeys;

impl ProfileKeys {
    pub const MAX_ATTEMPTS: &'static str = "max_attempts";
    pub const RETRY_MODE: &'static str = "retry_mode";
    pub const CA_BUNDLE: &'static str = "ca_bundle";
}
