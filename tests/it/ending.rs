//! Every promise about ending, checked by what remains: after a timeout, Ctrl-C, SIGTERM or a
//! failure (an idle shell: `shell.rs`), the lab's process table shows the remote command gone and its
//! journal shows the TerminateSession; `--timeout` is a bound whatever AWS does (a stalled
//! DescribeTasks, a stalled task lookup); a task whose exec agent cannot become ready fails at
//! once; and Ctrl-C during a scaling change stops after the step in flight and says what was done.

use crate::support::{Lab, json_stdout, swapped_scenario, text, wait_until};
use serde_json::{Value, json};
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The lab's process-table rows of `session` (a session id).
fn rows_of(lab: &Lab, session: &str) -> Vec<Value> {
    let rows = lab.control("GET", "/processes", None);
    rows.as_array().unwrap().iter().filter(|r| r["session_id"] == session).cloned().collect()
}

/// The session ids ExecuteCommand granted, from the journal's answers (the lab journals the
/// request; the process table names the session).
pub(crate) fn sessions(lab: &Lab) -> Vec<String> {
    let rows = lab.control("GET", "/processes", None);
    rows.as_array().unwrap().iter().map(|r| r["session_id"].as_str().unwrap().to_owned()).collect()
}

fn terminated_sessions(lab: &Lab) -> Vec<String> {
    lab.journal()
        .iter()
        .filter(|e| e["action"] == "TerminateSession" && e["status"] == 200)
        .map(|e| e["parameters"]["SessionId"].as_str().unwrap().to_owned())
        .collect()
}

/// The session's command is gone (nothing of its process group runs) and it was terminated.
pub(crate) fn assert_ended(lab: &Lab, session: &str) {
    let started = Instant::now();
    while rows_of(lab, session).iter().any(|r| r["alive"] == true) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the remote process group of {session} is still there after 5 s: {:?}; terminated: {:?}",
            rows_of(lab, session),
            terminated_sessions(lab)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rows = rows_of(lab, session);
    assert_eq!(rows.len(), 1, "one command per session: {rows:?}");
    assert!(terminated_sessions(lab).contains(&session.to_owned()), "no TerminateSession for {session}");
}

pub(crate) fn finish(mut child: Child, deadline: Duration) -> (Option<i32>, String, String) {
    let status = wait_until(deadline, "evoctl to end", || child.try_wait().unwrap());
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code(), out, err)
}

/// The one session the lab is running a command for, once its process is alive.
pub(crate) fn running_session(lab: &Lab) -> String {
    wait_until(Duration::from_secs(20), "the remote command to run", || {
        let rows = lab.control("GET", "/processes", None);
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["alive"] == true)
            .map(|r| r["session_id"].as_str().unwrap().to_owned())
    })
}

pub(crate) fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

#[test]
fn a_timeout_ends_the_remote_command_and_the_session() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let output = lab.evoctl().args(["exec", "production", "--timeout", "2", "--", "sleep", "47"]).output().unwrap();
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        "error: the exec session did not finish within 2s: the command was still running\n  fix: raise --timeout, or check what the command is waiting for\n"
    );
    let session = sessions(&lab).pop().expect("a session ran");
    assert_ended(&lab, &session);
}

#[test]
fn the_timeout_holds_with_describe_tasks_stalled_during_the_session() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let started = Instant::now();
    let child = lab
        .evoctl_process()
        .args(["exec", "production", "--timeout", "3", "--", "sleep", "30"])
        .env("EVOCTL_WATCHDOG_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let session = running_session(&lab);
    lab.control("POST", "/faults", Some(&json!({"latency_ms": 12_000, "actions": ["DescribeTasks"]})));
    let (code, _, stderr) = finish(child, Duration::from_secs(20));
    let elapsed = started.elapsed();
    assert_eq!(code, Some(125), "{stderr}");
    assert!(elapsed < Duration::from_millis(4500), "exit after {elapsed:?}: {stderr}");
    assert!(stderr.starts_with("error: the exec session did not finish within 3s: the command"), "{stderr}");
    lab.control("POST", "/faults", Some(&json!({})));
    assert_ended(&lab, &session);
}

