//! The exec fault matrix: every combination of loss {0, 10, 30%}, duplication {0, 5%}, reordering
//! {0, 8}, delayed acknowledgements, pause_publication and one socket drop mid-stream, each
//! running a 1 MiB output several times. Every run must end, within its timeout, either
//! byte-identical with exit 0 or with a clear error and exit 125: no hang, no silent truncation,
//! no wrong exit code. `EVOCTL_FAULT_RUNS` sets the runs per combination (default 2 here;
//! `scripts/faults` runs 20).

use crate::support::{Lab, in_parallel, random_writer, text};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SIZE: usize = 1024 * 1024;
/// A run that takes longer than this has hung (evoctl's own timeout is 60 s).
const HANG: Duration = Duration::from_secs(90);

fn combinations() -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    for drop in [0.0, 0.1, 0.3] {
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

struct Tally {
    identical: AtomicUsize,
    clear_errors: AtomicUsize,
}

fn run_combination(faults: &serde_json::Value, runs: usize, tally: &Tally) {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.control("POST", "/faults", Some(faults));
    let program = random_writer(SIZE);
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
                panic!("{faults} run {run}: hung for {HANG:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (stdout, stderr) = (out.join().unwrap(), text(&err.join().unwrap()));
        match status.code() {
            Some(0) => {
                assert_eq!(stdout.len(), SIZE, "{faults} run {run}: silent truncation");
                assert_eq!(hex::encode(Sha256::digest(&stdout)), stderr, "{faults} run {run}: output differs");
                tally.identical.fetch_add(1, Ordering::Relaxed);
            }
            Some(125) => {
                assert!(stderr.contains("error: ") && stderr.contains("  fix: "), "{faults} run {run}: {stderr}");
                tally.clear_errors.fetch_add(1, Ordering::Relaxed);
            }
            other => panic!("{faults} run {run}: exit {other:?}: {stderr}"),
        }
    }
}

fn read_all(mut reader: impl std::io::Read) -> Vec<u8> {
    let mut buffer = Vec::new();
    reader.read_to_end(&mut buffer).expect("pipe reads");
    buffer
}

#[test]
fn every_fault_combination_ends_byte_identical_or_with_a_clear_error() {
    let runs: usize = std::env::var("EVOCTL_FAULT_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let tally = Tally { identical: AtomicUsize::new(0), clear_errors: AtomicUsize::new(0) };
    let all = combinations();
    assert_eq!(all.len(), 96);
    in_parallel(&all, 4, |faults| run_combination(faults, runs, &tally));
    let (identical, errors) = (tally.identical.load(Ordering::Relaxed), tally.clear_errors.load(Ordering::Relaxed));
    eprintln!(
        "fault matrix: {} combinations x {runs} runs: {identical} byte-identical, {errors} clear errors",
        all.len()
    );
    assert_eq!(identical + errors, all.len() * runs);
}
