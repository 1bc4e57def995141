//! Where the WhatsApp session's keys live, and what a task replacement does to it: the
//! `session-persistence` audit rule, and `evoctl redeploy` against the lab, whose stand-in tasks
//! keep Signal keys where their settings put them (the task's disk, Redis, an EFS volume).

use crate::support::{Lab, check, in_parallel, json_stdout, poll_until, text, wait_until};
use serde_json::Value;
use std::time::Duration;

/// The session-persistence evidence on `ephemeral-keys` (production's keys on the task's disk).
const EPHEMERAL: &str = "DATABASE_SAVE_DATA_INSTANCE is true and CACHE_REDIS_ENABLED is not: Evolution 2.3.7 keeps the creds in the database and every other Signal key in files under /evolution/instances/<instance id>, and no EFS volume is mounted at or above /evolution/instances: the task's ephemeral disk; a replaced task (a deploy, scale, a crash, a Fargate retirement) brings the creds back without their Signal keys and the number must be linked again";

const FIX: &str = "set CACHE_REDIS_ENABLED=true, CACHE_REDIS_SAVE_INSTANCES=true and CACHE_REDIS_URI to a Redis outside the task, or mount an EFS volume at /evolution/instances (mountPoints + volumes with efsVolumeConfiguration) and keep DATABASE_SAVE_DATA_INSTANCE=true; then deploy";

fn audit(lab: &Lab) -> (Option<i32>, Value) {
    let output = lab.evoctl().args(["--output", "json", "audit", "--rule", "session-persistence"]).output().unwrap();
    (output.status.code(), json_stdout(&output))
}

fn stops(lab: &Lab) -> usize {
    lab.journal().iter().filter(|e| e["action"] == "StopTask" || e["action"] == "UpdateService").count()
}

