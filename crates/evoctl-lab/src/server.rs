//! The lab's HTTP listener: one port that speaks AWS (JSON 1.1 by `X-Amz-Target`, STS query,
//! Lambda REST) with SigV4 checks, latency/throttling/5xx injection and a request journal,
//! plus the `/_lab` control API (journal, faults, state, extra tasks).

use super::agent::AgentHub;
use super::hub::{Caller, Faults, JournalEntry, Shared, fault_roll};
use super::services::sts::{Issued, Principal};
use super::services::{self, ApiError};
use super::sigv4::{self, Rejection, SignedRequest, percent_decode};
use super::state::{LogEvent, TimelineEntry, now_f64, now_ms};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the handlers hold: the shared state, and the exec agents (which only the data channel,
/// TerminateSession and the process table reach).
#[derive(Clone)]
pub struct Lab {
    pub shared: Arc<Shared>,
    pub agents: Arc<AgentHub>,
}

impl axum::extract::FromRef<Lab> for Arc<Shared> {
    fn from_ref(lab: &Lab) -> Arc<Shared> {
        Arc::clone(&lab.shared)
    }
}

impl axum::extract::FromRef<Lab> for Arc<AgentHub> {
    fn from_ref(lab: &Lab) -> Arc<AgentHub> {
        Arc::clone(&lab.agents)
    }
}

pub fn router(lab: Lab) -> axum::Router {
    axum::Router::new()
        .route("/_lab/journal", get(get_journal).delete(clear_journal))
        .route("/_lab/faults", get(get_faults).post(set_faults))
        .route(
            "/_lab/identity-policy",
            get(get_identity_policy).post(set_identity_policy).delete(clear_identity_policy),
        )
        .route("/_lab/state", get(get_state))
        .route("/_lab/tasks", post(add_tasks))
        .route("/_lab/accounts/{account}/revoke", post(revoke_account))
        .route("/_lab/timeline", get(get_timeline))
        .route("/_lab/tokens", get(get_tokens))
        .route("/_lab/logs", get(get_logs).post(put_log_event))
        .route("/_lab/processes", get(get_processes))
        .route("/_lab/port-sessions", get(get_port_sessions))
        .route("/_lab/remote-hosts", get(get_remote_hosts).post(add_remote_host).delete(remove_remote_host))
        .route("/_lab/phone/scan", post(phone_scan))
        .route("/_lab/phone/message", post(phone_message))
        .route("/_lab/phone/drop", post(phone_drop))
        .route("/_lab/phone/remove", post(phone_remove))
        .route("/_lab/phone/dead", post(phone_dead))
        .route("/_lab/phone/reconnect", post(phone_reconnect))
        .route("/_lab/receiver", post(set_receiver))
        .route("/_lab/webhooks", get(get_webhooks).delete(clear_webhooks))
        .route("/_lab/webhooks/{*target}", post(receive_webhook))
        .route("/_lab/evolution", get(evolution_state))
        .route("/_lab/evolution/processes", get(evolution_processes))
        .route("/_lab/evolution/faults", post(evolution_faults))
        .route("/_lab/login", post(login))
        .route("/v1/token", post(signin_token))
        .route("/v1/data-channel/{session}", get(data_channel))
        .fallback(aws)
        .with_state(lab)
}

/// The protocol a request arrived in, which decides the error shape.
#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Json,
    Query,
    Rest,
}