/// The deadline holds with the watchdog's DescribeTasks stalled and the gateway no longer reading
/// the socket (its frames and pings unanswered). Over loopback the kernel's buffers take far more
/// than a session writes here, so no write blocks in this test; a write that does is the writer's
/// unit tests' (`src/exec/writer.rs`).
#[test]
fn the_timeout_holds_with_describe_tasks_stalled_and_the_socket_unanswered() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let started = Instant::now();
    let child = lab
        .evoctl_process()
        .args(["exec", "production", "--timeout", "3", "--", "sleep", "60"])
        .env("EVOCTL_WATCHDOG_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let session = running_session(&lab);
    lab.control(
        "POST",
        "/faults",
        Some(&json!({"latency_ms": 12_000, "actions": ["DescribeTasks"], "socket_unresponsive": true})),
    );
    let (code, stdout, stderr) = finish(child, Duration::from_secs(20));
    let elapsed = started.elapsed();
    assert_eq!(code, Some(125), "{stderr}");
    assert!(elapsed < Duration::from_secs(4), "exit after {elapsed:?}: {stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.starts_with("error: the exec session did not finish within 3s: the command"), "{stderr}");
    lab.control("POST", "/faults", Some(&json!({})));
    assert_ended(&lab, &session);
}

/// A first Ctrl-C while the data channel is being resumed (the socket was cut, and every
/// ResumeSession is refused) ends at once: exit 130 within a second, the session terminated and
/// its command gone.
#[test]
fn ctrl_c_during_a_resume_ends_the_session_at_once() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.control(
        "POST",
        "/faults",
        Some(&json!({"disconnect_every_ms": 1500, "throttle_rate": 1.0, "actions": ["ResumeSession"]})),
    );
    let child = lab.spawn(&["exec", "production", "--", "sleep", "49"]);
    let session = running_session(&lab);
    wait_until(Duration::from_secs(20), "a refused ResumeSession", || {
        lab.journal().iter().any(|e| e["action"] == "ResumeSession" && e["status"] != 200).then_some(())
    });
    let signalled = Instant::now();
    signal(&child, rustix::process::Signal::INT);
    let (code, stdout, stderr) = finish(child, Duration::from_secs(20));
    let elapsed = signalled.elapsed();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(elapsed < Duration::from_secs(1), "exit {elapsed:?} after Ctrl-C: {stderr}");
    assert_eq!(stdout, "");
    // Each refused resume was said as it was retried; then the interruption, and nothing else.
    let interrupted = format!("interrupted (Ctrl-C): exec session {session} was ended, and the command with it\n");
    let retries = stderr.strip_suffix(&interrupted).unwrap_or_else(|| panic!("{stderr}"));
    let retry = regex::Regex::new(r"^retrying ResumeSession \([2-8]/8\): ThrottlingException$").unwrap();
    assert!(retries.lines().all(|line| retry.is_match(line)), "{stderr}");
    assert_ended(&lab, &session);
}

#[test]
fn the_timeout_bounds_the_task_lookup_too() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.control("POST", "/faults", Some(&json!({"latency_ms": 12_000, "actions": ["DescribeTasks"]})));
    let started = Instant::now();
    let output = lab.evoctl().args(["exec", "production", "--timeout", "2", "--", "true"]).output().unwrap();
    assert!(started.elapsed() < Duration::from_millis(3500), "{:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(125));
    assert_eq!(
        text(&output.stderr),
        "error: the exec session did not finish within 2s: ECS had not answered the task lookup (ListTasks/DescribeTasks)\n  fix: raise --timeout, or check what the command is waiting for\n"
    );
    assert!(!lab.journal().iter().any(|e| e["action"] == "ExecuteCommand"), "no session was started");
}

