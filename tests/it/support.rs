//! Test support: start the lab, run evoctl against it with a clean environment, talk to the
//! lab's control API, and wait on conditions with deadlines (never bare sleeps).

use assert_cmd::Command;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub const EVOCTL: &str = env!("CARGO_BIN_EXE_evoctl");
/// The lab binary, built beside evoctl by `cargo test --workspace` (the lab is its own crate).
pub const EVOCTL_LAB: &str = concat!(env!("CARGO_BIN_EXE_evoctl"), "-lab");

/// A running lab, stopped on drop.
pub struct Lab {
    child: Child,
    pub dir: tempfile::TempDir,
    pub ready: Value,
}

impl Lab {
    /// Start a scenario with fast timings.
    pub fn start(scenario: &str) -> Lab {
        Lab::start_with(scenario, &[])
    }

    pub fn start_with(scenario: &str, extra: &[&str]) -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let ready_file = dir.path().join("ready.json");
        let child = std::process::Command::new(EVOCTL_LAB)
            .args(["serve", "--scenario", scenario, "--ready-file"])
            .arg(&ready_file)
            .args(["--task-start-ms", "150", "--task-stop-ms", "100", "--agent-start-ms", "60", "--tick-ms", "5"])
            .args(["--agent-delay-ms", "50", "--evolution-time-scale", "0.01"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn evoctl-lab");
        let mut lab = Lab { child, dir, ready: Value::Null };
        let ready = wait_until(Duration::from_secs(30), "the lab's ready file", || {
            std::fs::read_to_string(&ready_file).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
        });
        lab.ready = ready;
        lab
    }

    /// The environment the lab hands out (AWS_ENDPOINT_URL, credentials, region, EVOCTL_CONFIG).
    pub fn env(&self) -> Vec<(String, String)> {
        self.ready["env"]
            .as_object()
            .expect("env map")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_owned()))
            .collect()
    }

    /// `evoctl` with only the lab's environment (no ~/.aws, no AWS_PROFILE), run in the lab's dir.
    pub fn evoctl(&self) -> Command {
        let mut command = clean_command(EVOCTL, self.dir.path());
        command.envs(self.env());
        command
    }

    /// `evoctl` as a plain process (for spawning and streaming).
    pub fn evoctl_process(&self) -> std::process::Command {
        let mut command = clean_process(EVOCTL, self.dir.path());
        command.envs(self.env());
        command
    }

    /// The simulated phone scans the QR `name` shows now.
    pub fn scan(&self, name: &str) {
        let code = self.evolution_instance(name)["qr"]["code"].as_str().expect("a QR is shown").to_owned();
        let base = self.ready["control"].as_str().expect("control url");
        let body = serde_json::json!({"code": code}).to_string();
        let (status, text) = http("POST", &format!("{base}/phone/scan"), Some(body));
        // The lab's own auto-scanning phone (`--auto-scan-after-ms`) may have scanned it between
        // the read and this scan: then it is linked all the same.
        let linked = || self.evolution_instance(name)["state"] == "open";
        assert!(status < 300 || (status == 404 && linked()), "POST /phone/scan: {status} {text}");
    }

    /// `evoctl instance create production`, then the phone links it: the production number is live.
    pub fn link_production(&self) {
        let output = self.evoctl().args(["instance", "create", "production"]).output().expect("evoctl runs");
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        self.scan("alinhou-production");
    }

    /// The lab's Evolution instance row named `name` (live state, current QR, webhook), or null.
    pub fn evolution_instance(&self, name: &str) -> Value {
        row_named(&self.control("GET", "/evolution", None), name)
    }

    pub fn config_path(&self) -> PathBuf {
        PathBuf::from(self.ready["config"].as_str().expect("config path"))
    }

    pub fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let base = self.ready["control"].as_str().expect("control url");
        let (status, text) = http(method, &format!("{base}{path}"), body.map(Value::to_string));
        assert!(status < 300, "{method} {path}: {status} {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("control JSON") }
    }

    /// Stop the lab now (its port then refuses connections).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait until every live task is RUNNING and no exec agent is still starting.
    pub fn wait_settled(&self) {
        wait_until(Duration::from_secs(20), "every live task RUNNING with its exec agent started", || {
            let output = self.evoctl().args(["--output", "json", "status"]).output().expect("evoctl runs");
            let status: Value = serde_json::from_slice(&output.stdout).ok()?;
            let settled = status["environments"].as_array()?.iter().all(|env| {
                env["tasks"].as_array().is_some_and(|tasks| {
                    tasks.iter().all(|t| t["last_status"] == "RUNNING" && t["exec_agent"] != "PENDING")
                })
            });
            settled.then_some(())
        });
    }

    /// A directory holding a `session-manager-plugin` shell script with this body.
    pub fn plugin_script(&self, dir_name: &str, body: &str) -> PathBuf {
        let dir = self.dir.path().join(dir_name);
        std::fs::create_dir_all(&dir).expect("plugin dir");
        let script = dir.join("session-manager-plugin");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).expect("plugin script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        dir
    }

    /// A directory holding `session-manager-plugin`, which runs the lab's stand-in plugin.
    pub fn fake_plugin_dir(&self) -> PathBuf {
        self.plugin_script("plugin-bin", &format!("exec '{EVOCTL_LAB}' fake-plugin \"$@\""))
    }

    /// The id of the first task in the lab's state (the only one in most scenarios).
    pub fn first_task_id(&self) -> String {
        let state = self.control("GET", "/state", None);
        let arn = state["tasks"][0]["taskArn"].as_str().expect("a task");
        arn.rsplit('/').next().expect("task id").to_owned()
    }

    /// The lab's task whose id (or ARN) ends in `id`, in DescribeTasks' shape (`lastStatus`,
    /// `stopCode`, `stoppedReason`, …); panics when the lab has none.
    pub fn task(&self, id: &str) -> Value {
        let state = self.control("GET", "/state", None);
        let tasks = state["tasks"].as_array().expect("task list");
        let found = tasks.iter().find(|t| t["taskArn"].as_str().expect("task ARN").ends_with(id)).cloned();
        found.unwrap_or_else(|| panic!("{}: no task {id} in the lab", self.ready["scenario"]))
    }

    /// `evoctl` spawned with its stdout and stderr piped (for signals, pauses, closed pipes).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.evoctl_process().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn evoctl")
    }

    pub fn journal(&self) -> Vec<Value> {
        self.control("GET", "/journal", None).as_array().expect("journal array").clone()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Every test's lab: no session token ever reaches the journal (what CloudTrail records),
        // and every command evoctl ran is the one small bootstrap.
        if !std::thread::panicking() && self.child.try_wait().ok().flatten().is_none() {
            let entries = self.journal();
            self.assert_command_strings_are_the_bootstrap(&entries);
            let journal = serde_json::to_string(&entries).expect("journal serialises");
            for token in self.control("GET", "/tokens", None).as_array().expect("token list") {
                assert!(!journal.contains(token.as_str().expect("token")), "a session token reached the journal");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The largest command string evoctl may send (CloudTrail records it; `ps` shows it).
const MAX_COMMAND_BYTES: usize = 1024;

/// The bootstrap of the first evoctl command string this test process saw: every other one must
/// be the same, but for its nonce.
static BOOTSTRAP: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The bootstrap every evoctl command string of this whole test run must carry: the first one
/// seen. Under cargo-nextest each test is a process of its own, so the first is kept in a file
/// named by the run (`NEXTEST_RUN_ID`), created atomically by whichever test gets there first;
/// under `cargo test` the process is the run.
fn the_runs_bootstrap(seen: &str) -> String {
    let Ok(run) = std::env::var("NEXTEST_RUN_ID") else {
        return BOOTSTRAP.get_or_init(|| seen.to_owned()).clone();
    };
    let directory = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = directory.join(format!("bootstrap-{run}"));
    if let Ok(first) = std::fs::read_to_string(&path) {
        return first;
    }
    let mut file = tempfile::NamedTempFile::new_in(directory).expect("a temporary file in CARGO_TARGET_TMPDIR");
    file.write_all(seen.as_bytes()).expect("the bootstrap is written");
    match file.persist_noclobber(&path) {
        Ok(_) => seen.to_owned(),
        // Another test recorded it first (whole: it was written before it got its name).
        Err(_) => std::fs::read_to_string(&path).expect("the run's bootstrap file"),
    }
}

impl Lab {
    /// Every ExecuteCommand evoctl made (its User-Agent says `app/evoctl`) carries a command of at
    /// most 1 KiB that is the same bootstrap for every run in the whole suite, with a fresh
    /// 32-hex nonce (or `sh`, the shell), and no value of the lab's evoctl.toml.
    fn assert_command_strings_are_the_bootstrap(&self, journal: &[Value]) {
        let configured = configured_values(&self.config_path());
        let commands = journal.iter().filter(|e| {
            e["action"] == "ExecuteCommand" && e["user_agent"].as_str().is_some_and(|ua| ua.contains("app/evoctl"))
        });
        for entry in commands {
            let command = entry["parameters"]["command"].as_str().expect("a command");
            assert!(command.len() <= MAX_COMMAND_BYTES, "a {}-byte command string: {command}", command.len());
            if command != "sh" {
                let (bootstrap, nonce) = command.rsplit_once(' ').expect("a bootstrap and a nonce");
                assert!(
                    nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    "the command string ends in {nonce:?}, not a nonce"
                );
                let first = the_runs_bootstrap(bootstrap);
                assert_eq!(bootstrap, first, "every evoctl command string is one bootstrap");
            }
            for value in &configured {
                assert!(!command.contains(value.as_str()), "the configured value {value:?} is in a command string");
            }
        }
    }
}

/// Every string value of at least 8 characters in an evoctl.toml (names, URLs, secret references;
/// not `true` or `false`), none when there is no file.
fn configured_values(path: &Path) -> Vec<String> {
    fn collect(value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::String(text) if text.chars().count() >= 8 => out.push(text.clone()),
            toml::Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
            toml::Value::Table(table) => table.values().for_each(|item| collect(item, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(config) = std::fs::read_to_string(path).ok().and_then(|text| text.parse::<toml::Table>().ok()) {
        config.values().for_each(|value| collect(value, &mut out));
    }
    out
}

/// A standalone Evolution stand-in (`evoctl-lab evolution`), killed on drop: its API at `url`,
/// its control API (receiver, phone, snapshot, logs) at `control`.
pub struct StandIn {
    child: Child,
    pub url: String,
    pub control: String,
}

impl StandIn {
    /// Start one with the settings `env` (KEY=VALUE lines) and the extra `args`; `label` names
    /// its files in `dir`.
    pub fn start(dir: &Path, label: &str, env: &str, args: &[&str]) -> StandIn {
        let env_file = dir.join(format!("{label}.env"));
        std::fs::write(&env_file, env).expect("env file");
        let ready_file = dir.join(format!("{label}.json"));
        let child = std::process::Command::new(EVOCTL_LAB)
            .arg("evolution")
            .args(args)
            .arg("--env-file")
            .arg(&env_file)
            .arg("--ready-file")
            .arg(&ready_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn evoctl-lab evolution");
        let ready = wait_until(Duration::from_secs(30), "the stand-in's ready file", || {
            std::fs::read_to_string(&ready_file).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
        });
        let url = ready["url"].as_str().expect("url").to_owned();
        let control = ready["control"].as_str().expect("control").to_owned();
        StandIn { child, url, control }
    }

    /// A control API call; its JSON answer (null when empty).
    pub fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, text) = http(method, &format!("{}{path}", self.control), body.map(Value::to_string));
        assert!(status < 300, "{method} {path}: {status} {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("control JSON") }
    }

    /// Its row named `name` (live state, QR, webhook), or null.
    pub fn row(&self, name: &str) -> Value {
        row_named(&self.control("GET", "/evolution", None), name)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The row named `name` in an `/_lab/evolution` snapshot (rows by database), or null.
fn row_named(snapshot: &Value, name: &str) -> Value {
    snapshot
        .as_object()
        .expect("databases")
        .values()
        .flat_map(|rows| rows.as_array().expect("rows").iter())
        .find(|row| row["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// `PATH` with `dir` first.
pub fn path_with(dir: &Path) -> String {
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

/// A command with an empty environment except PATH, and HOME pointing into `dir` (so no ~/.aws).
pub fn clean_command(program: &str, dir: &Path) -> Command {
    let mut command = Command::from_std(clean_process(program, dir));
    command.timeout(Duration::from_secs(120));
    command
}

/// The same clean environment for a plain process (spawning, streaming, stdin kept open).
pub fn clean_process(program: &str, dir: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("HOME", dir).current_dir(dir);
    // A session of its own, so no controlling terminal whatever terminal runs the tests: a code
    // evoctl would draw on /dev/tty is said on stderr, as in CI.
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            rustix::process::setsid().map(drop).map_err(std::io::Error::from)
        });
    }
    command
}

/// Poll `probe` until it yields a value; panic naming `what` after `deadline`.
pub fn wait_until<T>(deadline: Duration, what: &str, probe: impl FnMut() -> Option<T>) -> T {
    poll_until(deadline, probe).unwrap_or_else(|| panic!("timed out after {deadline:?} waiting for {what}"))
}

/// Poll `probe` until it yields a value; None after `deadline` (the caller says what it saw).
pub fn poll_until<T>(deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if start.elapsed() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Minimal HTTP/1.1 client for the control API (status, body).
pub fn http(method: &str, url: &str, body: Option<String>) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(host).expect("connect to lab");
    let body = body.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    (status, if chunked { dechunk(payload) } else { payload.to_owned() })
}

fn dechunk(mut payload: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = payload.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        payload = &rest[size + 2..];
    }
    out
}

/// stdout of a finished command as JSON.
pub fn json_stdout(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The check of one `layer` in a `doctor --output json` report (`status`, `evidence`, `fix`);
/// panics naming the layer when the report has none.
pub fn check(report: &Value, layer: &str) -> Value {
    let checks = report["checks"].as_array().unwrap_or_else(|| panic!("no checks in: {report}"));
    checks.iter().find(|c| c["layer"] == layer).cloned().unwrap_or_else(|| panic!("no {layer} layer in: {report}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A node program writing `bytes` of random base64 to stdout, then its SHA-256 to stderr.
pub fn random_writer(bytes: usize) -> String {
    format!(
        "const c=require('crypto');const h=c.createHash('sha256');let n=0;\
         function w(){{while(n<{bytes}){{const b=c.randomBytes(48*1024).toString('base64').slice(0,{bytes}-n);\
         n+=b.length;h.update(b);if(!process.stdout.write(b))return process.stdout.once('drain',w);}}\
         process.stderr.write(h.digest('hex'));}}w();"
    )
}

pub fn assert_checksummed(output: &std::process::Output, bytes: usize) {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", text(&output.stderr));
    assert_eq!(output.stdout.len(), bytes);
    assert_eq!(
        hex::encode(Sha256::digest(&output.stdout)),
        text(&output.stderr),
        "output differs from what was written"
    );
}

/// With evoctl's logs on stderr too: the stdout is `bytes` long and its SHA-256 is the digest the
/// writer printed (the first stderr line starting with 64 hex digits).
pub fn assert_checksummed_among_logs(output: &std::process::Output, bytes: usize) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(output.stdout.len(), bytes);
    let digest = stderr
        .lines()
        .find(|l| l.len() >= 64 && l[..64].chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no digest in: {stderr}"));
    assert_eq!(&digest[..64], hex::encode(Sha256::digest(&output.stdout)), "output differs from what was written");
}

/// Run `case` for every item on `width` threads, each taking the next item as soon as it is done
/// with one (so one slow item holds up no batch); a failing case fails the test (its own panic
/// message says which).
pub fn in_parallel<T: Sync>(items: &[T], width: usize, case: impl Fn(&T) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..width.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while let Some(item) = items.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                    case(item);
                }
            });
        }
    });
}

impl Lab {
    /// The lab's task timeline: every lifecycle transition, creation included, in order
    /// (`{t_ms, task_id, cluster, service, last_status, desired_status}`).
    pub fn timeline(&self) -> Vec<Value> {
        self.control("GET", "/timeline", None).as_array().expect("timeline array").clone()
    }

    /// `POST /_lab/tasks`: tasks the scheduler leaves alone, in the state `body` asks for; their ids.
    pub fn add_tasks(&self, body: &Value) -> Vec<String> {
        let answer = self.control("POST", "/tasks", Some(body));
        let ids = answer["task_ids"].as_array().expect("task ids");
        ids.iter().map(|id| id.as_str().expect("task id").to_owned()).collect()
    }

    /// Clear the journal and set these faults (which restarts the per-action call counts that
    /// seeded throttling decides on).
    pub fn reset_faults(&self, faults: &Value) {
        self.control("POST", "/faults", Some(faults));
        self.control("DELETE", "/journal", None);
    }
}

/// Replay `timeline[..upto]`: each task's latest (cluster, last_status), by task id.
pub fn tasks_at(timeline: &[Value], upto: usize) -> std::collections::BTreeMap<String, (String, String)> {
    let mut tasks = std::collections::BTreeMap::new();
    for entry in &timeline[..upto] {
        let id = entry["task_id"].as_str().expect("task id").to_owned();
        let cluster = entry["cluster"].as_str().expect("cluster").to_owned();
        tasks.insert(id, (cluster, entry["last_status"].as_str().expect("status").to_owned()));
    }
    tasks
}

/// The clusters with a live (not STOPPED) task after `timeline[..upto]`, sorted.
pub fn live_clusters_at(timeline: &[Value], upto: usize) -> Vec<String> {
    let mut clusters: Vec<String> = tasks_at(timeline, upto)
        .into_values()
        .filter(|(_, status)| status != "STOPPED")
        .map(|(cluster, _)| cluster)
        .collect();
    clusters.sort();
    clusters.dedup();
    clusters
}

/// Indexes of the timeline entries that create a task (its first entry) at or after `from`.
pub fn creations_since(timeline: &[Value], from: usize) -> Vec<usize> {
    let seen: std::collections::BTreeSet<&str> =
        timeline[..from].iter().map(|e| e["task_id"].as_str().expect("task id")).collect();
    let mut created = std::collections::BTreeSet::new();
    (from..timeline.len())
        .filter(|&i| {
            let id = timeline[i]["task_id"].as_str().expect("task id");
            !seen.contains(id) && created.insert(id)
        })
        .collect()
}

/// Per action in the journal: (entries, throttled answers among them).
pub fn calls_by_action(journal: &[Value]) -> std::collections::BTreeMap<String, (usize, usize)> {
    let mut calls = std::collections::BTreeMap::new();
    for entry in journal {
        let counts: &mut (usize, usize) =
            calls.entry(entry["action"].as_str().expect("action").to_owned()).or_default();
        counts.0 += 1;
        if matches!(entry["error"].as_str(), Some("ThrottlingException" | "Throttling")) {
            counts.1 += 1;
        }
    }
    calls
}

/// Every throttled answer in the journal is followed by a retry: a later call of the same
/// service and action with the same parameters (each later call answers one throttled one).
pub fn assert_every_throttle_retried(journal: &[Value]) {
    let mut waiting: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for entry in journal {
        let key = format!("{} {} {}", entry["service"], entry["action"], entry["parameters"]);
        if let Some(count) = waiting.get_mut(&key).filter(|c| **c > 0) {
            *count -= 1;
        }
        if matches!(entry["error"].as_str(), Some("ThrottlingException" | "Throttling")) {
            *waiting.entry(key).or_default() += 1;
        }
    }
    waiting.retain(|_, count| *count > 0);
    assert!(waiting.is_empty(), "throttled answers never retried: {waiting:?}");
}

/// A throttled run's journal against the calm run's calls (`logical`): every throttled answer was
/// retried, each action made exactly its logical calls plus one per throttled answer, and the
/// throttled answers per action are exactly `expected` (seeded, so the same on every run).
pub fn assert_throttled_exactly(
    journal: &[Value],
    logical: &std::collections::BTreeMap<String, (usize, usize)>,
    expected: &[(&str, usize)],
    run: usize,
) {
    assert_every_throttle_retried(journal);
    let throttled: Vec<(String, usize)> = calls_by_action(journal)
        .into_iter()
        .map(|(action, (calls, throttled))| {
            assert_eq!(calls, logical[&action].0 + throttled, "run {run}: {action}");
            (action, throttled)
        })
        .collect();
    let expected: Vec<(String, usize)> = expected.iter().map(|(action, count)| (action.to_string(), *count)).collect();
    assert_eq!(throttled, expected, "run {run}");
}

/// A scenario file (in `dir`) with staging up and production down: a swap must never have both
/// live.
pub fn swapped_scenario(dir: &Path) -> String {
    let path = dir.join("swapped.toml");
    std::fs::write(
        &path,
        "extends = \"staging-up\"\ndescription = \"staging up, production down\"\n\
         [services.\"alinhou-production/EvolutionService\"]\ndesired_count = 0\nscaling = { min = 0, max = 0 }\n",
    )
    .expect("scenario file");
    path.to_str().expect("utf-8 path").to_owned()
}

/// Everything a pty holds, read until it ends (EIO once the last process using it is gone).
pub fn pty_to_end(pty: &pty_process::blocking::Pty) -> Vec<u8> {
    use std::io::Read;
    let mut screen = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = (&*pty).read(&mut buffer) {
        if n == 0 {
            break;
        }
        screen.extend_from_slice(&buffer[..n]);
    }
    screen
}
