//! The Evolution API 2.3.7 routes the stand-in serves, in the real server's order: body-parser
//! first (a malformed JSON body is a 400 whatever the route), then the route, then the guards
//! (`instanceExistsGuard`: the name held in memory or a row of that name in the database, any
//! client; `instanceLoggedGuard`: create's taken name; the API key), then the schema
//! (`dataValidate`) and the controller. Status codes and bodies follow 2.3.7, including its
//! quirks: `message` as a string, an array or an array of arrays; HTTP 200 with
//! `{"error":true,"message":"[object Object]"}`; rows of another client name answered as rows
//! this process does not hold.
//!
//! With WhatsApp black-holed (`--whatsapp black-hole`) the calls that wait on WhatsApp answer as
//! the real 2.3.7 does with its SYNs dropped: `GET /` after [`BLACK_HOLE_WELCOME`] (it fetches
//! `web.whatsapp.com/sw.js` with no timeout on every request, `src/utils/fetchLatestWaWebVersion.ts`,
//! then falls back to the version baked into Baileys), and create with `qrcode` and connect of a
//! `close` instance never (`createClient` awaits the same fetch before the socket).

use super::db::{Row, js_truthy};
use super::js;
use super::process::{CONNECT_WAIT_MS, CREATE_WAIT_MS, Logout, Process, SetError};
use super::schema;
use crate::state::now_ms;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long `GET /` takes with WhatsApp black-holed (measured against the real 2.3.7: the
/// kernel's SYN retries decide; not scaled, as nothing of Evolution's own waits is in it).
pub const BLACK_HOLE_WELCOME: Duration = Duration::from_secs(135);

fn black_holed(process: &Process) -> bool {
    process.options.whatsapp == super::process::WhatsApp::BlackHole
}

/// A call waiting on WhatsApp's web version while every SYN is dropped: it never answers.
async fn hang() -> Response {
    std::future::pending::<()>().await;
    unreachable!("a pending future never resolves")
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Internal Server Error",
    }
}

/// `{"status", "error", "response": {"message"}}` as the error middleware writes it.
fn error(status: u16, message: Value) -> Response {
    let body = json!({"status": status, "error": reason(status), "response": {"message": message}});
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response()
}

fn ok(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    error(401, json!("Unauthorized"))
}

fn object_error() -> Response {
    ok(200, json!({"error": true, "message": "[object Object]"}))
}

/// Express's `decodeURIComponent` of a path segment (`+` stays).
fn decode_segment(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Some(value) =
                std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `String(value)` as a template literal shows a body field.
fn js_string(value: Option<&Value>) -> String {
    match value {
        None => "undefined".into(),
        Some(Value::Null) => "null".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => js::number_text(n.as_f64().unwrap_or(0.0)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| if i.is_null() { String::new() } else { js_string(Some(i)) })
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Object(_)) => "[object Object]".into(),
    }
}

/// What one request carries, parsed once.
struct Request {
    method: String,
    /// `req.originalUrl` (path and query as sent).
    url: String,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    key: Option<String>,
    host: String,
    body: Value,
}

