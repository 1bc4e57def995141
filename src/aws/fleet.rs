//! Environments in several AWS accounts and regions: one credential chain per distinct
//! (profile, role, region), each resolved once per process and shared by every client and
//! environment that uses it.
//!
//! Each environment's settings are the flags (`--profile`, `--region`) where given, then its
//! own `env.NAME.aws`, then `[aws]`, then the SDK's chain. Chains are loaded concurrently;
//! nothing is called until a command reads (credentials and roles resolve on first use).

use super::credentials::{NamedBy, ProfileNamedBy};
use super::{Aws, AwsSettings};
use crate::config::{AwsSection, Environment};
use crate::error::{Error, Result};
use indexmap::IndexMap;

/// The chains of a set of environments.
#[derive(Debug, Clone)]
pub struct Fleet {
    chains: Vec<Aws>,
    /// Environment name -> index in `chains`.
    by_env: IndexMap<String, usize>,
}

/// The settings environment `env` is read with.
pub fn settings_for(flags: &AwsSettings, file: &AwsSection, env: &Environment) -> AwsSettings {
    let config_key = |key: String| Some(NamedBy::ConfigKey { key, file: file.file.clone() });
    let (profile, named_by) = match (&flags.profile, &env.aws.profile, &file.profile) {
        (Some(flag), _, _) => (Some(flag.clone()), flags.profile_named_by.0.clone()),
        (None, Some(own), _) => (Some(own.clone()), config_key(format!("env.{}.aws.profile", env.name))),
        (None, None, Some(shared)) => (Some(shared.clone()), config_key("aws.profile".into())),
        (None, None, None) => (None, None),
    };
    AwsSettings {
        region: flags.region.clone().or_else(|| env.aws.region.clone()).or_else(|| file.region.clone()),
        profile,
        profile_named_by: ProfileNamedBy(named_by),
        role_arn: env.aws.role_arn.as_ref().map(|arn| arn.0.clone()),
        external_id: env.aws.external_id.clone(),
        session_name: env.aws.session_name.as_ref().map(|name| name.0.clone()),
    }
}

impl Fleet {
    /// Load the chains `environments` need (each distinct one once, all at the same time).
    pub async fn load(flags: &AwsSettings, file: &AwsSection, environments: &[&Environment]) -> Result<Fleet> {
        let mut distinct: IndexMap<AwsSettings, Vec<&str>> = IndexMap::new();
        for env in environments {
            distinct.entry(settings_for(flags, file, env)).or_default().push(&env.name);
        }
        // With several chains, a chain's error names the environments it serves.
        let several = distinct.len() > 1;
        let loads = distinct.iter().map(|(settings, names)| async move {
            Aws::load(settings).await.map_err(|err| if several { for_envs(err, names) } else { err })
        });
        let chains = futures::future::try_join_all(loads).await?;
        let mut by_env = IndexMap::new();
        for (index, names) in distinct.values().enumerate() {
            for name in names {
                by_env.insert((*name).to_owned(), index);
            }
        }
        Ok(Fleet { chains, by_env })
    }

    /// The chain environment `env` is read with (it must be one the fleet was loaded for).
    pub fn of(&self, env: &Environment) -> &Aws {
        let index = self.by_env.get(&env.name).unwrap_or_else(|| panic!("no AWS chain loaded for {}", env.name));
        &self.chains[*index]
    }

    /// The positions of `names` grouped by the chain that reads them, chains in order of first
    /// use: for reads made once per account (Application Auto Scaling's batched describes).
    pub fn partition<'a, 'n>(&'a self, names: impl IntoIterator<Item = &'n str>) -> Vec<(&'a Aws, Vec<usize>)> {
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (position, name) in names.into_iter().enumerate() {
            let chain = *self.by_env.get(name).unwrap_or_else(|| panic!("no AWS chain loaded for {name}"));
            match groups.iter_mut().find(|(c, _)| *c == chain) {
                Some((_, members)) => members.push(position),
                None => groups.push((chain, vec![position])),
            }
        }
        groups.into_iter().map(|(chain, members)| (&self.chains[chain], members)).collect()
    }
}

/// A chain's loading error, naming the environments it serves.
fn for_envs(err: Error, names: &[&str]) -> Error {
    match err {
        Error::Usage { message, fix } => {
            Error::Usage { message: format!("{} (for {})", message, names.join(", ")), fix }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EnvAws, RoleArn};

    #[test]
    fn the_flags_win_then_the_environment_then_the_file() {
        let mut env = Environment::for_test("staging", "s", 0, 0);
        env.aws = EnvAws {
            profile: Some("stage".into()),
            region: Some("us-west-2".into()),
            role_arn: Some(RoleArn("arn:aws:iam::111111111111:role/Ops".into())),
            ..EnvAws::default()
        };
        let file =
            AwsSection { region: Some("us-east-1".into()), profile: Some("base".into()), file: "evoctl.toml".into() };
        let none = AwsSettings::default();
        let settings = settings_for(&none, &file, &env);
        assert_eq!(settings.region.as_deref(), Some("us-west-2"));
        assert_eq!(settings.profile.as_deref(), Some("stage"));
        assert_eq!(settings.role_arn.as_deref(), Some("arn:aws:iam::111111111111:role/Ops"));
        let flags = AwsSettings { region: Some("eu-west-1".into()), ..AwsSettings::default() };
        assert_eq!(settings_for(&flags, &file, &env).region.as_deref(), Some("eu-west-1"));
        let bare = Environment::for_test("production", "p", 1, 1);
        assert_eq!(settings_for(&none, &file, &bare).profile.as_deref(), Some("base"));
    }
}
