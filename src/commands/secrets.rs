//! Resolving the webhook secret for a write. The value is only ever sent over the encrypted
//! data channel; it is never printed, logged or put in an error, and a missing or empty value is
//! refused before anything is written.

use crate::aws::Aws;
use crate::aws::secrets::{self, SecretValue};
use crate::config::SecretRef;
use crate::error::{Error, Result};

pub async fn resolve(aws: &Aws, reference: &SecretRef) -> Result<String> {
    match secrets::fetch(aws, reference).await? {
        SecretValue::Missing => Err(Error::usage(
            match reference {
                SecretRef::Ssm(path) => format!("SSM parameter {path} does not exist"),
                SecretRef::Env(var) => format!("environment variable {var} is not set"),
            },
            "create it, or fix jwt_secret in evoctl.toml",
        )),
        SecretValue::Value(value) if value.is_empty() => Err(Error::usage(
            format!("the webhook secret {reference} is empty; nothing was written"),
            "an empty jwt_key breaks every webhook of the instance in Evolution 2.3.7: set a non-empty secret",
        )),
        SecretValue::Value(value) => Ok(value),
    }
}
