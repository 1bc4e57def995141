//! The exec fault matrix: every combination of loss {0, 10, 30%}, duplication {0, 5%}, reordering
//! {0, 8}, delayed acknowledgements, pause_publication and one socket drop mid-stream, each
//! running a 256 KiB output (1 MiB in `scripts/faults`), against the lab's agent at the real
//! agent's timings (first output 1 s after the pty starts, 1 ms between 1024-byte reads), in
//! six tests (a scenario at a loss rate each), on plain sessions (`seed`) and on
//! KMS-encrypted ones (`kms-exec`). Every run ends byte-identical with exit 0, or cut by the real
//! agent's own bound: it resends only its oldest unacked frame, one per 100 ms tick, and once
//! the command has exited it gives unacknowledged output 2 s and then closes anyway
//! (ssm-data-channel.md §9 rows 1 and 10).
//!
//! Which of the two a run may end in is decided from the lab's record of that session's drain
//! (`GET /_lab/processes`, `drain`): how many frames unacked at the command's exit only a resend
//! could bring to the client (the gateway never wrote them to a client socket, dropped the
//! client's ack, or handed them to a socket that ended before their ack came back on it), what
//! was lost during the drain, the highest retransmission timeout, how many
//! resend ticks the drain ran and whether a client socket was attached at the close. From that
//! [`DrainBudget`] says whether a client that acks each frame it receives could have had
//! everything: a run within that budget must end byte-identical (a cut there is the client's
//! fault and fails the matrix, naming the combination); a cut run must say "output may be
//! truncated" (exit 125) and its record must show more to resend than the drain allowed and the
//! agent closing with output unacknowledged, or no client attached at the close. A hang, a
//! silent truncation, a wrong exit code, any other error, or a run without exactly one new
//! session in the lab's process table fails too. `EVOCTL_FAULT_RUNS` sets
//! the runs per combination (default 1 here; `scripts/faults` runs 20),
//! `EVOCTL_FAULT_PARALLEL` how many labs run at once in each part (4) and `EVOCTL_FAULT_BYTES`
//! each run's output size.
//!
//! Then the AWS faults: a throttling burst, throttling and 5xx that outlast the retries,
//! TargetNotConnectedException and a stopped agent, each with its message, fix and exit code
//! (exec disabled and a task stopping mid-session are in `exec.rs`).