impl Request {
    fn query(&self, name: &str) -> Option<String> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

/// 2.4.0-rc2's licence routes and gate (`src/licensing/runtime.ts:311-351`,
/// `src/api/routes/license.router.ts` at that tag): `/license/*` is mounted before the gate; the
/// gate lets `/`, the manager, assets and a few fixed paths through and answers every other
/// path 503 `LICENSE_REQUIRED` until the database holds a licence. `None`: the request goes on.
fn licence_gate(process: &Process, path: &str, query: Option<&str>, headers: &HeaderMap) -> Option<Response> {
    let activated = process.options.activated;
    let mut db = process.db.lock().expect("lab lock");
    let instance_id = db.licence_instance_id.get_or_insert_with(|| uuid::Uuid::new_v4().to_string()).clone();
    let active = activated || db.licence_active;
    match path {
        "/license/status" => {
            return Some(ok(
                200,
                json!({"status": if active { "active" } else { "inactive" }, "instance_id": instance_id}),
            ));
        }
        "/license/activate" => {
            if active {
                return Some(ok(200, json!({"status": "active", "message": "License is already active"})));
            }
            let code = query
                .unwrap_or("")
                .split('&')
                .find_map(|p| p.strip_prefix("code="))
                .map(crate::sigv4::percent_decode)
                .unwrap_or_default();
            if code.is_empty() {
                return Some(ok(
                    400,
                    json!({"error": "Missing code parameter", "message": "Provide ?code=AUTHORIZATION_CODE from the registration callback."}),
                ));
            }
            // The licensing server's verdict, as the lab models it: a code naming itself
            // invalid or expired is refused.
            if code.contains("invalid") || code.contains("expired") {
                return Some(ok(
                    400,
                    json!({"error": "Invalid or expired code", "details": "invalid or expired authorization code"}),
                ));
            }
            db.licence_active = true;
            return Some(ok(200, json!({"status": "active", "message": "License activated successfully!"})));
        }
        _ => {}
    }
    let exempt = matches!(path, "/" | "/health" | "/server/ok" | "/favicon.ico" | "/license/register" | "/ws")
        || ["/manager", "/assets", "/store"].iter().any(|p| path.starts_with(p))
        || [".svg", ".css", ".js", ".png", ".ico", ".woff", ".woff2", ".ttf", ".map"]
            .iter()
            .any(|s| path.to_ascii_lowercase().ends_with(s));
    if exempt || active {
        return None;
    }
    let scheme = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).unwrap_or("http");
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("");
    let manager = format!("{scheme}://{host}/manager/login");
    let docs = "https://docs.evolutionfoundation.com.br/licensing";
    Some(ok(
        503,
        json!({
            "error": "service not activated",
            "code": "LICENSE_REQUIRED",
            "register_url": manager,
            "instance_id": instance_id,
            "docs_url": docs,
            "message": format!("This Evolution API instance is not activated. Open {manager} to activate, or set AUTHENTICATION_API_KEY in your .env with a valid licensing key. Docs: {docs}"),
        }),
    ))
}

/// Route one request the way the Express app would.
pub async fn handle(process: Arc<Process>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    {
        let mut switches = process.switches.lock().expect("lab lock");
        if let Some(message) = switches.fail_next.take() {
            return error(500, json!(message));
        }
        if let Some((status, body)) = switches.respond_next.take() {
            return ok(status, body);
        }
    }
    if process.options.version == super::process::Version::V240Rc2
        && let Some(response) = licence_gate(&process, uri.path(), uri.query(), &headers)
    {
        return response;
    }
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    let body = if is_json && !body.is_empty() {
        let text = String::from_utf8_lossy(&body);
        if let Some(message) = js::body_parser_error(&text) {
            return ok(400, json!({"status": 400, "error": "Internal Server Error", "response": {"message": message}}));
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => value,
            Err(e) => {
                return ok(
                    400,
                    json!({"status": 400, "error": "Internal Server Error", "response": {"message": e.to_string()}}),
                );
            }
        }
    } else {
        json!({})
    };
    let path = uri.path();
    let trimmed = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
    let request = Request {
        method: method.as_str().to_owned(),
        url: uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| path.to_owned()),
        segments: trimmed.trim_start_matches('/').split('/').map(decode_segment).collect(),
        query: uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .map(|(k, v)| (crate::sigv4::percent_decode(k), crate::sigv4::percent_decode(v)))
            .collect(),
        key: headers.get("apikey").and_then(|v| v.to_str().ok()).map(str::to_owned),
        host: headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("localhost").to_owned(),
        body,
    };
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", [""]) => {
            if black_holed(&process) {
                tokio::time::sleep(BLACK_HOLE_WELCOME).await;
            }
            welcome(&process, &request)
        }
        ("GET", ["metrics"]) if process.config.metrics_enabled => metrics(&process, &headers),
        (_, ["manager", ..]) if !process.config.disable_manager => manager(&request, path),
        ("POST", ["verify-creds"]) => {
            if global(&process, &request) {
                ok(200, json!({"status": 200, "message": "Credentials are valid"}))
            } else {
                unauthorized()
            }
        }
        ("POST", ["instance", "create"]) => create(&process, &request).await,
        ("GET", ["instance", "fetchInstances"]) => fetch_instances(&process, &request),
        (method, ["instance", action, name]) if expected(action) == Some(method) => {
            if let Err(response) = guard(&process, &request, name) {
                return *response;
            }
            match *action {
                "connect" => connect(&process, name, request.query("number").filter(|n| !n.is_empty())).await,
                "connectionState" => ok(200, connection_state(&process, name)),
                "restart" => process.restart(name).map_or_else(object_error, |answer| ok(200, answer)),
                "logout" => match process.logout(name) {
                    Logout::NotConnected => error(400, json!([format!("The \"{name}\" instance is not connected")])),
                    Logout::ConnectionClosed => error(500, json!(["Error: Connection Closed"])),
                    Logout::NotHeld | Logout::Done => ok(
                        200,
                        json!({"status": "SUCCESS", "error": false, "response": {"message": "Instance logged out"}}),
                    ),
                },
                "delete" => delete(&process, name),
                _ => not_found(&request),
            }
        }
        ("POST", ["webhook", "set", name]) => {
            if let Err(response) = guard(&process, &request, name) {
                return *response;
            }
            let errors = schema::validate(&schema::webhook_schema(), &request.body);
            if !errors.is_empty() {
                return error(400, json!([errors]));
            }
            let webhook = request.body.get("webhook").and_then(Value::as_object).cloned().unwrap_or_default();
            match process.set_webhook(name, &webhook) {
                Ok(row) => ok(201, row),
                Err(SetError::Type(message) | SetError::Prisma(message)) => error(500, json!(message)),
            }
        }
        ("GET", ["webhook", "find", name]) => {
            if let Err(response) = guard(&process, &request, name) {
                return *response;
            }
            let errors = schema::validate(&schema::instance_schema(), &request.body);
            if !errors.is_empty() {
                return error(400, json!([errors]));
            }
            ok(200, process.find_webhook(name))
        }
        _ => not_found(&request),
    }
}

