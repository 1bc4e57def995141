//! A task definition container's `secrets`, as the ECS agent resolves them. Each `valueFrom` is
//! an SSM parameter (its name or its ARN) or a Secrets Manager secret (its ARN). A bare
//! parameter name is relative to the task: ECS reads it in the task definition's own partition,
//! account and region, so one name in two accounts is two parameters. [`qualify`] turns every
//! `valueFrom` into that full ARN; [`read`] reads a parameter's value with the caller's own
//! credentials (`ssm:GetParameter`, decrypted) where they may, and says why not where they may
//! not. Secrets Manager secrets are known by their ARN only (nothing here reads them). Values go
//! to the caller only: this module never logs or prints them, and its errors name the ARN.

use super::{Aws, sdk_failure};
use crate::error::Result;

/// Where a `valueFrom` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// An SSM Parameter Store parameter.
    Parameter,
    /// A Secrets Manager secret (optionally one JSON key, version stage or version id of it).
    SecretsManager,
}

/// A `valueFrom`, qualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretArn {
    /// `arn:PARTITION:ssm:REGION:ACCOUNT:parameter/NAME`, or the Secrets Manager ARN as written
    /// (with its JSON key and version selectors, without empty trailing ones).
    pub arn: String,
    pub store: Store,
    /// The region the secret lives in (where it must be read).
    pub region: String,
}

/// `value_from` as the full ARN ECS resolves it to for a task of `task_definition_arn`: an ARN
/// stays as it is, a bare parameter name is placed in the task definition's partition, region
/// and account. `None` when it is neither a parameter or secret ARN nor a name that can be
/// placed (no task definition ARN to place it by).
pub fn qualify(value_from: &str, task_definition_arn: Option<&str>) -> Option<SecretArn> {
    if value_from.starts_with("arn:") {
        let [_, _, service, region, _, _] = arn_fields(value_from)?;
        let store = match service {
            "ssm" => Store::Parameter,
            "secretsmanager" => Store::SecretsManager,
            _ => return None,
        };
        let arn = match store {
            Store::Parameter => value_from.to_owned(),
            Store::SecretsManager => value_from.trim_end_matches(':').to_owned(),
        };
        return Some(SecretArn { arn, store, region: region.to_owned() });
    }
    let [_, partition, _, region, account, _] = arn_fields(task_definition_arn?)?;
    // A hierarchical name starts with `/`; the ARN's resource is `parameter` then the name with
    // exactly one `/` between them either way.
    let separator = if value_from.starts_with('/') { "" } else { "/" };
    Some(SecretArn {
        arn: format!("arn:{partition}:ssm:{region}:{account}:parameter{separator}{value_from}"),
        store: Store::Parameter,
        region: region.to_owned(),
    })
}

/// `arn`, `partition`, `service`, `region`, `account`, `resource`; `None` when a field is
/// missing or the region or account is empty.
fn arn_fields(arn: &str) -> Option<[&str; 6]> {
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let fields: [&str; 6] = fields.try_into().ok()?;
    (fields[0] == "arn" && !fields[1].is_empty() && !fields[3].is_empty() && !fields[4].is_empty()).then_some(fields)
}

/// What reading a secret gave.
pub enum Read {
    /// The value (never print it).
    Value(String),
    /// Not read, and why (for the evidence that compares it by ARN instead).
    Unread(String),
}

/// The answers that mean "this caller may not read it" rather than "AWS failed": the read is
/// then left out and the secret compared by its ARN. Anything else is an error, so no caller
/// decides from a read that failed for some other reason.
const REFUSALS: &[&str] = &["AccessDeniedException", "ParameterNotFound", "InvalidKeyId"];

/// Read `secret` with the caller's credentials, in the secret's own region.
pub async fn read(aws: &Aws, secret: &SecretArn) -> Result<Read> {
    match secret.store {
        Store::SecretsManager => Ok(Read::Unread("a Secrets Manager secret, not read".into())),
        Store::Parameter => {
            let ssm = aws.ssm_in(&secret.region);
            match ssm.get_parameter().name(&secret.arn).with_decryption(true).send().await {
                Ok(out) => Ok(Read::Value(out.parameter().and_then(|p| p.value()).unwrap_or_default().to_owned())),
                Err(err) => {
                    let failure = sdk_failure("GetParameter", err);
                    if REFUSALS.contains(&failure.code.as_str()) {
                        Ok(Read::Unread(format!("ssm:GetParameter answered {}", failure.code)))
                    } else {
                        Err(failure.into_error())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: &str = "arn:aws:ecs:sa-east-1:222222222222:task-definition/alinhou-production-EvolutionService:31";

    #[test]
    fn a_bare_parameter_name_is_placed_in_the_tasks_account_and_region() {
        let hierarchical = qualify("/alinhou/evolution-api-key", Some(TASK)).unwrap();
        assert_eq!(hierarchical.arn, "arn:aws:ssm:sa-east-1:222222222222:parameter/alinhou/evolution-api-key");
        assert_eq!((hierarchical.store, hierarchical.region.as_str()), (Store::Parameter, "sa-east-1"));
        let flat = qualify("evolution-api-key", Some(TASK)).unwrap();
        assert_eq!(flat.arn, "arn:aws:ssm:sa-east-1:222222222222:parameter/evolution-api-key");
        let china = "arn:aws-cn:ecs:cn-north-1:333333333333:task-definition/x:1";
        assert_eq!(qualify("/k", Some(china)).unwrap().arn, "arn:aws-cn:ssm:cn-north-1:333333333333:parameter/k");
        assert_eq!(qualify("/k", None), None, "nothing to place a name by");
        assert_eq!(qualify("/k", Some("task-definition/x:1")), None);
    }

    #[test]
    fn an_arn_stays_where_it_points() {
        let other_region = "arn:aws:ssm:us-east-1:111111111111:parameter/shared/key";
        let secret = qualify(other_region, Some(TASK)).unwrap();
        assert_eq!((secret.arn.as_str(), secret.region.as_str()), (other_region, "us-east-1"));
        let manager = "arn:aws:secretsmanager:sa-east-1:222222222222:secret:evolution-AbCdEf:apiKey::";
        let secret = qualify(manager, Some(TASK)).unwrap();
        assert_eq!(secret.arn, "arn:aws:secretsmanager:sa-east-1:222222222222:secret:evolution-AbCdEf:apiKey");
        assert_eq!(secret.store, Store::SecretsManager);
        assert_eq!(qualify("arn:aws:s3:::bucket/key", Some(TASK)), None, "not a store ECS reads secrets from");
    }
}