async fn aws(State(lab): State<Lab>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let shared = &lab.shared;
    let start_ms = now_f64();
    let request_id = uuid_like(&shared.accounts.lock().expect("lab lock").primary_mut().next_id());
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (protocol, service, action, parameters) = match classify(&method, &uri, target.as_deref(), &body) {
        Ok(found) => found,
        Err(error) => return error_response(Protocol::Json, &error, &request_id),
    };
    let signed = SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: &body,
    };
    let secret_for = |key_id: &str| shared.principals.lock().expect("lab lock").get(key_id).map(|p| p.secret.clone());
    let caller = sigv4::verify(&signed, &secret_for)
        .map_err(|rejection| signature_error(protocol, rejection))
        .and_then(|scope| {
            let principal =
                shared.principals.lock().expect("lab lock").get(&scope.access_key_id).cloned().expect("verified key");
            let token = signed.headers.iter().find(|(n, _)| n == "x-amz-security-token").map(|(_, v)| v.as_str());
            // A revoked account's keys and sessions are refused as a deleted key is.
            let revoked = shared.accounts.lock().expect("lab lock").revoked.contains(&principal.account);
            match (&principal.session_token, token) {
                _ if revoked => Err(signature_error(protocol, Rejection::UnknownAccessKey)),
                (Some(wanted), Some(token)) if wanted == token => Ok((principal, scope.region)),
                (None, None) => Ok((principal, scope.region)),
                _ => Err(signature_error(protocol, Rejection::UnknownAccessKey)),
            }
        });
    let caller_arn = caller.as_ref().ok().map(|(p, _)| p.arn.clone());
    let result = match caller {
        Err(error) => Err(error),
        Ok((caller, region)) => {
            let faults = shared.faults.lock().expect("lab lock").clone();
            let applies = faults.actions.is_empty() || faults.actions.contains(&action);
            if applies && faults.latency_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(faults.latency_ms)).await;
            }
            let (burst, n) = if applies {
                let mut faults = shared.faults.lock().expect("lab lock");
                let hit = faults.throttle_burst > 0;
                faults.throttle_burst = faults.throttle_burst.saturating_sub(1);
                let calls = faults.calls.entry(action.clone()).or_insert(0);
                *calls += 1;
                (hit, *calls - 1)
            } else {
                (false, 0)
            };
            let rolls_below =
                |kind: &str, rate: f64| applies && rate > 0.0 && fault_roll(faults.seed, kind, &action, n) < rate;
            if burst || rolls_below("throttle", faults.throttle_rate) {
                let code = if protocol == Protocol::Query { "Throttling" } else { "ThrottlingException" };
                Err(ApiError::client(code, "Rate exceeded"))
            } else if rolls_below("server-error", faults.server_error_rate) {
                let code = if service == "ecs" { "ServerException" } else { "InternalFailure" };
                Err(ApiError::new(500, code, "The lab injected a server error."))
            } else if let Some(denied) =
                identity_denial(shared, protocol, &caller, &region, &service, &action, &parameters)
            {
                Err(denied)
            } else {
                dispatch(&lab, &caller, &region, &service, &action, &parameters, &request_id)
            }
        }
    };
    let user_agent = headers.get(header::USER_AGENT).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let who = Caller { arn: caller_arn, user_agent };
    shared.journal_push(who, service, action, parameters, start_ms, result.as_ref().err());
    match result {
        Ok(Reply::Json(value)) => {
            let content_type =
                if protocol == Protocol::Rest { "application/json" } else { "application/x-amz-json-1.1" };
            with_headers(StatusCode::OK, content_type, &request_id, value.to_string())
        }
        Ok(Reply::Xml(text)) => with_headers(StatusCode::OK, "text/xml", &request_id, text),
        Err(error) => error_response(protocol, &error, &request_id),
    }
}

enum Reply {
    Json(Value),
    Xml(String),
}

