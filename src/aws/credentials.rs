//! Where credentials come from, said plainly.
//!
//! A profile named on purpose — by `--profile`, `AWS_PROFILE`, `env.NAME.aws.profile` or
//! `[aws] profile` in evoctl.toml, or `init --discover-profile` — must be in the AWS config or
//! credentials file (`AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/config` and
//! `~/.aws/credentials`, read with the SDK's own profile loader); one that is in neither is a
//! usage error naming it and where it was named, before any AWS call. Never a silent fallback:
//! like the AWS CLI, an unknown `AWS_PROFILE` is refused even when keys in the environment would
//! have served. A chain that finds no credentials at all fails its first call with one line
//! naming where it looked ([`NoCredentials`]) instead of the last provider's words.

use crate::env_vars::EnvVars;
use crate::error::{Error, Result};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_runtime::env_config::section::EnvConfigSections;
use aws_types::os_shim_internal::Env;
use std::path::PathBuf;

/// Where a profile was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedBy {
    /// A command-line flag (`--profile`, `--discover-profile`).
    Flag(&'static str),
    /// The `AWS_PROFILE` environment variable.
    EnvVar,
    /// A key of the config file (`env.staging.aws.profile`, `aws.profile`).
    ConfigKey { key: String, file: PathBuf },
}

impl std::fmt::Display for NamedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NamedBy::Flag(flag) => f.write_str(flag),
            NamedBy::EnvVar => f.write_str(EnvVars::AWS_PROFILE),
            NamedBy::ConfigKey { key, file } => write!(f, "{key} in {}", file.display()),
        }
    }
}

/// Where a chain's profile was named: for messages only, not part of the chain's identity (two
/// environments that name one profile share one chain, whoever named it).
#[derive(Debug, Clone, Default)]
pub struct ProfileNamedBy(pub Option<NamedBy>);

impl PartialEq for ProfileNamedBy {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ProfileNamedBy {}

impl std::hash::Hash for ProfileNamedBy {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// The profile a chain reads: the one the settings name, else `AWS_PROFILE` (non-empty).
pub fn named_profile(env: &Env, profile: Option<&str>, named_by: &ProfileNamedBy) -> Option<(String, NamedBy)> {
    match (profile, &named_by.0) {
        (Some(name), Some(by)) => Some((name.to_owned(), by.clone())),
        (Some(name), None) => Some((name.to_owned(), NamedBy::Flag("--profile"))),
        (None, _) => {
            env.get(EnvVars::AWS_PROFILE).ok().filter(|name| !name.is_empty()).map(|name| (name, NamedBy::EnvVar))
        }
    }
}

/// The AWS config and credentials files as the SDK finds them, for messages.
fn files(env: &Env) -> (String, String) {
    let file = |var: &str, default: &str| env.get(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.into());
    (file(EnvVars::AWS_CONFIG_FILE, "~/.aws/config"), file(EnvVars::AWS_SHARED_CREDENTIALS_FILE, "~/.aws/credentials"))
}

/// Profile `name`, named by `named_by`, must be in the profile files the SDK loaded
/// (`loaded`: the sections, or why they could not be read).
pub fn check_profile(
    env: &Env,
    loaded: std::result::Result<&EnvConfigSections, &dyn std::error::Error>,
    name: &str,
    named_by: &NamedBy,
) -> Result<()> {
    let (config, credentials) = files(env);
    let sections = match loaded {
        Ok(sections) => sections,
        Err(err) => {
            return Err(Error::usage(
                format!("AWS profile `{name}` (named by {named_by}) cannot be looked up: {err}"),
                format!("fix the syntax of {config} or {credentials}"),
            ));
        }
    };
    if sections.get_profile(name).is_some() {
        return Ok(());
    }
    let mut known: Vec<&str> = sections.profiles().collect();
    known.sort_unstable();
    let known = match known.len() {
        0 => "they define no profile".to_owned(),
        _ => format!("the profiles there: {}", known.join(", ")),
    };
    let create = format!("create it (`aws configure sso --profile {name}`)");
    let action = match named_by {
        NamedBy::Flag(flag) => format!("name one of them with {flag}, or {create}"),
        NamedBy::EnvVar => format!(
            "fix or unset {} (the AWS CLI refuses an unknown profile too, even with keys in the environment)",
            EnvVars::AWS_PROFILE
        ),
        NamedBy::ConfigKey { key, file } => format!("fix {key} in {}, or {create}", file.display()),
    };
    Err(Error::usage(
        format!("AWS profile `{name}` (named by {named_by}) is in neither {config} nor {credentials}"),
        format!("{known}; {action}"),
    ))
}

/// Look profiles up in the AWS files (the SDK's loader), each with where it was named.
pub async fn check_profiles(named: &[(String, NamedBy)]) -> Result<()> {
    if named.is_empty() {
        return Ok(());
    }
    let (env, fs) = (Env::real(), aws_types::os_shim_internal::Fs::real());
    let loaded = aws_config::profile::load(&fs, &env, &Default::default(), None).await;
    for (name, named_by) in named {
        check_profile(&env, loaded.as_ref().map_err(|err| err as &dyn std::error::Error), name, named_by)?;
    }
    Ok(())
}

/// A credential chain that found nothing, and where it looked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoCredentials(pub String);

/// Where a chain looks: a named profile alone, or the SDK's default chain.
#[derive(Debug, Clone)]
enum Looked {
    Profile { name: String, named_by: NamedBy },
    DefaultChain { profile: String, from_env: bool },
}

/// A credentials provider that says, when the chain under it finds nothing, where it looked.
#[derive(Debug)]
pub struct SaysWhereItLooked {
    inner: SharedCredentialsProvider,
    looked: Looked,
    files: (String, String),
}

impl SaysWhereItLooked {
    /// Wrap `inner`, which reads `profile` alone (named by `named_by`) or, without one, the
    /// default chain.
    pub fn wrap(env: &Env, inner: SharedCredentialsProvider, profile: Option<(String, NamedBy)>) -> Self {
        let looked = match profile {
            Some((name, NamedBy::EnvVar)) => Looked::DefaultChain { profile: name, from_env: true },
            Some((name, named_by)) => Looked::Profile { name, named_by },
            None => Looked::DefaultChain { profile: "default".into(), from_env: false },
        };
        SaysWhereItLooked { inner, looked, files: files(env) }
    }

