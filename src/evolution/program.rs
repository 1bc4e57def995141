//! The node programs the driver runs in the container, one per mode: the common part (settings
//! read as 2.3.7 reads them, the API call, the scrub that keeps the API key and instance tokens
//! in the container), the reach check (its own mode, and the route check beside every call) and
//! the mode's own part, after the request they act on. They travel over the
//! data channel as the run's program, never on a command line.

use serde_json::Value;

const COMMON: &str = include_str!("program/common.js");
const CALL: &str = include_str!("program/call.js");
const SAMPLE: &str = include_str!("program/sample.js");
const GONE: &str = include_str!("program/gone.js");
const WATCH: &str = include_str!("program/watch.js");
const REACH: &str = include_str!("program/reach.js");
const PROBE: &str = include_str!("program/probe.js");
const CHECKUP: &str = include_str!("program/checkup.js");
const CALLS: &str = include_str!("program/calls.js");

/// What a program does with its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One call (with the owner check and a secret from stdin when the request says so).
    Call,
    /// The same GET at an interval for a while, one answer each time.
    Sample,
    /// Delete, then wait until the name is gone (events as JSON lines).
    Gone,
    /// The link watch of the connect runbook (events as JSON lines).
    Watch,
    /// Can the task reach WhatsApp.
    Reach,
    /// Sign and post a webhook probe.
    Probe,
    /// Several GETs in order, all their answers at the end.
    Calls,
    /// Every in-task layer of `doctor`, one JSON line per layer (with the reach check and the
    /// webhook probe).
    Checkup,
}

/// The program for `mode` acting on `request`.
pub fn source(mode: Mode, request: &Value) -> String {
    let parts: &[&str] = match mode {
        Mode::Call => &[CALL],
        Mode::Sample => &[SAMPLE],
        Mode::Gone => &[GONE],
        Mode::Watch => &[WATCH],
        Mode::Reach => &[],
        Mode::Probe => &[PROBE],
        Mode::Checkup => &[PROBE, CHECKUP],
        Mode::Calls => &[CALLS],
    };
    // The reach check comes with every mode: the route check beside each call uses it.
    let mut program = format!("const R = {request};\n{COMMON}{REACH}");
    for part in parts {
        program.push_str(part);
    }
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every mode's program parses as JavaScript (node --check), so a syntax slip fails here
    /// rather than in a container.
    #[test]
    fn every_program_is_valid_javascript() {
        let dir = tempfile::tempdir().unwrap();
        for mode in
            [Mode::Call, Mode::Sample, Mode::Gone, Mode::Watch, Mode::Reach, Mode::Probe, Mode::Checkup, Mode::Calls]
        {
            let path = dir.path().join(format!("{mode:?}.js"));
            std::fs::write(&path, source(mode, &serde_json::json!({"path": "/"}))).unwrap();
            let output = std::process::Command::new("node").arg("--check").arg(&path).output().unwrap();
            assert!(output.status.success(), "{mode:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
}