/// Work out service, action and parameters from the request's shape.
fn classify(
    method: &Method,
    uri: &Uri,
    target: Option<&str>,
    body: &[u8],
) -> Result<(Protocol, String, String, Value), ApiError> {
    if let Some(target) = target {
        let (prefix, action) = target
            .split_once('.')
            .ok_or_else(|| ApiError::client("UnknownOperationException", format!("bad X-Amz-Target {target}")))?;
        let service = match prefix {
            "AmazonEC2ContainerServiceV20141113" => "ecs",
            "AnyScaleFrontendService" => "application-autoscaling",
            "AmazonSSM" => "ssm",
            "Logs_20140328" => "logs",
            "TrentService" => "kms",
            _ => return Err(ApiError::client("UnknownOperationException", format!("unknown service {prefix}"))),
        };
        let parameters: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::client("SerializationException", format!("request body is not JSON: {e}")))?
        };
        return Ok((Protocol::Json, service.into(), action.into(), parameters));
    }
    let path = uri.path();
    let function = path.strip_prefix("/2015-03-31/functions/").and_then(|rest| rest.strip_suffix("/configuration"));
    if let (true, Some(name)) = (method == Method::GET, function) {
        let parameters = json!({"FunctionName": percent_decode(name)});
        return Ok((Protocol::Rest, "lambda".into(), "GetFunctionConfiguration".into(), parameters));
    }
    if method == Method::GET && (path == "/2015-03-31/functions" || path == "/2015-03-31/functions/") {
        let query: serde_json::Map<String, Value> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (percent_decode(k), Value::String(percent_decode(v))))
            .collect();
        return Ok((Protocol::Rest, "lambda".into(), "ListFunctions".into(), Value::Object(query)));
    }
    if let (true, Some(arn)) = (method == Method::GET, path.strip_prefix("/2017-03-31/tags/")) {
        let parameters = json!({"Resource": percent_decode(arn)});
        return Ok((Protocol::Rest, "lambda".into(), "ListTags".into(), parameters));
    }
    if method == Method::POST {
        let form: Vec<(String, String)> = std::str::from_utf8(body)
            .unwrap_or("")
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect();
        if let Some((_, action)) = form.iter().find(|(k, _)| k == "Action") {
            let parameters: serde_json::Map<String, Value> =
                form.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            return Ok((Protocol::Query, "sts".into(), action.clone(), Value::Object(parameters)));
        }
    }
    Err(ApiError::new(404, "UnknownOperationException", format!("the lab does not serve {method} {path}")))
}

fn dispatch(
    lab: &Lab,
    caller: &Principal,
    region: &str,
    service: &str,
    action: &str,
    parameters: &Value,
    request_id: &str,
) -> Result<Reply, ApiError> {
    let shared = &lab.shared;
    let mut accounts = shared.accounts.lock().expect("lab lock");
    let now = now_ms();
    if service == "sts" {
        return match action {
            "GetCallerIdentity" => Ok(Reply::Xml(services::sts::get_caller_identity(caller, request_id))),
            "AssumeRole" => {
                let issued = services::sts::assume_role(&mut accounts, caller, parameters)?;
                let xml = services::sts::assume_role_xml(&issued, request_id);
                shared.principals.lock().expect("lab lock").insert(issued.access_key_id.clone(), issued.principal);
                Ok(Reply::Xml(xml))
            }
            _ => Err(ApiError::client(
                "InvalidAction",
                format!("The action {action} is not valid for this web service."),
            )),
        };
    }
    let account = accounts.get_or_add(&caller.account, region);
    let json = |r: services::ActionResult| r.map(Reply::Json);
    match service {
        "ecs" if action == "ExecuteCommand" => {
            let faults = shared.faults.lock().expect("lab lock").clone();
            json(services::ecs::execute_command(account, parameters, faults.agent_not_connected, faults.exec_disabled))
        }
        "ecs" => json(services::ecs::handle(account, action, parameters, now)),
        "application-autoscaling" => json(services::autoscaling::handle(account, action, parameters, now)),
        "ssm" if action == "TerminateSession" => {
            if shared.faults.lock().expect("lab lock").terminate_denied {
                return Err(ApiError::client(
                    "AccessDeniedException",
                    format!(
                        "User: arn:aws:iam::{}:user/lab is not authorized to perform: ssm:TerminateSession on resource: arn:aws:ssm:{}:{}:session/{}",
                        account.account,
                        account.region,
                        account.account,
                        parameters["SessionId"].as_str().unwrap_or_default()
                    ),
                ));
            }
            let id = services::required(parameters, "SessionId", "ValidationException")?.to_owned();
            // A session that never reached its agent ends here (it can no longer connect).
            accounts.remove_exec_session(&id);
            drop(accounts);
            let running = lab.agents.terminate(&id);
            tracing::debug!(session = %id, running, "TerminateSession");
            Ok(Reply::Json(json!({"SessionId": id})))
        }
        "ssm" if action == "StartSession" => {
            let faults = shared.faults.lock().expect("lab lock").clone();
            let faults = services::ssm::StartSessionFaults {
                denied: faults.start_session_denied,
                agent_not_connected: faults.agent_not_connected,
            };
            json(services::ssm::start_session(account, parameters, &caller.arn, faults))
        }
        "ssm" => json(services::ssm::handle(account, action, parameters, &caller.arn)),
        "logs" => json(services::logs::handle(account, action, parameters, now)),
        "kms" => {
            let denied = shared.faults.lock().expect("lab lock").kms_denied;
            json(services::kms::handle(account, action, parameters, denied))
        }
        "lambda" if action == "ListFunctions" => json(services::lambda::list_functions(
            account,
            parameters["Marker"].as_str(),
            parameters["MaxItems"].as_str().and_then(|m| m.parse().ok()),
        )),
        "lambda" if action == "ListTags" => {
            json(services::lambda::list_tags(account, parameters["Resource"].as_str().unwrap_or_default()))
        }
        "lambda" => {
            let name = parameters["FunctionName"].as_str().unwrap_or_default();
            json(services::lambda::get_function_configuration(account, name))
        }
        _ => Err(ApiError::client("InvalidAction", format!("The action {action} is not valid for this web service."))),
    }
}

