//! `evoctl doctor`: every layer on the seed, and the first broken layer of each broken scenario.

use crate::support::{Lab, check, in_parallel, json_stdout, text};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The layers `doctor` reports, in order: the README's list, written out here so the code's own
/// list is not its oracle.
const LAYERS: [&str; 20] = [
    "credentials",
    "cluster",
    "service",
    "scaling",
    "tasks",
    "task-status",
    "platform",
    "exec-enabled",
    "exec-agent",
    "exec-trial",
    "session-store",
    "evolution",
    "api-key",
    "whatsapp-reach",
    "instance",
    "instance-health",
    "webhook",
    "webhook-delivery",
    "conflicts",
    "isolation",
];

/// Scenario -> the first layer that fails (None: exit 0).
const FIRST_BROKEN: &[(&str, Option<&str>)] = &[
    ("seed", None),
    ("exec-disabled", Some("exec-enabled")),
    ("agent-stopped", Some("exec-agent")),
    ("default-api-key", Some("api-key")),
    ("conflict-loop", Some("tasks")),
    ("empty-jwt-key", Some("webhook")),
    ("staging-up", Some("isolation")),
    // Across accounts: production's own layers pass, and staging live in its own account is the
    // same isolation failure as in one account.
    ("two-accounts", None),
    ("two-accounts-both-live", Some("isolation")),
    // No route to WhatsApp: the probe from inside the task finds it.
    ("no-whatsapp-route", Some("whatsapp-reach")),
    // Staging's conflict lines in the group both stages share are not production's.
    ("shared-log-group", None),
    // The session's keys on the task's disk; on an EFS volume the task really has.
    ("ephemeral-keys", Some("session-store")),
    ("efs-keys", None),
];

#[test]
fn doctor_names_the_first_broken_layer_of_each_scenario() {
    in_parallel(FIRST_BROKEN, 6, |(scenario, first)| {
        let lab = Lab::start(scenario);
        lab.wait_settled();
        let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
        let report = json_stdout(&output);
        assert_eq!(report["schema"], "evoctl.doctor/v1");
        assert_eq!(report["first_broken"], serde_json::json!(first), "{scenario}: {report:#}");
        assert_eq!(output.status.code(), Some(if first.is_some() { 1 } else { 0 }), "{scenario}");
        let layers: Vec<&str> =
            report["checks"].as_array().unwrap().iter().map(|c| c["layer"].as_str().unwrap()).collect();
        assert_eq!(layers, LAYERS, "{scenario}: every layer is reported, in order");
        if *scenario == "exec-disabled" || *scenario == "agent-stopped" {
            // No exec is attempted without a running agent.
            assert!(lab.journal().iter().all(|e| e["action"] != "ExecuteCommand"), "{scenario}");
            assert_eq!(check(&report, "exec-trial")["status"], "SKIP");
            assert_eq!(check(&report, "isolation")["status"], "FAIL", "the AWS-only layers still run");
        }
    });
}

#[test]
fn doctor_on_the_seed_reports_every_layer() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let output = lab.evoctl().args(["doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let statuses: Vec<(String, String)> = stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let mut cells = l.split_whitespace();
            (cells.next().unwrap().to_owned(), cells.next().unwrap().to_owned())
        })
        .collect();
    let expected: Vec<(String, String)> = LAYERS
        .iter()
        .map(|l| {
            let status = match *l {
                "instance" => "WARN",
                "instance-health" => "SKIP",
                _ => "OK",
            };
            (l.to_string(), status.to_string())
        })
        .collect();
    assert_eq!(statuses, expected, "{stdout}");
    assert!(stdout.contains("exec-trial        OK      node v"), "{stdout}");
    assert!(stdout.contains(" runs in the task's container\n"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "evolution         OK      Evolution API 2.3.7 (client evolution_production), WhatsApp Web 2.3000.1027934701{}\n",
            crate::pairing::UNPATCHED_EVIDENCE
        )),
        "{stdout}"
    );
    // The verdict first, then the warning's fix.
    assert!(
        stdout.ends_with(
            "\n\ndoctor: OK, 1 warning(s)\nwarn instance: create and link it: `evoctl connect production`\n"
        ),
        "{stdout}"
    );
}