use crate::support::{Lab, in_parallel, random_writer, text};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Each run's output: 256 KiB (256 of the agent's 1024-byte frames, well past the pause at frame
/// 20 and the socket drop at frame 40); `EVOCTL_FAULT_BYTES` sets another size (`scripts/faults`
/// runs 1 MiB).
fn output_size() -> usize {
    std::env::var("EVOCTL_FAULT_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(256 * 1024)
}
/// A run that takes longer than this has hung (evoctl's own timeout is 60 s).
const HANG: Duration = Duration::from_secs(90);
/// The real agent's resend ticker (ssm-data-channel.md §9 row 1): every 100 ms it looks at its
/// oldest unacked frame and resends it once that is older than the retransmission timeout.
const RESEND_TICK_MS: u64 = 100;
/// Once the command has exited, the real agent gives unacknowledged output this long, then
/// closes anyway (§9 row 10).
const DRAIN_MS: u64 = 2000;

/// The loss rates of the matrix; each, with each scenario, is one test of 32 combinations, so
/// that the parts run alongside the rest of the suite instead of as one long test.
const LOSS_RATES: [f64; 3] = [0.0, 0.1, 0.3];

fn combinations() -> Vec<Value> {
    let mut all = Vec::new();
    for drop in LOSS_RATES {
        for duplicate in [0.0, 0.05] {
            for reorder in [0, 8] {
                for ack_delay in [0, 20] {
                    for pause in [false, true] {
                        for socket_drop in [false, true] {
                            let mut faults = json!({
                                "drop_rate": drop, "duplicate_rate": duplicate, "reorder_window": reorder,
                                "ack_delay_ms": ack_delay,
                            });
                            if pause {
                                faults["pause_after_frames"] = json!(20);
                                faults["pause_ms"] = json!(150);
                            }
                            if socket_drop {
                                faults["disconnect_after_frames"] = json!(40);
                            }
                            all.push(faults);
                        }
                    }
                }
            }
        }
    }
    all
}

/// A combination as a message names it: `kms-exec loss 30% dup 5% reorder 8 acks +20ms pause socket-drop`.
fn label(scenario: &str, faults: &Value) -> String {
    let percent = |key: &str| (faults[key].as_f64().unwrap_or(0.0) * 100.0).round() as u64;
    let mut words = vec![scenario.to_owned(), format!("loss {}%", percent("drop_rate"))];
    if percent("duplicate_rate") > 0 {
        words.push(format!("dup {}%", percent("duplicate_rate")));
    }
    if faults["reorder_window"].as_u64().unwrap_or(0) > 0 {
        words.push(format!("reorder {}", faults["reorder_window"]));
    }
    if faults["ack_delay_ms"].as_u64().unwrap_or(0) > 0 {
        words.push(format!("acks +{}ms", faults["ack_delay_ms"]));
    }
    if faults.get("pause_after_frames").is_some() {
        words.push("pause".into());
    }
    if faults.get("disconnect_after_frames").is_some() {
        words.push("socket-drop".into());
    }
    words.join(" ")
}

/// What the agent's drain could resend, from the lab's record of it, for a client that acks
/// every frame it receives.
///
/// Each frame the gateway lost (or whose ack it lost) needs its own resend, and the agent
/// resends only its oldest unacked frame, once per tick and only once that frame is older than
/// the retransmission timeout. So the drain recovers everything only if its resend ticks cover:
/// one timeout before the first resend is due (those frames were last sent before the exit),
/// two ticks per resend (the resend, and the client's ack back before the tick after next),
/// and for each frame or ack lost during the drain one more resend and one more timeout. The
/// timeout taken is the highest the agent had during the drain. The drain allows a tick per
/// 100 ms of its 2 s that publication was not paused, and no more than the agent ran when the
/// drain ran to its end. With no client attached at the close nothing could be resent.
#[derive(Debug)]
struct DrainBudget {
    /// Frames unacked at the exit that only a resend could bring to the client.
    lost_at_exit: u64,
    /// Agent frames and client acks lost during the drain.
    lost_during: u64,
    max_rto_ms: u64,
    /// Resend ticks the drain allowed.
    ticks: u64,
    attached_at_close: bool,
    /// Output frames the agent closed with unacknowledged.
    unacked_at_close: u64,
}

impl DrainBudget {
    /// The budget of a drain the agent saw to its close (None for one it never began or ended).
    fn of(drain: &Value) -> Option<DrainBudget> {
        drain["closed_at_ms"].as_u64()?;
        let number = |key: &str| drain[key].as_u64().unwrap_or_else(|| panic!("drain record without {key}: {drain}"));
        let unpaused = DRAIN_MS.saturating_sub(number("paused_ms")) / RESEND_TICK_MS;
        let ran_to_its_end = number("unacked_at_close") > 0;
        Some(DrainBudget {
            lost_at_exit: number("unacked_lost_at_exit"),
            lost_during: number("frames_lost") + number("client_frames_lost"),
            max_rto_ms: number("max_rto_ms"),
            ticks: if ran_to_its_end { unpaused.min(number("resend_ticks")) } else { unpaused },
            attached_at_close: drain["client_attached_at_close"].as_bool().expect("client_attached_at_close"),
            unacked_at_close: number("unacked_at_close"),
        })
    }

    /// The resend ticks recovering everything takes.
    fn ticks_needed(&self) -> u64 {
        let timeout = self.max_rto_ms.div_ceil(RESEND_TICK_MS);
        timeout * (1 + self.lost_during) + 2 * (self.lost_at_exit + self.lost_during)
    }

    fn recoverable(&self) -> bool {
        self.attached_at_close && self.ticks_needed() <= self.ticks
    }
}

impl std::fmt::Display for DrainBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames to resend at the exit, {} frames or acks lost during the drain, timeout up to {} ms: {} resend ticks needed, {} allowed{}",
            self.lost_at_exit,
            self.lost_during,
            self.max_rto_ms,
            self.ticks_needed(),
            self.ticks,
            if self.attached_at_close { "" } else { ", no client attached at the close" }
        )
    }
}

/// One combination's runs.
#[derive(Debug, Default)]
struct Tally {
    label: String,
    runs: usize,
    /// Runs whose drain record says the agent could have delivered everything.
    within_budget: usize,
    /// Runs whose drain record says it could not.
    beyond_budget: usize,
    /// The rest: runs whose session evoctl ended (TerminateSession) before the agent closed on
    /// its own, as when it has the exit status while the agent still waits for its last acks.
    ended_by_client: usize,
    identical: usize,
    /// Runs cut with "output may be truncated" whose record shows the agent's bound.
    cut_beyond_budget: usize,
    /// Every other run that ended with a clear error, described: a cut within the budget or
    /// without the agent's record of one, or another error.
    failures: Vec<String>,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} runs, {} within the drain budget, {} beyond it, {} ended by evoctl before the agent closed; {} byte-identical, {} cut beyond the budget, {} failed",
            self.label,
            self.runs,
            self.within_budget,
            self.beyond_budget,
            self.ended_by_client,
            self.identical,
            self.cut_beyond_budget,
            self.failures.len()
        )
    }
}