#[test]
fn ctrl_c_and_sigterm_end_an_exec_session() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    for (sig, code, name) in
        [(rustix::process::Signal::INT, 130, "Ctrl-C"), (rustix::process::Signal::TERM, 143, "SIGTERM")]
    {
        let child = lab.spawn(&["exec", "production", "--", "sleep", "48"]);
        let session = running_session(&lab);
        signal(&child, sig);
        let (exit, stdout, stderr) = finish(child, Duration::from_secs(10));
        assert_eq!(exit, Some(code), "{name}: {stderr}");
        assert_eq!(stdout, "");
        assert_eq!(
            stderr,
            format!("interrupted ({name}): exec session {session} was ended, and the command with it\n")
        );
        assert_ended(&lab, &session);
    }
}

#[test]
fn a_denied_terminate_session_is_one_clear_line() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.control("POST", "/faults", Some(&json!({"terminate_denied": true})));
    let output = lab.evoctl().args(["exec", "production", "--timeout", "1", "--", "sleep", "46"]).output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    let stderr = text(&output.stderr);
    let session = sessions(&lab).pop().unwrap();
    assert!(
        stderr.contains(&format!(
            "warning: could not end exec session {session}: this caller may not call ssm:TerminateSession (grant it on the session ARNs); the remote command may still be running until the session's 20-minute idle timeout\n"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches("warning:").count(), 1, "{stderr}");
}

#[test]
fn connect_on_a_task_without_exec_fails_at_once_with_the_fix() {
    let lab = Lab::start("exec-disabled");
    lab.wait_settled();
    let started = Instant::now();
    let output = lab.evoctl().args(["connect", "production"]).output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("error: ECS Exec is not enabled on task "), "{stderr}");
    assert!(stderr.contains("  fix: enable it on the service and replace the task: `aws ecs update-service --cluster alinhou-production --service EvolutionService --enable-execute-command --force-new-deployment`"), "{stderr}");
    assert!(!lab.journal().iter().any(|e| e["action"] == "ExecuteCommand"));
}

/// Ctrl-C during `enforce --apply` stops after the step in flight: staging's writes are made,
/// the wait is cut short, production (which would come up next) is not touched; the message
/// lists both and the command that finishes the job, which then does.
#[test]
fn ctrl_c_during_enforce_stops_after_the_step_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    // Slow stops, so the interrupt lands while staging drains.
    let lab = Lab::start_with(&swapped_scenario(dir.path()), &["--task-stop-ms", "8000"]);
    lab.wait_settled();
    let child = lab.spawn(&["enforce", "--apply"]);
    wait_until(Duration::from_secs(20), "staging's UpdateService", || {
        lab.journal().iter().any(|e| e["action"] == "UpdateService").then_some(())
    });
    signal(&child, rustix::process::Signal::INT);
    let (exit, _, stderr) = finish(child, Duration::from_secs(10));
    assert_eq!(exit, Some(130), "{stderr}");
    assert!(
        stderr.ends_with(
            "interrupted (Ctrl-C) after 2 of 6 step(s); applied:\n  1. staging: RegisterScalableTarget min 0 max 0\n  2. staging: UpdateService desiredCount 0\n\
             not applied:\n  3. staging: wait until 0 live task(s)\n  4. production: RegisterScalableTarget min 1 max 1\n  5. production: UpdateService desiredCount 1\n  6. production: wait until 1 live task(s)\n\
             \x20 fix: `evoctl enforce --apply` finishes the job (it plans again from what is there now)\n"
        ),
        "{stderr}"
    );
    let production_writes = lab
        .journal()
        .iter()
        .filter(|e| e["action"] == "UpdateService" && e["parameters"]["cluster"] == "alinhou-production")
        .count();
    assert_eq!(production_writes, 0, "nothing was done for production");

    let output = lab.evoctl().args(["--output", "json", "enforce", "--apply", "--timeout", "60s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(json_stdout(&output)["applied"], true);
}