/// The AccessDenied IAM would answer when the lab's identity policy does not allow this call
/// (none when no policy is set, it allows the call, or the action is one IAM does not gate).
fn identity_denial(
    shared: &Shared,
    protocol: Protocol,
    caller: &Principal,
    region: &str,
    service: &str,
    action: &str,
    parameters: &Value,
) -> Option<ApiError> {
    if (service, action) == ("sts", "GetCallerIdentity") {
        return None;
    }
    let policy = shared.identity_policy.lock().expect("lab lock");
    let (_, policy) = policy.as_ref()?;
    let iam_action = format!("{service}:{action}");
    let resources = crate::iam::resources_of(service, action, parameters, &caller.account, region);
    let (decision, resource) = policy.decide(&iam_action, &resources);
    let message = crate::iam::denial_message(&caller.arn, &iam_action, resource?, decision);
    Some(match protocol {
        Protocol::Query => ApiError::new(403, "AccessDenied", message),
        Protocol::Rest => ApiError::new(403, "AccessDeniedException", message),
        Protocol::Json => ApiError::client("AccessDeniedException", message),
    })
}

async fn get_identity_policy(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(
        shared.identity_policy.lock().expect("lab lock").as_ref().map_or(Value::Null, |(document, _)| document.clone()),
    )
}

