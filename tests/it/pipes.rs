//! Output that survives pagers and full disks, and memory that stays bounded: a reader that
//! pauses (`| less`) holds the remote command back instead of growing evoctl, a closed pipe
//! (`| head`) ends quietly and ends the session, a full disk is an error and exit 74,
//! a 50 MiB script and a 50 MiB piped stdin stream, and a hostile peer's oversized frame is
//! refused. Peak RSS is read from
//! `/proc/PID/status` (VmHWM) while evoctl runs.

use crate::support::{Lab, random_writer, text, wait_until};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The bound on evoctl's resident memory (docs/BENCHMARKS.md).
const RSS_BOUND_KIB: u64 = 40 * 1024;

/// The high-water mark of the process's resident memory, in KiB, sampled until it exits.
fn peak_rss_kib(child: &mut Child) -> u64 {
    let mut peak = 0;
    loop {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_paused_reader_holds_the_command_back_with_bounded_memory() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let size = 20 * 1024 * 1024;
    let mut child = lab.spawn(&["exec", "production", "--", "node", "-e", &random_writer(size)]);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let pid = child.id();
    // The pager is paused: nobody reads for a while. evoctl must neither grow nor stall its
    // protocol; the lab's gateway sees the backlog and pauses the agent.
    let sampler = std::thread::spawn(move || peak_rss_kib(&mut child));
    std::thread::sleep(Duration::from_secs(6)); // the paused reader, not synchronisation
    let reading = std::thread::spawn(move || {
        let mut data = Vec::new();
        stdout.read_to_end(&mut data).unwrap();
        data
    });
    let mut errors = String::new();
    stderr.read_to_string(&mut errors).unwrap();
    let data = reading.join().unwrap();
    let peak = sampler.join().unwrap();
    assert_eq!(data.len(), size, "pid {pid}: {errors}");
    assert_eq!(hex::encode(Sha256::digest(&data)), errors, "output differs from what was written");
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
    eprintln!("paused reader: 20 MiB, peak RSS {} KiB", peak);
}

#[test]
fn a_closed_pipe_ends_quietly_and_ends_the_session() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let mut child = lab.spawn(&["exec", "production", "--", "sh", "-c", "while true; do echo yes; done"]);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 4];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"yes\n");
    drop(stdout); // `| head -1`
    let status = wait_until(Duration::from_secs(20), "evoctl to end", || child.try_wait().unwrap());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!((status.code(), stderr.as_str()), (Some(0), ""));
    let rows = lab.control("GET", "/processes", None);
    let session = rows[0]["session_id"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(5), "the remote loop to be gone", || {
        let rows = lab.control("GET", "/processes", None);
        (rows[0]["alive"] == false).then_some(())
    });
    assert!(
        lab.journal()
            .iter()
            .any(|e| e["action"] == "TerminateSession" && e["parameters"]["SessionId"] == session.as_str()),
        "the session was terminated"
    );
}

#[test]
fn a_full_disk_is_an_error_not_a_silent_truncation() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let run = |args: &[&str]| {
        let child = lab.evoctl_process().args(args).stdout(full()).stderr(Stdio::piped()).spawn().unwrap();
        child.wait_with_output().unwrap()
    };
    // A full disk is a local I/O error (74, sysexits' EX_IOERR), not a usage error (2).
    for args in [&["--output", "json", "status"][..], &["logs", "production", "--since", "3h"], &["audit"]] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(74), "{args:?}: {}", text(&output.stderr));
        assert_eq!(text(&output.stderr), "error: stdout: No space left on device (os error 28)\n", "{args:?}");
    }

    let output = run(&["exec", "production", "--", "node", "-e", "console.log('x'.repeat(100000))"]);
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "error: stdout: No space left on device (os error 28)\n");
}

#[test]
fn a_50_mib_script_streams_over_stdin_in_bounded_memory() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let path = lab.dir.path().join("big.js");
    let padding = 50 * 1024 * 1024;
    let mut script = String::with_capacity(padding + 100);
    script.push_str("/*");
    script.extend(std::iter::repeat_n('x', padding));
    script.push_str("*/\nconsole.log(require('fs').statSync('/proc/self/exe') ? 'ran' : 'no'); process.exit(3);\n");
    std::fs::write(&path, &script).unwrap();
    let started = Instant::now();
    let mut child = lab
        .evoctl_process()
        .args(["node", "production", "--timeout", "240"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reading = std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        stdout.read_to_string(&mut out).unwrap();
        stderr.read_to_string(&mut err).unwrap();
        (out, err)
    });
    let peak = peak_rss_kib(&mut child);
    let code = child.wait().unwrap().code();
    let (out, err) = reading.join().unwrap();
    assert_eq!((code, out.as_str()), (Some(3), "ran\n"), "{err}");
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
    eprintln!("50 MiB stdin in {:?}, peak RSS {peak} KiB", started.elapsed());
}

/// Piped stdin streams too: 50 MiB from a file reach the command byte for byte (its digest is
/// taken in the container by sha256sum) while evoctl stays under the bound.
#[test]
fn a_50_mib_stdin_streams_to_the_command_in_bounded_memory() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let path = lab.dir.path().join("input.bin");
    let input: Vec<u8> = (0..50 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(&path, &input).unwrap();
    let expected = format!("{}  stdin.bin\n", hex::encode(Sha256::digest(&input)));
    drop(input);
    let started = Instant::now();
    let mut child = lab
        .evoctl_process()
        .args(["exec", "production", "--timeout", "240", "--", "sh", "-c", "cat > stdin.bin; sha256sum stdin.bin"])
        .stdin(std::fs::File::open(&path).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reading = std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        stdout.read_to_string(&mut out).unwrap();
        stderr.read_to_string(&mut err).unwrap();
        (out, err)
    });
    let peak = peak_rss_kib(&mut child);
    let code = child.wait().unwrap().code();
    let (out, err) = reading.join().unwrap();
    assert_eq!((code, out.as_str()), (Some(0), expected.as_str()), "{err}");
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
    eprintln!("50 MiB piped stdin in {:?}, peak RSS {peak} KiB", started.elapsed());
}

#[test]
fn an_oversized_frame_is_refused_in_bounded_memory() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.control("POST", "/faults", Some(&json!({"oversized_frame_bytes": 64 * 1024 * 1024})));
    let mut child = lab.spawn(&["exec", "production", "--", "sh", "-c", "echo started; sleep 45"]);
    let peak = peak_rss_kib(&mut child);
    let code = child.wait().unwrap().code();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(code, Some(125), "{stderr}");
    assert!(stderr.contains("sent more than a frame can hold"), "{stderr}");
    assert!(stderr.contains("the limit is 65536 bytes"), "{stderr}");
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
    let rows = lab.control("GET", "/processes", None);
    wait_until(Duration::from_secs(5), "the remote sleep to be gone", || {
        let rows = lab.control("GET", "/processes", None);
        (rows[0]["alive"] == false).then_some(())
    });
    assert_eq!(rows.as_array().unwrap().len(), 1);
}