/// The Manager's built `index.html` at 2.3.7 (`manager/dist/index.html`).
pub const MANAGER_INDEX: &str = r#"<!doctype html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <link rel="icon" type="image/png" href="https://evolution-api.com/files/evo/favicon.svg" />
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>Evolution Manager</title>
    <script type="module" crossorigin src="/assets/index-CO3NSIFj.js"></script>
    <link rel="stylesheet" crossorigin href="/assets/index-DsIrum0U.css">
  </head>
  <body>
    <div id="root"></div>
  </body>
</html>
"#;

/// `router.use('/manager', ViewsRouter)` (`src/api/routes/index.router.ts:163`,
/// `view.router.ts`): `express.static(manager/dist)`, then `index.html` for every other path
/// (the single-page app routes itself). serve-static redirects the bare mount path to its
/// directory (`/manager` → 301 `/manager/`); any method reaches the catch-all `get('*')` only as
/// GET or HEAD, the rest fall through to the 404.
fn manager(request: &Request, path: &str) -> Response {
    if !matches!(request.method.as_str(), "GET" | "HEAD") {
        return not_found(request);
    }
    if path == "/manager" {
        let query = request.url.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
        let location = format!("/manager/{query}");
        let body = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Redirecting</title>\n</head>\n<body>\n<pre>Redirecting to {location}</pre>\n</body>\n</html>\n"
        );
        return (
            StatusCode::MOVED_PERMANENTLY,
            [("location", location.as_str()), ("content-type", "text/html; charset=UTF-8")],
            body,
        )
            .into_response();
    }
    (StatusCode::OK, [("content-type", "text/html; charset=UTF-8")], MANAGER_INDEX).into_response()
}