fn process_table(lab: &Lab) -> Vec<Value> {
    lab.control("GET", "/processes", None).as_array().expect("process table").clone()
}

fn session_id(row: &Value) -> String {
    row["session_id"].as_str().expect("session id").to_owned()
}

/// The session one run started: the process table's row that was not there before it.
fn new_session(lab: &Lab, seen: &mut HashSet<String>) -> Result<Value, String> {
    let new: Vec<Value> = process_table(lab).into_iter().filter(|row| !seen.contains(&session_id(row))).collect();
    seen.extend(new.iter().map(session_id));
    match <[Value; 1]>::try_from(new) {
        Ok([row]) => Ok(row),
        Err(rows) => Err(format!("{} new sessions in the lab's process table, not 1: {rows:?}", rows.len())),
    }
}

/// Why a cut run is the agent's bound, or what makes it a failure.
fn judge_cut(row: &Value) -> Result<(), String> {
    let drain = &row["drain"];
    let Some(budget) = DrainBudget::of(drain) else {
        return Err(format!("cut, but the agent never closed after its drain: {row}"));
    };
    if budget.recoverable() {
        return Err(format!("cut within the drain budget ({budget}): {drain}"));
    }
    if budget.attached_at_close && budget.unacked_at_close == 0 {
        return Err(format!("cut, but the agent closed with all its output acknowledged: {row}"));
    }
    Ok(())
}

/// The real agent's timings (first output 1 s after the pty starts, 1 ms between 1024-byte
/// reads; §9 rows 5 and 6): the lab's defaults, which `Lab::start` shortens.
const REAL_AGENT_TIMINGS: [&str; 4] = ["--agent-delay-ms", "1000", "--agent-read-interval-ms", "1"];

/// Plain and KMS-encrypted sessions.
const SCENARIOS: [&str; 2] = ["seed", "kms-exec"];

fn run_combination(scenario: &str, faults: &Value, runs: usize) -> Tally {
    let lab = Lab::start_with(scenario, &REAL_AGENT_TIMINGS);
    lab.wait_settled();
    lab.control("POST", "/faults", Some(faults));
    let size = output_size();
    let program = random_writer(size);
    let mut tally = Tally { label: label(scenario, faults), runs, ..Tally::default() };
    let mut seen: HashSet<String> = process_table(&lab).iter().map(session_id).collect();
    for run in 0..runs {
        let started = Instant::now();
        let mut child = lab
            .evoctl_process()
            .args(["exec", "production", "--timeout", "60", "--", "node", "-e", &program])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read both pipes while waiting, so a full pipe never looks like a hang.
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || read_all(stdout));
        let err = std::thread::spawn(move || read_all(stderr));
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > HANG {
                let _ = child.kill();
                panic!("{} run {run}: hung for {HANG:?}", tally.label);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (stdout, stderr) = (out.join().unwrap(), text(&err.join().unwrap()));
        let failed =
            |why: String| format!("{} run {run} after {:.1} s: {why}", tally.label, started.elapsed().as_secs_f64());
        let session = match new_session(&lab, &mut seen) {
            Ok(row) => row,
            Err(why) => {
                tally.failures.push(failed(why));
                continue;
            }
        };
        match DrainBudget::of(&session["drain"]).map(|b| b.recoverable()) {
            Some(true) => tally.within_budget += 1,
            Some(false) => tally.beyond_budget += 1,
            None => tally.ended_by_client += 1,
        }
        match status.code() {
            Some(0) => {
                assert_eq!(stdout.len(), size, "{} run {run}: silent truncation", tally.label);
                assert_eq!(hex::encode(Sha256::digest(&stdout)), stderr, "{} run {run}: output differs", tally.label);
                tally.identical += 1;
            }
            Some(125) => {
                assert!(
                    stderr.contains("error: ") && stderr.contains("  fix: "),
                    "{} run {run}: {stderr}",
                    tally.label
                );
                let reason = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
                let verdict = if reason.contains("output may be truncated") {
                    judge_cut(&session)
                } else {
                    Err(format!("an error other than a cut: {reason}"))
                };
                match verdict {
                    Ok(()) => tally.cut_beyond_budget += 1,
                    Err(why) => tally.failures.push(failed(why)),
                }
            }
            other => panic!("{} run {run}: exit {other:?}: {stderr}", tally.label),
        }
    }
    tally
}

