//! Resolving secret references (`ssm:/path`, `env:VAR`) on the operator's side. The value is
//! only ever sent over the encrypted data channel; it is never printed, logged or put in an
//! error, and an empty value is refused before anything is written.

use crate::aws::{Aws, sdk_failure};
use crate::config::SecretRef;
use crate::error::{Error, Result};

pub async fn resolve(aws: &Aws, reference: &SecretRef) -> Result<String> {
    let value = match reference {
        SecretRef::Env(var) => std::env::var(var).unwrap_or_default(),
        SecretRef::Ssm(path) => {
            let out = aws.ssm().get_parameter().name(path).with_decryption(true).send().await.map_err(|e| {
                let failure = sdk_failure("GetParameter", e);
                if failure.code == "ParameterNotFound" {
                    Error::usage(
                        format!("SSM parameter {path} does not exist"),
                        "create it, or fix jwt_secret in evoctl.toml",
                    )
                } else {
                    failure.into_error()
                }
            })?;
            out.parameter().and_then(|p| p.value()).unwrap_or_default().to_owned()
        }
    };
    if value.is_empty() {
        return Err(Error::usage(
            format!("the webhook secret {reference} is empty; nothing was written"),
            "an empty jwt_key breaks every webhook of the instance in Evolution 2.3.7: set a non-empty secret",
        ));
    }
    Ok(value)
}