/// Hold every caller to this identity policy (an IAM policy document); 400 when the lab cannot
/// evaluate it.
async fn set_identity_policy(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let document = match serde_json::from_slice::<Value>(&body) {
        Ok(document) => document,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not JSON: {e}")).into_response(),
    };
    match crate::iam::Policy::parse(&document) {
        Ok(policy) => {
            *shared.identity_policy.lock().expect("lab lock") = Some((document.clone(), policy));
            Json(document).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn clear_identity_policy(State(shared): State<Arc<Shared>>) -> StatusCode {
    *shared.identity_policy.lock().expect("lab lock") = None;
    StatusCode::NO_CONTENT
}

fn signature_error(protocol: Protocol, rejection: Rejection) -> ApiError {
    let query = protocol == Protocol::Query;
    match rejection {
        Rejection::Missing => ApiError::new(
            if query { 403 } else { 400 },
            if query { "MissingAuthenticationToken" } else { "MissingAuthenticationTokenException" },
            "Missing Authentication Token",
        ),
        Rejection::UnknownAccessKey => ApiError::new(
            if query { 403 } else { 400 },
            if query { "InvalidClientTokenId" } else { "UnrecognizedClientException" },
            "The security token included in the request is invalid.",
        ),
        Rejection::Malformed(detail) => ApiError::new(
            if query { 403 } else { 400 },
            "IncompleteSignatureException",
            format!("Authorization header is malformed: {detail}"),
        ),
        Rejection::Mismatch => ApiError::new(
            if protocol == Protocol::Json { 400 } else { 403 },
            if query { "SignatureDoesNotMatch" } else { "InvalidSignatureException" },
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ),
    }
}

fn error_response(protocol: Protocol, error: &ApiError, request_id: &str) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = match protocol {
        Protocol::Query => with_headers(
            status,
            "text/xml",
            request_id,
            services::sts::error_xml(&error.code, &error.message, request_id),
        ),
        Protocol::Json => with_headers(
            status,
            "application/x-amz-json-1.1",
            request_id,
            json!({"__type": error.code, "message": error.message}).to_string(),
        ),
        Protocol::Rest => with_headers(
            status,
            "application/json",
            request_id,
            json!({"Type": "User", "message": error.message, "Message": error.message}).to_string(),
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&error.code) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

fn with_headers(status: StatusCode, content_type: &'static str, request_id: &str, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

fn uuid_like(hex: &str) -> String {
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

async fn get_journal(State(shared): State<Arc<Shared>>) -> Json<Vec<JournalEntry>> {
    Json(shared.journal.lock().expect("lab lock").clone())
}

async fn clear_journal(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.journal.lock().expect("lab lock").clear();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.faults.lock().expect("lab lock").clone())
}

async fn set_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            *shared.faults.lock().expect("lab lock") = faults.clone();
            Json(faults).into_response()
        }
        Err(e) => {
            (StatusCode::BAD_REQUEST, Json(json!({"error": format!("bad faults document: {e}")}))).into_response()
        }
    }
}

/// One account-region's services and tasks (`?account=ID&region=R`; default the primary).
async fn get_state(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    let accounts = shared.accounts.lock().expect("lab lock");
    let primary = accounts.primary();
    let (id, region) = (
        query.get("account").map_or(primary.account.as_str(), String::as_str),
        query.get("region").map_or(primary.region.as_str(), String::as_str),
    );
    let Some(account) = accounts.find(id, region) else {
        let error = format!("no account {id} in {region}");
        return (StatusCode::NOT_FOUND, Json(json!({"error": error}))).into_response();
    };
    let services: Vec<Value> = account
        .services
        .iter()
        .map(|s| {
            let target = account.scalable_targets.get(&format!("service/{}/{}", s.cluster, s.name));
            json!({
                "cluster": s.cluster,
                "name": s.name,
                "desired_count": s.desired_count,
                "maximum_percent": s.maximum_percent,
                "minimum_healthy_percent": s.minimum_healthy_percent,
                "deployments": s.deployments.len(),
                "scalable_target": target.map(|t| json!({"min": t.min, "max": t.max})),
            })
        })
        .collect();
    let tasks: Vec<Value> = account.tasks.iter().map(|t| services::ecs::task_json(account, t)).collect();
    Json(json!({"account": account.account, "region": account.region, "services": services, "tasks": tasks}))
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddTasks {
    /// The account and region (default: the primary's).
    account: Option<String>,
    region: Option<String>,
    cluster: String,
    service: String,
    #[serde(default = "one")]
    count: u32,
    /// RUNNING, or STOPPED for a task being replaced that has not finished draining.
    #[serde(default = "running")]
    desired_status: String,
    /// Where in the lifecycle the task is, and stays.
    #[serde(default = "running")]
    last_status: String,
}

fn one() -> u32 {
    1
}

fn running() -> String {
    "RUNNING".into()
}

/// Add tasks to a service's group that the scheduler leaves alone, in the requested state
/// (default RUNNING/RUNNING): a stuck deployment or a manual RunTask, or with
/// `desired_status` STOPPED a replaced task still draining. The way to put two live tasks on
/// one number. Answers the new task ids.
async fn add_tasks(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: AddTasks = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": format!("bad request: {e}")}))).into_response();
        }
    };
    let mut accounts = shared.accounts.lock().expect("lab lock");
    let primary = accounts.primary();
    let id = request.account.clone().unwrap_or_else(|| primary.account.clone());
    let region = request.region.clone().unwrap_or_else(|| primary.region.clone());
    let Some(account) = accounts.list.iter_mut().find(|a| a.account == id && a.region == region) else {
        let error = format!("no account {id} in {region}");
        return (StatusCode::NOT_FOUND, Json(json!({"error": error}))).into_response();
    };
    let Some(index) = account.service_index(&request.cluster, &request.service) else {
        let error = format!("no service {}/{}", request.cluster, request.service);
        return (StatusCode::NOT_FOUND, Json(json!({"error": error}))).into_response();
    };
    let now = now_ms();
    let mut ids = Vec::new();
    for _ in 0..request.count {
        match account.add_pinned_task(index, now, &request.last_status, &request.desired_status) {
            Ok(id) => ids.push(id),
            Err(error) => return (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response(),
        }
    }
    Json(json!({"task_ids": ids})).into_response()
}

/// Every task lifecycle transition the lab applied, creation included, in order.
async fn get_timeline(State(shared): State<Arc<Shared>>) -> Json<Vec<TimelineEntry>> {
    Json(shared.accounts.lock().expect("lab lock").timeline())
}

/// Revoke an account's credentials: its keys and sessions are refused from now on (as a
/// deleted access key is), and so is AssumeRole into its roles.
async fn revoke_account(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(account): axum::extract::Path<String>,
) -> Response {
    let mut accounts = shared.accounts.lock().expect("lab lock");
    if accounts.roles_of(&account).is_none() {
        return (StatusCode::NOT_FOUND, Json(json!({"error": format!("no account {account}")}))).into_response();
    }
    accounts.revoked.insert(account);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_lab/login`: the browser half of `aws login` for the lab's user: a console session's
/// temporary credentials and refresh token (see [`services::signin`]).
async fn login(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let user = shared.principals.lock().expect("lab lock").get(&shared.access_key_id).cloned().expect("the lab's user");
    let (issued, refresh) = console_session(&shared, user);
    Json(services::signin::login_document(&issued, &refresh))
}

/// `user`'s console session, new or refreshed: temporary credentials the lab accepts from now on
/// and the refresh token that renews them once.
fn console_session(shared: &Shared, user: Principal) -> (Issued, String) {
    let (issued, refresh) = services::signin::issue(&mut shared.accounts.lock().expect("lab lock"), &user);
    shared.principals.lock().expect("lab lock").insert(issued.access_key_id.clone(), issued.principal.clone());
    shared.login_sessions.lock().expect("lab lock").insert(refresh.clone(), user);
    (issued, refresh)
}

/// Sign-In's CreateOAuth2Token (`POST /v1/token`): refresh a console session. Authorized by a
/// DPoP proof (its `DPoP` header), not SigV4; journalled as signin/CreateOAuth2Token by the
/// session's identity, without the tokens.
async fn signin_token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let start_ms = now_f64();
    let request_id = uuid_like(&shared.accounts.lock().expect("lab lock").primary_mut().next_id());
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut caller = None;
    let result = services::signin::refresh_grant(&parsed).and_then(|(_client, refresh)| {
        if !headers.contains_key("dpop") {
            return Err(ApiError::client("ValidationException", "a DPoP proof is required"));
        }
        let user = shared.login_sessions.lock().expect("lab lock").shift_remove(refresh);
        let user = user.ok_or_else(services::signin::token_expired)?;
        caller = Some(user.arn.clone());
        let (issued, refresh) = console_session(&shared, user);
        Ok(services::signin::token_document(&issued, &refresh))
    });
    let parameters = json!({"clientId": parsed["clientId"], "grantType": parsed["grantType"]});
    let user_agent = headers.get(header::USER_AGENT).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let who = Caller { arn: caller, user_agent };
    shared.journal_push(who, "signin".into(), "CreateOAuth2Token".into(), parameters, start_ms, result.as_ref().err());
    match result {
        Ok(document) => with_headers(StatusCode::OK, "application/json", &request_id, document.to_string()),
        Err(error) => {
            let code = services::signin::oauth2_code(&error);
            let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
            let body = json!({"error": code, "message": error.message}).to_string();
            let mut response = with_headers(status, "application/json", &request_id, body);
            if let Ok(value) = HeaderValue::from_str(&error.code) {
                response.headers_mut().insert("x-amzn-errortype", value);
            }
            response
        }
    }
}

/// The gateway's websocket: the agent side of an ECS Exec session.
async fn data_channel(
    State(shared): State<Arc<Shared>>,
    State(agents): State<Arc<AgentHub>>,
    axum::extract::Path(session): axum::extract::Path<String>,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let delay = shared.faults.lock().expect("lab lock").data_channel_open_delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    upgrade.on_upgrade(move |socket| agents.serve_socket(shared, session, socket))
}

/// The process table of the lab's exec agents: whether each session's command still runs.
async fn get_processes(State(agents): State<Arc<AgentHub>>) -> Json<Vec<super::agent::ProcessRow>> {
    Json(agents.processes())
}

/// The lab agent's Port sessions, each with its streams (`GET /_lab/port-sessions`).
async fn get_port_sessions(State(agents): State<Arc<AgentHub>>) -> Json<Vec<super::port_registry::PortSessionRow>> {
    Json(agents.ports.sessions())
}

/// The remote hosts Port sessions can reach.
async fn get_remote_hosts(State(agents): State<Arc<AgentHub>>) -> Json<Vec<super::port_registry::RemoteHost>> {
    Json(agents.ports.remote_hosts())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteHostRequest {
    host: String,
    port: u16,
    #[serde(default)]
    kind: super::port_registry::RemoteKind,
}

/// `POST /_lab/remote-hosts {"host": "db.internal", "port": 5432, "kind": "http"|"echo"}`:
/// serve that host:port for remote-host Port sessions from a new listener on 127.0.0.1.
async fn add_remote_host(State(agents): State<Arc<AgentHub>>, body: Bytes) -> Response {
    let request: RemoteHostRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": format!("bad remote host: {e}")}))).into_response();
        }
    };
    match agents.ports.add_remote_host(&request.host, request.port, request.kind).await {
        Ok(host) => Json(host).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteHostKey {
    host: String,
    port: u16,
}

/// `DELETE /_lab/remote-hosts {"host", "port"}`: stop serving it (its port is then refused).
async fn remove_remote_host(State(agents): State<Arc<AgentHub>>, body: Bytes) -> Response {
    match serde_json::from_slice::<RemoteHostKey>(&body) {
        Ok(key) if agents.ports.remove_remote_host(&key.host, key.port) => StatusCode::NO_CONTENT.into_response(),
        Ok(key) => (StatusCode::NOT_FOUND, Json(json!({"error": format!("{}:{} is not served", key.host, key.port)})))
            .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": format!("bad remote host: {e}")}))).into_response(),
    }
}

/// Every log event of every account's groups, in the order they were added:
/// `[{"account", "group", "stream", "timestamp_ms", "message"}]` (the oracle for `evoctl logs`).
async fn get_logs(State(shared): State<Arc<Shared>>) -> Json<Vec<Value>> {
    let accounts = shared.accounts.lock().expect("lab lock");
    let events = accounts
        .list
        .iter()
        .flat_map(|account| {
            account.log_groups.iter().flat_map(move |(group, events)| {
                events.iter().map(move |e| {
                    json!({"account": account.account, "group": group, "stream": e.stream, "timestamp_ms": e.timestamp_ms, "message": e.message})
                })
            })
        })
        .collect();
    Json(events)
}

/// One event as a writer hands it to CloudWatch Logs (`POST /_lab/logs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutLogEvent {
    /// The account (default: the primary).
    account: Option<String>,
    group: String,
    stream: String,
    message: String,
    /// The event's own time, which may be earlier than events already taken (a writer that
    /// sends late); default: now.
    timestamp_ms: Option<u64>,
}

/// Take one event into a log group (created if missing), at the time it carries: a late
/// writer's event, for readers that must not lose it.
async fn put_log_event(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: PutLogEvent = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": format!("bad request: {e}")}))).into_response();
        }
    };
    let mut accounts = shared.accounts.lock().expect("lab lock");
    let id = request.account.clone().unwrap_or_else(|| accounts.primary().account.clone());
    let Some(account) = accounts.list.iter_mut().find(|a| a.account == id) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": format!("no account {id}")}))).into_response();
    };
    let timestamp_ms = request.timestamp_ms.unwrap_or_else(now_ms);
    account.log_groups.entry(request.group).or_default().push(LogEvent {
        stream: request.stream,
        timestamp_ms,
        message: request.message,
    });
    Json(json!({"timestamp_ms": timestamp_ms})).into_response()
}