fn read_all(mut reader: impl std::io::Read) -> Vec<u8> {
    let mut buffer = Vec::new();
    reader.read_to_end(&mut buffer).expect("pipe reads");
    buffer
}

fn part(loss: f64) -> Vec<Value> {
    combinations().into_iter().filter(|f| f["drop_rate"].as_f64() == Some(loss)).collect()
}

/// One test per part, and `PARTS`, the list of them.
macro_rules! matrix_parts {
    ($($name:ident: $scenario:literal at $loss:literal;)*) => {
        $(
            #[test]
            fn $name() {
                every_combination_ends_byte_identical_or_cut_beyond_the_agents_drain($scenario, $loss);
            }
        )*
        const PARTS: &[(&str, f64)] = &[$(($scenario, $loss)),*];
    };
}

matrix_parts! {
    fault_matrix_plain_no_loss: "seed" at 0.0;
    fault_matrix_plain_loss_10: "seed" at 0.1;
    fault_matrix_plain_loss_30: "seed" at 0.3;
    fault_matrix_kms_no_loss: "kms-exec" at 0.0;
    fault_matrix_kms_loss_10: "kms-exec" at 0.1;
    fault_matrix_kms_loss_30: "kms-exec" at 0.3;
}

/// The tests listed above are every scenario at every loss rate, once each: together they run
/// all 192 combinations (a part left out of the list, or listed twice, fails here).
#[test]
fn the_matrix_parts_cover_every_combination_once() {
    let listed: Vec<String> = PARTS.iter().map(|(scenario, loss)| format!("{scenario} {loss}")).collect();
    let mut wanted: Vec<String> =
        SCENARIOS.iter().flat_map(|s| LOSS_RATES.iter().map(move |loss| format!("{s} {loss}"))).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    wanted.sort();
    assert_eq!(sorted, wanted, "{listed:?}");
    assert_eq!(PARTS.iter().map(|(_, loss)| part(*loss).len()).sum::<usize>(), 2 * 96);
}

