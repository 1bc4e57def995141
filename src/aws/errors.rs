//! Turning SDK errors into something a person can act on.
//!
//! Service errors keep AWS's code and message; transport failures walk the source chain so
//! "connection refused" or "no credentials" is visible instead of "dispatch failure". Each
//! well-known code gets a fix. Callers match on [`AwsFailure::code`] for cases they treat
//! specially (a missing cluster is "not found", not an API failure).

use super::credentials::NoCredentials;
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
        SdkError::TimeoutError(_) => AwsFailure {
            action,
            code: "Timeout".into(),
            message: format!(
                "no answer in time ({}; the bounds are {} per attempt and {} for all attempts)",
                source_chain(&err),
                crate::env_vars::EnvVars::EVOCTL_AWS_OPERATION_ATTEMPT_TIMEOUT,
                crate::env_vars::EnvVars::EVOCTL_AWS_OPERATION_TIMEOUT
            ),
        },
        SdkError::DispatchFailure(_) if no_credentials(&err).is_some() => AwsFailure {
            action,
            code: "NoCredentials".into(),
            message: no_credentials(&err).expect("checked").to_string(),
        },
        SdkError::DispatchFailure(_) if credentials_failure(&err).is_some() => {
            let (code, message) = credentials_failure(&err).expect("checked");
            // aws-config's login provider (a profile `aws login` wrote) says "cached Login
            // token" when the session's token is expired or its refresh was refused.
            let login = source_chain(&err).contains("cached Login token");
            AwsFailure {
                action,
                code: if login { "LoginSessionEnded" } else { "CredentialsNotLoaded" }.into(),
                message: format!("could not get credentials: {code}: {message}"),
            }
        }
        SdkError::DispatchFailure(_) => {
            let message = source_chain(&err);
            let code = if message.contains("certificate") || message.contains("UnknownIssuer") {
                "UntrustedCertificate"
            } else {
                "Unreachable"
            };
            AwsFailure { action, code: code.into(), message }
        }
        _ => AwsFailure { action, code: "RequestFailed".into(), message: source_chain(&err) },
    }
}

/// When the credential chain found nothing at all: where it looked.
fn no_credentials<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a NoCredentials> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<NoCredentials>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// When a call failed because its credentials could not be had (an assumed role refused, an
/// expired SSO login, a credential_process that failed): the innermost AWS error's code and
/// message, or the provider's own words.
fn credentials_failure(err: &(dyn std::error::Error + 'static)) -> Option<(String, String)> {
    use aws_credential_types::provider::error::CredentialsError;
    let mut current = Some(err);
    let mut found = None;
    while let Some(e) = current {
        if found.is_none() && e.downcast_ref::<CredentialsError>().is_some() {
            found = Some(("CredentialsError".to_owned(), source_chain(e)));
        }
        if found.is_some()
            && let Some(meta) = e.downcast_ref::<aws_smithy_types::error::ErrorMetadata>()
        {
            return Some((
                meta.code().unwrap_or("Unknown").to_owned(),
                meta.message().unwrap_or("no message").to_owned(),
            ));
        }
        current = e.source();
    }
    found
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
        "UntrustedCertificate" => {
            "the endpoint's TLS certificate is not trusted: if a proxy or a private CA signs it, point AWS_CA_BUNDLE (or the profile's ca_bundle) at that CA's PEM file".into()
        }
        "NoCredentials" => {
            "log in with `aws sso login --profile NAME` and pass --profile NAME (or export AWS_PROFILE=NAME), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into()
        }
        "CredentialsNotLoaded" => {
            "these credentials could not be had: for an assumed role check its trust policy, the ExternalId (external_id) and the source profile's credentials; check with `aws sts get-caller-identity --profile NAME`".into()
        }
        "LoginSessionEnded" => {
            "the console session `aws login` opened has ended or cannot be refreshed: sign in again with `aws login` (the same profile), then retry".into()
        }
        "Unreachable" => {
            "check network access to AWS and any AWS_ENDPOINT_URL* override; for credentials problems see `aws sts get-caller-identity`".into()
        }
        "ServerException" | "InternalFailure" | "ServiceUnavailable" => "AWS had a server-side fault: retry".into(),
        "Timeout" => "check the network path to AWS (and any proxy: HTTPS_PROXY / NO_PROXY); raise the bound with EVOCTL_AWS_OPERATION_ATTEMPT_TIMEOUT or EVOCTL_AWS_OPERATION_TIMEOUT".into(),
        _ => return None,
    };
    Some(fix)
}