/// `GET /metrics` when `PROMETHEUS_METRICS=true` (`src/api/routes/index.router.ts:47-160`). The
/// IP allow-list middleware is mounted when `METRICS_ALLOWED_IPS` is set but never refuses at
/// 2.3.7 (it compares an array with `=== 0`, line 58); basic auth answers 500 when either
/// credential is unset or "", 401 without a Basic header or with other credentials.
fn metrics(process: &Process, headers: &HeaderMap) -> Response {
    let config = &process.config;
    let text = |status: StatusCode, body: &str| {
        (status, [("content-type", "text/html; charset=utf-8")], body.to_owned()).into_response()
    };
    if config.metrics_auth_required {
        let (Some(user), Some(password)) = (
            config.metrics_user.as_deref().filter(|u| !u.is_empty()),
            config.metrics_password.as_deref().filter(|p| !p.is_empty()),
        ) else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Metrics authentication not configured");
        };
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        let Some(encoded) = auth.and_then(|a| a.strip_prefix("Basic ")) else {
            let mut response = text(StatusCode::UNAUTHORIZED, "Authentication required");
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Basic realm=\"Evolution API Metrics\""),
            );
            return response;
        };
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).unwrap_or_default();
        let decoded = String::from_utf8_lossy(&decoded);
        // `credentials.split(':')`: a password with a colon never matches.
        let mut parts = decoded.split(':');
        let (given_user, given_pass) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if given_user != user || given_pass != password {
            return text(StatusCode::UNAUTHORIZED, "Invalid credentials");
        }
    }
    let escape = |value: &str| value.replace('\\', "\\\\").replace('\n', "\\n").replace('"', "\\\"");
    let version = match process.options.version {
        super::process::Version::V237 => "2.3.7",
        super::process::Version::V240Rc2 => "2.4.0",
    };
    let mut lines = vec![
        "# HELP evolution_environment_info Environment information".to_owned(),
        "# TYPE evolution_environment_info gauge".to_owned(),
        format!(
            "evolution_environment_info{{version=\"{}\",clientName=\"{}\",serverUrl=\"{}\"}} 1",
            escape(version),
            escape(&config.client_name),
            escape(config.server_url.as_deref().unwrap_or(""))
        ),
    ];
    let names = process.held_names();
    lines.push("# HELP evolution_instances_total Total number of instances".into());
    lines.push("# TYPE evolution_instances_total gauge".into());
    lines.push(format!("evolution_instances_total {}", names.len()));
    lines.push("# HELP evolution_instance_up 1 if instance state is open, else 0".into());
    lines.push("# TYPE evolution_instance_up gauge".into());
    lines.push("# HELP evolution_instance_state Instance state as a labelled metric".into());
    lines.push("# TYPE evolution_instance_state gauge".into());
    for name in names {
        let state = process.state_of(&name).unwrap_or("unknown");
        let integration = process.integration_of(&name).unwrap_or_default();
        let up = u8::from(state == "open");
        lines.push(format!(
            "evolution_instance_up{{instance=\"{}\",integration=\"{}\"}} {up}",
            escape(&name),
            escape(&integration)
        ));
        lines.push(format!(
            "evolution_instance_state{{instance=\"{}\",integration=\"{}\",state=\"{}\"}} 1",
            escape(&name),
            escape(&integration),
            escape(state)
        ));
    }
    let body = lines.join("\n") + "\n";
    (
        StatusCode::OK,
        [
            ("content-type", "text/plain; version=0.0.4; charset=utf-8"),
            ("cache-control", "no-cache, no-store, must-revalidate"),
        ],
        body,
    )
        .into_response()
}

fn expected(action: &str) -> Option<&'static str> {
    match action {
        "connect" | "connectionState" => Some("GET"),
        "logout" | "delete" => Some("DELETE"),
        "restart" => Some("POST"),
        _ => None,
    }
}

fn not_found(request: &Request) -> Response {
    error(404, json!([format!("Cannot {} {}", request.method, request.url)]))
}

fn welcome(process: &Process, request: &Request) -> Response {
    let mut body = json!({
        "status": 200,
        "message": "Welcome to the Evolution API, it is working!",
        // 2.4.0-rc1 and rc2 both say 2.4.0 (their package.json).
        "version": match process.options.version {
            super::process::Version::V237 => "2.3.7",
            super::process::Version::V240Rc2 => "2.4.0",
        },
        "clientName": process.config.client_name,
        "documentation": "https://doc.evolution-api.com",
        "whatsappWebVersion": "2.3000.1027934701",
    });
    if !process.config.disable_manager {
        body["manager"] = json!(format!("http://{}/manager", request.host));
    }
    ok(200, body)
}

/// The global key (and the process is not told to refuse every key).
fn global(process: &Process, request: &Request) -> bool {
    !process.switches.lock().expect("lab lock").reject_key
        && request.key.as_deref() == Some(process.config.api_key.as_str())
}