fn every_combination_ends_byte_identical_or_cut_beyond_the_agents_drain(scenario: &str, loss: f64) {
    let runs: usize = std::env::var("EVOCTL_FAULT_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let all = part(loss);
    assert_eq!(all.len(), 32);
    let started = Instant::now();
    // Most of a run is waiting (the agent's 1 s first output, its 2 s drain), so several labs run
    // at once; `scripts/faults` runs more.
    let parallel: usize = std::env::var("EVOCTL_FAULT_PARALLEL").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let tallies = Mutex::new(Vec::new());
    in_parallel(&all, parallel.max(1), |faults| {
        let tally = run_combination(scenario, faults, runs);
        tallies.lock().unwrap().push(tally);
    });
    let mut tallies = tallies.into_inner().unwrap();
    tallies.sort_by(|a, b| a.label.cmp(&b.label));
    let sum = |count: fn(&Tally) -> usize| tallies.iter().map(count).sum::<usize>();
    let table: Vec<String> = tallies.iter().map(Tally::to_string).collect();
    eprintln!(
        "fault matrix at the real agent timings, {scenario} at {}% loss: {} combinations x {runs} runs in {:.0} s: {} within the agent's drain budget, {} beyond it, {} ended by evoctl before the agent closed; {} byte-identical, {} cut beyond the budget, {} failed\n{}",
        (loss * 100.0).round(),
        all.len(),
        started.elapsed().as_secs_f64(),
        sum(|t| t.within_budget),
        sum(|t| t.beyond_budget),
        sum(|t| t.ended_by_client),
        sum(|t| t.identical),
        sum(|t| t.cut_beyond_budget),
        sum(|t| t.failures.len()),
        table.join("\n")
    );
    // Each run was judged on its own record: a cut is allowed only beyond the agent's drain
    // budget, and no other error at all.
    let failures: Vec<&str> = tallies.iter().flat_map(|t| &t.failures).map(String::as_str).collect();
    assert!(
        failures.is_empty(),
        "every run within the agent's drain budget ends byte-identical, and every cut run is beyond it:\n{}\n\nper combination:\n{}",
        failures.join("\n"),
        table.join("\n")
    );
}

/// Run evoctl against `lab` with `faults` set; returns (exit code, stdout, stderr).
fn under_faults(
    lab: &Lab,
    faults: serde_json::Value,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String, String) {
    lab.control("DELETE", "/journal", None);
    lab.control("POST", "/faults", Some(&faults));
    let output = lab.evoctl().envs(env.iter().copied()).args(args).output().unwrap();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

fn attempts(lab: &Lab, action: &str) -> Vec<Option<String>> {
    lab.journal().iter().filter(|e| e["action"] == action).map(|e| e["error"].as_str().map(str::to_owned)).collect()
}

#[test]
fn every_aws_fault_has_its_message_fix_and_exit_code() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let throttled = Some("ThrottlingException".to_owned());

    // A burst of throttling is absorbed by the SDK's retries: the command just works.
    let burst = json!({"throttle_burst": 3, "actions": ["ExecuteCommand"]});
    let (code, stdout, stderr) =
        under_faults(&lab, burst, &[], &["exec", "production", "--", "node", "-e", "console.log(1)"]);
    // Each retry is said as it happens.
    let retried = "retrying ExecuteCommand (2/8): ThrottlingException: Rate exceeded\n\
                   retrying ExecuteCommand (3/8): ThrottlingException: Rate exceeded\n\
                   retrying ExecuteCommand (4/8): ThrottlingException: Rate exceeded\n";
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (Some(0), "1\n", retried));
    assert_eq!(attempts(&lab, "ExecuteCommand"), [throttled.clone(), throttled.clone(), throttled.clone(), None]);

    // Throttling that outlasts the retries: the AWS error and its fix; exit 5 (125 for exec).
    let persistent = json!({"throttle_rate": 1.0, "actions": ["ExecuteCommand"]});
    let (code, _, stderr) =
        under_faults(&lab, persistent, &[("AWS_MAX_ATTEMPTS", "3")], &["exec", "production", "--", "true"]);
    assert_eq!(code, Some(125));
    assert_eq!(
        stderr,
        "retrying ExecuteCommand (2/3): ThrottlingException: Rate exceeded\n\
         retrying ExecuteCommand (3/3): ThrottlingException: Rate exceeded\n\
         error: ExecuteCommand failed: ThrottlingException: Rate exceeded\n  fix: AWS is throttling this account: wait a minute and retry\n"
    );
    assert_eq!(attempts(&lab, "ExecuteCommand").len(), 3);

    let server = json!({"server_error_rate": 1.0, "actions": ["DescribeServices"]});
    let (code, stdout, stderr) = under_faults(&lab, server, &[("AWS_MAX_ATTEMPTS", "2")], &["task", "production"]);
    assert_eq!((code, stdout.as_str()), (Some(5), ""));
    assert_eq!(
        stderr,
        "retrying DescribeServices (2/2): ServerException: The lab injected a server error.\n\
         error: DescribeServices failed: ServerException: The lab injected a server error.\n  fix: AWS had a server-side fault: retry\n"
    );
    assert_eq!(
        attempts(&lab, "DescribeServices"),
        [Some("ServerException".to_owned()), Some("ServerException".to_owned())]
    );

    let task = lab.first_task_id();
    let (code, _, stderr) =
        under_faults(&lab, json!({"agent_not_connected": true}), &[], &["exec", "production", "--", "true"]);
    assert_eq!(code, Some(125));
    assert_eq!(
        stderr,
        format!(
            "error: the ExecuteCommandAgent of task {task} is not connected (The execute command failed due to an internal error. Try again later.)\n  \
                 fix: retry in a few seconds; if it persists run `evoctl doctor production` (task role ssmmessages permissions, a route to ssmmessages, no AWS keys in the container env)\n"
        )
    );

    // A stopped agent is seen in DescribeTasks: refused before any ExecuteCommand.
    let stopped = Lab::start("agent-stopped");
    stopped.wait_settled();
    let (code, _, stderr) = under_faults(&stopped, json!({}), &[], &["exec", "production", "--", "true"]);
    assert_eq!(code, Some(125));
    let task = stopped.first_task_id();
    assert_eq!(
        stderr,
        format!(
            "error: the ExecuteCommandAgent of {task}/EvolutionService is STOPPED, not RUNNING\n  \
                 fix: wait a few seconds after the task starts; if it stays so, check the task role's ssmmessages permissions and `evoctl doctor production`\n"
        )
    );
    assert!(attempts(&stopped, "ExecuteCommand").is_empty());
}