/// Every exec session token the lab handed out, so tests can prove none leaked anywhere.
async fn get_tokens(State(shared): State<Arc<Shared>>) -> Json<Vec<String>> {
    let accounts = shared.accounts.lock().expect("lab lock");
    let mut tokens = accounts.issued_tokens();
    tokens.extend(
        shared
            .principals
            .lock()
            .expect("lab lock")
            .values()
            .filter_map(|p| p.session_token.as_ref().map(|token| [p.secret.clone(), token.clone()]))
            .flatten(),
    );
    Json(tokens)
}

/// The simulated phone scans a QR code (or types the pairing code): the instance showing it
/// becomes `open`.
async fn phone_scan(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    super::evolution::control::phone_scan(&shared.evolution, &body)
}

/// A WhatsApp message arrives for an open instance.
async fn phone_message(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    super::evolution::control::phone_message(&shared.evolution, &body)
}

/// The network under a paired instance's socket drops (`connecting`, owner kept).
async fn phone_remove(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    super::evolution::control::phone_remove(&shared.evolution, &body)
}

async fn phone_dead(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    super::evolution::control::phone_dead(&shared.evolution, &body)
}

async fn phone_drop(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    super::evolution::control::phone_drop(&shared.evolution, &body)
}

/// The network is back: the dropped socket is `open` again.
async fn phone_reconnect(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    super::evolution::control::phone_reconnect(&shared.evolution, &body)
}