/// `getInstance`: held in memory, or a row by that name in the database (any client).
fn exists(process: &Process, name: &str) -> bool {
    process.holds(name) || process.db.lock().expect("lab lock").rows.contains_key(name)
}

/// `instanceExistsGuard` then `authGuard.apikey` for a route with `:instanceName`.
fn guard(process: &Process, request: &Request, name: &str) -> Result<(), Box<Response>> {
    if !exists(process, name) {
        return Err(Box::new(error(404, json!([format!("The \"{name}\" instance does not exist")]))));
    }
    let Some(key) = request.key.as_deref() else { return Err(Box::new(unauthorized())) };
    if process.switches.lock().expect("lab lock").reject_key {
        return Err(Box::new(unauthorized()));
    }
    if key == process.config.api_key {
        return Ok(());
    }
    let token_matches =
        process.db.lock().expect("lab lock").rows.get(name).is_some_and(|r| r.token.as_deref() == Some(key));
    if token_matches { Ok(()) } else { Err(Box::new(unauthorized())) }
}

fn connection_state(process: &Process, name: &str) -> Value {
    let mut instance = json!({"instanceName": name});
    if let Some(state) = process.state_of(name) {
        instance["state"] = json!(state);
    }
    json!({"instance": instance})
}

async fn connect(process: &Arc<Process>, name: &str, number: Option<String>) -> Response {
    match process.state_of(name) {
        None => object_error(),
        Some("open") => ok(200, connection_state(process, name)),
        Some("connecting") => ok(200, process.shown_qr(name).unwrap_or_else(|| json!({"count": 0}))),
        Some(_) if black_holed(process) => hang().await,
        Some(_) => {
            let (held, started) = (process.qr_json(name), now_ms());
            if process.connect_socket(name, number).is_err() {
                return object_error();
            }
            tokio::time::sleep(process.scaled_duration(CONNECT_WAIT_MS)).await;
            let answer = process.qr_after_start(name, held, started, CONNECT_WAIT_MS);
            ok(200, answer.unwrap_or_else(|| json!({"count": 0})))
        }
    }
}

fn delete(process: &Arc<Process>, name: &str) -> Response {
    let state = process.state_of(name);
    if matches!(state, Some("connecting" | "open")) {
        match process.logout(name) {
            Logout::ConnectionClosed | Logout::NotConnected => return error(400, json!(["[object Object]"])),
            Logout::Done | Logout::NotHeld => {}
        }
    }
    if let Some(id) = process.id_of(name) {
        process.emit_named(name, "instance.delete", json!({"instanceName": name, "instanceId": id}));
    }
    process.spawn_removal(name);
    ok(200, json!({"status": "SUCCESS", "error": false, "response": {"message": "Instance deleted"}}))
}

fn fetch_instances(process: &Process, request: &Request) -> Response {
    let Some(key) = request.key.as_deref() else { return unauthorized() };
    let rejecting = process.switches.lock().expect("lab lock").reject_key;
    let client = process.config.client_name.clone();
    let wanted = request.query("instanceName").filter(|n| !n.is_empty());
    let wanted_id = request.query("instanceId").filter(|n| !n.is_empty());
    // What the process holds, read before the database is locked (the lock order is memory,
    // then database).
    let held = process.held_names();
    let db = process.db.lock().expect("lab lock");
    let names: Option<Vec<String>> = if !rejecting && key == process.config.api_key {
        if let Some(id) = wanted_id.clone().or_else(|| request.query("number").filter(|n| !n.is_empty())) {
            let by_id = wanted_id.is_some();
            let found =
                db.rows.values().find(|r| if by_id { r.id == id } else { r.number.as_deref() == Some(id.as_str()) });
            match found {
                Some(row) => Some(vec![row.name.clone()]),
                None => return error(404, json!([format!("Instance \"{id}\" not found")])),
            }
        } else {
            wanted.map(|name| vec![name])
        }
    } else {
        // An instance token: any row with it (every client), and only where the auth-state store
        // is the database.
        if rejecting || !process.config.save_data_instance || !db.rows.values().any(|r| r.token.as_deref() == Some(key))
        {
            return unauthorized();
        }
        let names: Vec<String> = db
            .rows
            .values()
            .filter(|r| r.token.as_deref() == Some(key))
            .filter(|r| wanted.as_ref().is_none_or(|n| &r.name == n))
            .filter(|r| wanted_id.as_ref().is_none_or(|i| &r.id == i))
            .map(|r| r.name.clone())
            .collect();
        if names.is_empty() {
            return unauthorized();
        }
        Some(names)
    };
    if let Some(names) = &names {
        let missing: Vec<&String> = names.iter().filter(|n| !held.contains(n)).collect();
        if !missing.is_empty() {
            let plural = if missing.len() > 1 { "s" } else { "" };
            let joined = missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            return error(404, json!([format!("Instance{plural} \"{joined}\" not found")]));
        }
    }
    let rows: Vec<Value> = db
        .rows
        .values()
        .filter(|r| r.client_name.as_deref() == Some(client.as_str()))
        .filter(|r| names.as_ref().is_none_or(|n| n.contains(&r.name)))
        .map(Row::row_json)
        .collect();
    ok(200, Value::Array(rows))
}