/// The live state: the first line of `instance state` (the row and the last disconnect follow).
fn state(lab: &Lab) -> String {
    let output = lab.evoctl().args(["instance", "state", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    text(&output.stdout).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn audit_fails_keys_on_the_task_disk_for_production_and_passes_redis_and_efs() {
    let lab = Lab::start("ephemeral-keys");
    let (code, report) = audit(&lab);
    assert_eq!(code, Some(1), "{report:#}");
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report:#}");
    let finding = &findings[0];
    assert_eq!(
        (&finding["rule"], &finding["severity"], &finding["envs"]),
        (&Value::from("session-persistence"), &Value::from("error"), &serde_json::json!(["production"]))
    );
    assert_eq!(finding["evidence"], EPHEMERAL);
    assert_eq!(finding["fix"], FIX);
    let output = lab.evoctl().args(["audit", "production", "--rule", "session-persistence"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stdout).contains(&format!("session-persistence (production): {FIX}\n")),
        "{}",
        text(&output.stdout)
    );

    in_parallel(&["seed", "efs-keys"], 2, |scenario| {
        let lab = Lab::start(scenario);
        let (code, report) = audit(&lab);
        assert_eq!((code, &report["clean"]), (Some(0), &Value::Bool(true)), "{scenario}: {report:#}");
    });
}

#[test]
fn a_redeploy_with_keys_on_the_task_disk_is_refused_then_needs_a_new_scan() {
    let lab = Lab::start("ephemeral-keys");
    lab.wait_settled();
    lab.link_production();
    assert_eq!(state(&lab), "open");
    let old = lab.first_task_id();

    let output = lab.evoctl().args(["redeploy", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: refused: production's WhatsApp session would not survive the replacement (alinhou-production-EvolutionService:31): {EPHEMERAL}; nothing was changed\n  \
             fix: {FIX}; or run `evoctl redeploy production --yes` and link the number again with `evoctl connect production`\n"
        )
    );
    assert_eq!(stops(&lab), 0, "nothing was changed");

    let output = lab.evoctl().args(["redeploy", "production", "--yes"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let new = stdout
        .strip_prefix(&format!("redeployed production: task {old} -> "))
        .and_then(|rest| rest.split_once(' '))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_ne!(new, old);
    assert_eq!(
        stdout,
        format!(
            "redeployed production: task {old} -> {new} (alinhou-production-EvolutionService:31)\n\
             instance alinhou-production came back close (it was linked to 5511987654321): the number needs a new link: `evoctl connect production`\n"
        )
    );
    assert!(
        text(&output.stderr).starts_with("warning: production's session keys are not kept outside the task (keys on the task's ephemeral disk (/evolution/instances)): the number will need a new link after this redeploy (`evoctl connect production`)\n"),
        "{}",
        text(&output.stderr)
    );
    // The lab's oracle: the row keeps its creds, the new task has no keys for them.
    assert_eq!(state(&lab), "close");
    let row = lab.evolution_instance("alinhou-production");
    assert_eq!(row["creds"], "5511987654321@s.whatsapp.net", "{row:#}");
    assert_eq!(row["processes"][0]["keys"]["held"], false, "{row:#}");
    assert_eq!(row["processes"][0]["process"], new.as_str());

    // `connect` asks for a new scan: a fresh QR, and only the scan links the number again.
    let mut child = lab.spawn(&["connect", "production", "--stable-for", "1s", "--timeout", "60s"]);
    let stderr = child.stderr.take().unwrap();
    let (lines, said) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let line = line.unwrap();
            all.push_str(&line);
            all.push('\n');
            let _ = lines.send(line);
        }
        all
    });
    let shown =
        poll_until(Duration::from_secs(30), || said.try_iter().any(|l| l.starts_with("QR 1 of 30")).then_some(()));
    if shown.is_none() {
        let _ = child.kill();
        let row = lab.evolution_instance("alinhou-production");
        panic!("no new QR from connect in 30 s; it said:\n{}the lab's row: {row:#}", reader.join().unwrap());
    }
    assert_eq!(state(&lab), "connecting");
    lab.scan("alinhou-production");
    let output = child.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        text(&output.stdout).starts_with("linked 5511987654321 to alinhou-production\n"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn a_redeploy_with_keys_in_redis_or_on_efs_comes_back_open_on_the_same_number() {
    in_parallel(&["seed", "efs-keys"], 2, |scenario| {
        let lab = Lab::start(scenario);
        lab.wait_settled();
        lab.link_production();
        let old = lab.first_task_id();
        let output = lab.evoctl().args(["--output", "json", "redeploy", "production"]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{scenario}: {}", text(&output.stderr));
        let report = json_stdout(&output);
        assert_eq!(report["schema"], "evoctl.redeploy/v1");
        assert_eq!(report["old_task"], old.as_str());
        assert_ne!(report["new_task"], old.as_str());
        assert_eq!(
            (
                &report["state"],
                &report["number_before"],
                &report["number_after"],
                &report["kept"],
                &report["needs_link"]
            ),
            (
                &Value::from("open"),
                &Value::from("5511987654321"),
                &Value::from("5511987654321"),
                &Value::Bool(true),
                &Value::Bool(false)
            ),
            "{scenario}: {report:#}"
        );
        let keys = match *scenario {
            "seed" => "Redis redis://redis.alinhou.internal:6379/2 (CACHE_REDIS_SAVE_INSTANCES)",
            _ => "creds in the database, keys on EFS fs-0a1b2c3d4e5f60718 mounted at /evolution/instances",
        };
        assert_eq!((&report["keys"], &report["persistent"]), (&Value::from(keys), &Value::Bool(true)));
        assert_eq!(state(&lab), "open");
        let row = lab.evolution_instance("alinhou-production");
        assert_eq!(row["processes"][0]["process"], report["new_task"], "{row:#}");

        // Once more, as text.
        let output = lab.evoctl().args(["redeploy", "production"]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{scenario}: {}", text(&output.stderr));
        assert!(
            text(&output.stdout).ends_with(
                ")\ninstance alinhou-production is open on 5511987654321, the same number: no new link needed\n"
            ),
            "{scenario}: {}",
            text(&output.stdout)
        );
    });
}

#[test]
fn scale_warns_before_it_starts_a_protected_task_whose_keys_would_be_lost() {
    let warning = "warning: production's session keys are not kept outside the task (keys on the task's ephemeral disk (/evolution/instances)): the number will need a new link after this change (`evoctl connect production`)\n";
    in_parallel(&["ephemeral-keys", "seed"], 2, |base| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scenario.toml");
        std::fs::write(
            &path,
            format!(
                "extends = \"{base}\"\ndescription = \"production scaled to 0\"\n\
                 [services.\"alinhou-production/EvolutionService\"]\ndesired_count = 0\nscaling = {{ min = 0, max = 0 }}\n"
            ),
        )
        .unwrap();
        let lab = Lab::start(path.to_str().unwrap());
        let output = lab.evoctl().args(["scale", "production"]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert_eq!(
            text(&output.stdout),
            "ENV         NOW (MIN/MAX)         WANTED         PLAN\n\
             production  0/0 desired 0 live 0  1/1 desired 1  3 change(s)\n\
             1. production: RegisterScalableTarget min 1 max 1\n\
             2. production: UpdateService desiredCount 1\n\
             3. production: wait until 1 live task(s)\n\
             \n\
             nothing changed: run again with --apply to make these changes\n",
            "{base}"
        );
        let expected = if *base == "seed" { "" } else { warning };
        assert_eq!(text(&output.stderr), expected, "{base}");
    });
}

#[test]
fn doctor_says_where_the_keys_live_and_reads_the_volume_from_inside_the_task() {
    in_parallel(&["efs-keys", "ephemeral-keys", "seed"], 3, |scenario| {
        let lab = Lab::start(scenario);
        lab.wait_settled();
        let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
        let report = json_stdout(&output);
        let store = check(&report, "session-store");
        match *scenario {
            "efs-keys" => assert_eq!(
                (&store["status"], &store["evidence"]),
                (
                    &Value::from("OK"),
                    &Value::from(
                        "creds in the database, keys on EFS fs-0a1b2c3d4e5f60718 mounted at /evolution/instances; in the task /evolution/instances is on /evolution/instances (nfs4 from 127.0.0.1:/)"
                    )
                ),
                "{report:#}"
            ),
            "seed" => assert_eq!(
                (&store["status"], &store["evidence"]),
                (
                    &Value::from("OK"),
                    &Value::from("Redis redis://redis.alinhou.internal:6379/2 (CACHE_REDIS_SAVE_INSTANCES)")
                ),
                "{report:#}"
            ),
            _ => {
                assert_eq!((&store["status"], &store["fix"]), (&Value::from("FAIL"), &Value::from(FIX)), "{report:#}");
                assert_eq!(report["first_broken"], "session-store");
                assert_eq!(output.status.code(), Some(1));
            }
        }
    });
}

#[test]
fn a_redeploy_to_a_revision_goes_through_a_stop_before_start_deployment_only() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.link_production();
    let output =
        lab.evoctl().args(["--output", "json", "redeploy", "production", "--task-definition", "31"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    assert_eq!(
        (&report["task_definition"], &report["state"], &report["kept"]),
        (&Value::from("alinhou-production-EvolutionService:31"), &Value::from("open"), &Value::Bool(true)),
        "{report:#}"
    );
    let updates: Vec<Value> =
        lab.journal().into_iter().filter(|e| e["action"] == "UpdateService").map(|e| e["parameters"].clone()).collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["taskDefinition"], "alinhou-production-EvolutionService:31");
    assert_eq!(updates[0]["forceNewDeployment"], true);

    // A service whose deployments start before they stop is refused, and nothing changes.
    let lab = Lab::start("rolling-overlap");
    lab.wait_settled();
    let output = lab.evoctl().args(["redeploy", "production", "--task-definition", "31"]).output().unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).starts_with("error: refused: production's deployments start the new task before stopping the old one (maximumPercent 200): two connections on one number; nothing was changed\n"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(stops(&lab), 0);
}

/// Ctrl-C while the redeploy waits for the old task to stop: exit 130 at once, saying what was
/// sent, that no new task was seen yet, and what to run next (ECS goes on without evoctl).
#[test]
fn ctrl_c_during_a_redeploy_says_where_it_stopped_and_what_to_run_next() {
    // Slow stops, so the interrupt lands while the old task is stopping.
    let lab = Lab::start_with("seed", &["--task-stop-ms", "8000"]);
    lab.wait_settled();
    let old = lab.first_task_id();
    let child = lab.spawn(&["redeploy", "production", "--yes"]);
    wait_until(Duration::from_secs(30), "the redeploy's StopTask", || {
        lab.journal().iter().any(|e| e["action"] == "StopTask").then_some(())
    });
    crate::ending::signal(&child, rustix::process::Signal::INT);
    let (exit, _, stderr) = crate::ending::finish(child, Duration::from_secs(1));
    assert_eq!(exit, Some(130), "{stderr}");
    assert!(
        stderr.ends_with(&format!(
            "interrupted (Ctrl-C) while task {old} stops: StopTask was sent, so ECS goes on stopping it and then starts the new task; no new task was seen yet\n\
             \x20 fix: `evoctl status production` shows when the new task runs; then `evoctl instance state production` says whether the number is still linked (if not: `evoctl connect production`)\n"
        )),
        "{stderr}"
    );
}
