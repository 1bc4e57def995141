//! Turning SDK errors into something a person can act on.
//!
//! Service errors keep AWS's code and message; transport failures walk the source chain so
//! "connection refused" or "no credentials" is visible instead of "dispatch failure". Each
//! well-known code gets a fix. Callers match on [`AwsFailure::code`] for cases they treat
//! specially (a missing cluster is "not found", not an API failure).

use crate::error::Error;
use aws_sdk_ecs::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A failed AWS call, before the caller decides what it means.
#[derive(Debug, Clone)]
pub struct AwsFailure {
    pub action: &'static str,
    pub code: String,
    pub message: String,
}

impl AwsFailure {
    /// The generic error for this failure, with a fix for well-known codes.
    pub fn into_error(self) -> Error {
        let fix = fix_for(&self.code, self.action);
        Error::Aws { action: self.action.into(), code: self.code, message: self.message, fix }
    }
}

impl From<AwsFailure> for Error {
    fn from(failure: AwsFailure) -> Self {
        failure.into_error()
    }
}

/// Capture an SDK error of any operation.
pub fn sdk_failure<E, R>(action: &'static str, err: SdkError<E, R>) -> AwsFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            AwsFailure {
                action,
                code: inner.code().unwrap_or("Unknown").to_owned(),
                message: inner.message().unwrap_or("no message").to_owned(),
            }
        }
        SdkError::TimeoutError(_) => {
            AwsFailure { action, code: "Timeout".into(), message: "the request timed out".into() }
        }
        SdkError::DispatchFailure(_) => AwsFailure { action, code: "Unreachable".into(), message: source_chain(&err) },
        _ => AwsFailure { action, code: "RequestFailed".into(), message: source_chain(&err) },
    }
}

/// The error and its sources joined with ": ", without repeats.
fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

fn fix_for(code: &str, action: &str) -> Option<String> {
    let fix = match code {
        "UnrecognizedClientException" | "InvalidClientTokenId" | "InvalidSignatureException"
        | "SignatureDoesNotMatch" | "ExpiredToken" | "ExpiredTokenException" | "IncompleteSignature" => {
            "check the AWS credentials in use: `aws sts get-caller-identity` (SSO: `aws sso login --profile NAME`)".into()
        }
        "AccessDeniedException" | "AccessDenied" => {
            format!("the caller is not allowed to call {action}: grant it in IAM or use another --profile")
        }
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" => {
            "AWS is throttling this account: wait a minute and retry".into()
        }
        "Unreachable" => {
            "check network access to AWS and any AWS_ENDPOINT_URL* override; for credentials problems see `aws sts get-caller-identity`".into()
        }
        "ServerException" | "InternalFailure" | "ServiceUnavailable" => "AWS had a server-side fault: retry".into(),
        _ => return None,
    };
    Some(fix)
}