/// The agent's real pace (its first output a second after the session opens): every in-task
/// layer is one exec session, and each layer is shown as it completes (the AWS layers long before
/// the session answers).
#[test]
fn doctor_runs_every_in_task_layer_in_one_session_and_shows_each_layer_as_it_completes() {
    let lab = Lab::start_with("seed", &["--agent-delay-ms", "1000"]);
    lab.wait_settled();
    lab.control("DELETE", "/journal", None);
    let started = Instant::now();
    let mut child = lab.evoctl_process().args(["doctor", "production"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        lines.push((started.elapsed(), line.unwrap()));
    }
    let status = child.wait().unwrap();
    let ended = started.elapsed();
    assert_eq!(status.code(), Some(0), "{lines:?}");
    let at = |prefix: &str| {
        lines.iter().find(|(_, l)| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in {lines:?}")).0
    };
    assert!(at("credentials ") < Duration::from_secs(1), "the first layer at {:?}", at("credentials "));
    // The AWS layers were on screen before the session answered (the agent alone takes 1 s).
    assert!(at("exec-agent ") + Duration::from_millis(800) < at("exec-trial "), "{lines:?}");
    let executes = lab.journal().iter().filter(|e| e["action"] == "ExecuteCommand").count();
    assert_eq!(executes, 1, "one exec session for every in-task layer");
    let sessions = crate::ending::sessions(&lab);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    crate::ending::assert_ended(&lab, &sessions[0]);
    // One session is asserted by the journal above (one ExecuteCommand), not by a wall-clock
    // bound: under a loaded machine the in-task checks' own work stretches far more than a
    // session's setup does, and such a bound failed with every layer right.
    eprintln!("doctor took {ended:?}");
}

/// The table is the JSON document's checks, and the verdict names the first broken layer, in red
/// only where colour is asked for (the printer colours a terminal; here stdout is a pipe).
#[test]
fn the_verdict_names_the_first_broken_layer_then_its_fix() {
    let lab = Lab::start("empty-jwt-key");
    lab.wait_settled();
    let output = lab.evoctl().args(["doctor", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let report = json_stdout(&lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap());
    let fix = check(&report, "webhook")["fix"].clone();
    let tail = stdout.split("\n\n").nth(1).unwrap_or_else(|| panic!("{stdout}"));
    assert!(tail.starts_with(&format!("doctor: FAIL at webhook\nfix: {}\n", fix.as_str().unwrap())), "{stdout}");
    assert!(!stdout.contains('\x1b'), "no colour into a pipe: {stdout:?}");
}

/// What `evoctl ARGS` writes to a terminal of its own (stdout and stderr on a pty), with `env`.
fn on_a_terminal(lab: &Lab, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let (pty, pts) = pty_process::blocking::open().unwrap();
    pty.resize(pty_process::Size::new(50, 200)).unwrap();
    let mut child = pty_process::blocking::Command::new(crate::support::EVOCTL)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", lab.dir.path())
        .envs(lab.env())
        .envs(env.iter().copied())
        .current_dir(lab.dir.path())
        .spawn(pts)
        .unwrap();
    let screen = crate::support::pty_to_end(&pty);
    (child.wait().unwrap().code(), String::from_utf8_lossy(&screen).into_owned())
}

#[test]
fn on_a_terminal_fail_is_red_and_warn_yellow_unless_no_color() {
    let lab = Lab::start("empty-jwt-key");
    lab.wait_settled();
    let (code, screen) = on_a_terminal(&lab, &["doctor", "production"], &[]);
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains("webhook           \x1b[31mFAIL\x1b[0m  "), "{screen:?}");
    assert!(screen.contains("instance          \x1b[33mWARN\x1b[0m  "), "{screen:?}");
    assert!(screen.contains("doctor: \x1b[31mFAIL\x1b[0m at webhook\r\n"), "{screen:?}");
    assert!(screen.contains("credentials       OK      account "), "OK is not coloured: {screen:?}");

    let (code, screen) = on_a_terminal(&lab, &["doctor", "production"], &[("NO_COLOR", "1")]);
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains("webhook           FAIL    "), "{screen:?}");
    assert!(!screen.contains('\x1b'), "{screen:?}");
}