async fn create(process: &Arc<Process>, request: &Request) -> Response {
    let body = &request.body;
    let field = |key: &str| body.get(key);
    let name_value = field("instanceName");
    // instanceLoggedGuard: the name must not be taken (a missing name matches any row).
    let taken = match name_value {
        None => process.holds("undefined") || !process.db.lock().expect("lab lock").rows.is_empty(),
        Some(Value::String(name)) => exists(process, name),
        Some(other) => {
            let message = format!(
                "PrismaClientValidationError: Invalid value for argument `name`: expected String, provided {}.",
                match other {
                    Value::Number(_) => "Int",
                    Value::Bool(_) => "Boolean",
                    Value::Null => "Null",
                    Value::Array(_) => "List",
                    _ => "Object",
                }
            );
            return error(500, json!([message]));
        }
    };
    if taken {
        return error(403, json!([format!("This name \"{}\" is already in use.", js_string(name_value))]));
    }
    if !global(process, request) {
        return unauthorized();
    }
    let errors = schema::validate(&schema::instance_schema(), body);
    if !errors.is_empty() {
        return error(400, json!([errors]));
    }
    let integration = field("integration").and_then(Value::as_str).unwrap_or("").to_owned();
    let token = field("token").filter(|t| js_truthy(t)).and_then(Value::as_str).map(str::to_owned);
    if integration == "WHATSAPP-BUSINESS" && token.is_none() {
        return error(400, json!(["token is required"]));
    }
    if !matches!(integration.as_str(), "WHATSAPP-BAILEYS" | "WHATSAPP-BUSINESS" | "EVOLUTION") {
        return error(400, json!(["Invalid integration"]));
    }
    let Some(name) = name_value.and_then(Value::as_str).map(str::to_owned) else {
        return error(400, json!(["Foreign key constraint violated on the constraint: `Setting_instanceId_fkey`"]));
    };
    let now = now_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let hash = token.unwrap_or_else(|| uuid::Uuid::new_v4().to_string().to_uppercase());
    let number = field("number").and_then(Value::as_str).map(str::to_owned);
    let mut row = Row::new(id.clone(), &name, hash.clone(), &process.config.client_name, &integration, now);
    row.number = number.clone();
    row.business_id = field("businessId").and_then(Value::as_str).map(str::to_owned);
    process.add_instance(row);
    process.arm_del_timer(&name);
    let fail = |message: String| {
        process.spawn_removal(&name);
        error(400, json!([message]))
    };
    // eventManager.setInstance: the webhook, `enabled` forced on.
    if let Some(webhook) = field("webhook").filter(|w| js_truthy(w)) {
        let mut fields = serde_json::Map::new();
        fields.insert("enabled".into(), json!(true));
        if let Some(object) = webhook.as_object() {
            for key in ["events", "url", "headers", "base64", "byEvents"] {
                if let Some(value) = object.get(key) {
                    fields.insert(key.into(), value.clone());
                }
            }
        }
        if let Err(SetError::Type(message) | SetError::Prisma(message)) = process.set_webhook(&name, &fields) {
            return fail(message);
        }
    }
    process.emit_named(&name, "instance.create", json!({"instanceName": name, "instanceId": id}));
    if ["proxyHost", "proxyPort", "proxyProtocol"].iter().all(|k| field(k).is_some_and(js_truthy)) {
        return fail("Invalid proxy".into());
    }
    let flag = |key: &str| json!(field(key) == Some(&Value::Bool(true)));
    let text = |key: &str| field(key).filter(|v| js_truthy(v)).cloned().unwrap_or(json!(""));
    let settings = json!({
        "rejectCall": flag("rejectCall"),
        "msgCall": text("msgCall"),
        "groupsIgnore": flag("groupsIgnore"),
        "alwaysOnline": flag("alwaysOnline"),
        "readMessages": flag("readMessages"),
        "readStatus": flag("readStatus"),
        "syncFullHistory": flag("syncFullHistory"),
        "wavoipToken": text("wavoipToken"),
    });
    process.create_setting(&name, settings.clone());
    let (mut webhook_wa_business, mut access_token_wa_business) = (Value::Null, json!(""));
    if integration == "WHATSAPP-BUSINESS" {
        if number.is_none() {
            return fail("number is required".into());
        }
        webhook_wa_business =
            json!(format!("{}/webhook/meta", process.config.server_url.as_deref().unwrap_or("undefined")));
        access_token_wa_business = json!(process.config.wa_business_token);
    }
    if ["chatwootAccountId", "chatwootToken", "chatwootUrl"].iter().all(|k| field(k).is_some_and(js_truthy)) {
        return fail("Chatwoot is not enabled".into());
    }
    let mut qrcode = None;
    if field("qrcode").is_some_and(js_truthy) && integration == "WHATSAPP-BAILEYS" {
        if black_holed(process) {
            return hang().await;
        }
        let (held, started) = (process.qr_json(&name), now_ms());
        if let Err(message) = process.connect_socket(&name, number.clone()) {
            return fail(message);
        }
        tokio::time::sleep(process.scaled_duration(CREATE_WAIT_MS)).await;
        let answer = process.qr_after_start(&name, held, started, CREATE_WAIT_MS);
        qrcode = Some(answer.unwrap_or_else(|| json!({"count": 0})));
    }
    let status = process.state_of(&name).unwrap_or("close");
    let webhook = field("webhook").and_then(Value::as_object);
    let mut webhook_echo = serde_json::Map::new();
    for (key, out) in [
        ("url", "webhookUrl"),
        ("headers", "webhookHeaders"),
        ("byEvents", "webhookByEvents"),
        ("base64", "webhookBase64"),
    ] {
        if let Some(value) = webhook.and_then(|w| w.get(key)) {
            webhook_echo.insert(out.into(), value.clone());
        }
    }
    let enabled_echo = |key: &str| match field(key).and_then(|v| v.get("enabled")) {
        Some(value) => json!({"enabled": value}),
        None => json!({}),
    };
    let mut response = json!({
        "instance": {"instanceName": name, "instanceId": id, "integration": integration,
                     "webhookWaBusiness": webhook_wa_business, "accessTokenWaBusiness": access_token_wa_business,
                     "status": status},
        "hash": hash,
        "webhook": webhook_echo,
        "websocket": enabled_echo("websocket"),
        "rabbitmq": enabled_echo("rabbitmq"),
        "nats": enabled_echo("nats"),
        "sqs": enabled_echo("sqs"),
        "settings": settings,
    });
    if let Some(qrcode) = qrcode {
        response["qrcode"] = qrcode;
    }
    ok(201, response)
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_decode_as_express() {
        assert_eq!(super::decode_segment("alinhou%20prod+x"), "alinhou prod+x");
        assert_eq!(super::decode_segment("100%"), "100%");
    }

    #[test]
    fn body_fields_print_as_template_literals() {
        use serde_json::json;
        assert_eq!(super::js_string(None), "undefined");
        assert_eq!(super::js_string(Some(&json!(null))), "null");
        assert_eq!(super::js_string(Some(&json!(5))), "5");
        assert_eq!(super::js_string(Some(&json!({"a": 1}))), "[object Object]");
    }
}