    /// The chain's error, or [`NoCredentials`] when it means that nothing was found.
    fn explain(&self, err: CredentialsError) -> CredentialsError {
        let (config, credentials) = &self.files;
        let message = match (&self.looked, &err) {
            (Looked::Profile { name, named_by }, CredentialsError::CredentialsNotLoaded(_)) => format!(
                "AWS profile `{name}` (named by {named_by}) holds no credentials: no keys, role_arn, SSO, credential_process or web identity for it in {config} or {credentials}"
            ),
            (Looked::DefaultChain { profile, from_env }, _) => {
                // The default chain asks instance metadata last: an error from it means every
                // other source had nothing.
                let imds = match &err {
                    CredentialsError::CredentialsNotLoaded(_) => String::new(),
                    other => match imds_answer(other) {
                        Some(answer) => format!(" (which answered: {answer})"),
                        None => return err,
                    },
                };
                let named = if *from_env { format!(" ({})", EnvVars::AWS_PROFILE) } else { String::new() };
                format!(
                    "no AWS credentials found: none in the environment (AWS_ACCESS_KEY_ID), in profile `{profile}`{named} of {credentials} and {config}, from web identity (AWS_WEB_IDENTITY_TOKEN_FILE), the ECS container endpoint or EC2 instance metadata{imds}"
                )
            }
            _ => return err,
        };
        CredentialsError::not_loaded(NoCredentials(message))
    }
}

/// What instance metadata answered, when `err` came from it: its error and their causes.
fn imds_answer(err: &CredentialsError) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = current {
        if e.downcast_ref::<aws_config::imds::client::error::ImdsError>().is_some() {
            let mut words: Vec<String> = Vec::new();
            let mut cause = Some(e);
            while let Some(c) = cause {
                let text = c.to_string();
                if !words.iter().any(|w| w.contains(&text)) {
                    words.push(text);
                }
                cause = c.source();
            }
            return Some(words.join(": "));
        }
        current = e.source();
    }
    None
}

impl ProvideCredentials for SaysWhereItLooked {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.inner.provide_credentials().await.map_err(|err| self.explain(err))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::from_slice(vars)
    }

    fn sections(config: &str) -> EnvConfigSections {
        use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
        let files = EnvConfigFiles::builder().with_contents(EnvConfigFileKind::Config, config).build();
        let fs = aws_types::os_shim_internal::Fs::from_slice(&[]);
        futures::executor::block_on(aws_config::profile::load(&fs, &env(&[]), &files, None)).unwrap()
    }

    #[test]
    fn a_profile_from_aws_profile_is_checked_and_one_named_by_settings_wins() {
        let from_env = env(&[("AWS_PROFILE", "typo")]);
        let none = ProfileNamedBy::default();
        assert_eq!(named_profile(&from_env, None, &none), Some(("typo".into(), NamedBy::EnvVar)));
        assert_eq!(named_profile(&env(&[("AWS_PROFILE", "")]), None, &none), None);
        let by_key = ProfileNamedBy(Some(NamedBy::ConfigKey { key: "aws.profile".into(), file: "e.toml".into() }));
        assert_eq!(named_profile(&from_env, Some("ops"), &by_key), Some(("ops".into(), by_key.0.clone().unwrap())));
    }

    #[test]
    fn an_unknown_profile_is_named_with_where_it_was_named_and_the_known_ones() {
        let loaded = sections("[profile prod]\nregion = us-east-1\n[default]\nregion = us-east-1\n");
        let vars = env(&[("AWS_CONFIG_FILE", "/etc/aws/config")]);
        assert!(check_profile(&vars, Ok(&loaded), "prod", &NamedBy::EnvVar).is_ok());
        let err = check_profile(&vars, Ok(&loaded), "prdo", &NamedBy::EnvVar).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AWS profile `prdo` (named by AWS_PROFILE) is in neither /etc/aws/config nor ~/.aws/credentials"
        );
        assert_eq!(
            err.fix(),
            Some(
                "the profiles there: default, prod; fix or unset AWS_PROFILE (the AWS CLI refuses an unknown profile too, even with keys in the environment)"
            )
        );
        assert_eq!(err.exit_code(), crate::exit::USAGE);
    }
}