async fn evolution_state(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(shared.evolution.snapshot())
}

async fn evolution_processes(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(shared.evolution.processes_snapshot())
}

/// Per-process switches: expect another API key (401s), fail the next call with a 500, or
/// answer the next call with exactly a given status and body.
async fn evolution_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    super::evolution::control::evolution_faults(&shared.evolution, &body)
}

/// What the lab's webhook receiver answers from now on (`{"status": 0}`: it never answers).
async fn set_receiver(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    shared.evolution.receiver.set_answer(&body)
}

/// The lab as a webhook target: record each delivery (with what it answered and which try it
/// was), its JWT checked against every SecureString parameter of the scenario (the secrets a
/// config can reference).
async fn receive_webhook(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(target): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let secrets: Vec<(String, String)> = shared
        .accounts
        .lock()
        .expect("lab lock")
        .list
        .iter()
        .flat_map(|account| account.parameters.iter())
        .filter(|(_, p)| p.kind == "SecureString")
        .map(|(name, p)| (name.clone(), p.value.clone()))
        .collect();
    shared.evolution.receiver.receive(target, &headers, &body, &secrets).await
}

async fn get_webhooks(State(shared): State<Arc<Shared>>) -> Json<Vec<Value>> {
    Json(shared.evolution.receiver.records())
}

async fn clear_webhooks(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.evolution.receiver.clear();
    StatusCode::NO_CONTENT
}
