//! Reading secret references (`ssm:/path`, `env:VAR`) on the operator's side. Values are
//! returned to the caller only, and held by the printer's sanitiser so that nothing printed
//! afterwards can show them; this module never logs or prints them, and errors name the
//! reference, never the value.

use super::{Aws, sdk_failure};
use crate::config::SecretRef;
use crate::error::Result;

/// What a secret reference resolved to.
pub enum SecretValue {
    /// The SSM parameter or environment variable does not exist.
    Missing,
    /// The value (possibly empty).
    Value(String),
}

/// Resolve a reference; SSM parameters are read with decryption.
pub async fn fetch(aws: &Aws, reference: &SecretRef) -> Result<SecretValue> {
    let value = read(aws, reference).await?;
    if let SecretValue::Value(secret) = &value {
        crate::output::sanitize::hold(secret);
    }
    Ok(value)
}

async fn read(aws: &Aws, reference: &SecretRef) -> Result<SecretValue> {
    match reference {
        SecretRef::Env(var) => Ok(std::env::var(var).map_or(SecretValue::Missing, SecretValue::Value)),
        SecretRef::Ssm(path) => match aws.ssm().get_parameter().name(path).with_decryption(true).send().await {
            Ok(out) => Ok(SecretValue::Value(out.parameter().and_then(|p| p.value()).unwrap_or_default().to_owned())),
            Err(err) => {
                let failure = sdk_failure("GetParameter", err);
                if failure.code == "ParameterNotFound" { Ok(SecretValue::Missing) } else { Err(failure.into_error()) }
            }
        },
    }
}
