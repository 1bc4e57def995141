//! `evoctl task stop ENV TASK_ID`: one task ended with a reason (the lab's state and journal are
//! the oracle), the refusals (another environment's task, a protected environment's only live
//! task) that change nothing, and the wait that ends at STOPPED or at `--timeout`.

use crate::support::{Lab, json_stdout, text, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

/// The StopTask calls the lab answered.
fn stops(lab: &Lab) -> Vec<Value> {
    lab.journal().into_iter().filter(|e| e["action"] == "StopTask").collect()
}

#[test]
fn the_extra_task_of_a_conflict_loop_is_stopped_with_its_reason() {
    let lab = Lab::start("conflict-loop");
    lab.wait_settled();
    let status = json_stdout(&lab.evoctl().args(["--output", "json", "status", "production"]).output().unwrap());
    let live: Vec<String> = status["environments"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(live.len(), 2, "{status}");
    let (kept, extra) = (&live[0], &live[1]);
    // audit names it, with this command.
    let audit =
        json_stdout(&lab.evoctl().args(["--output", "json", "audit", "--rule", "live-tasks"]).output().unwrap());
    assert_eq!(
        audit["findings"][0]["fix"],
        format!("stop the extra task: `evoctl task stop production {extra}` (keeps {kept}, the longest-running)")
    );

    let output =
        lab.evoctl().args(["task", "stop", "production", extra, "--reason", "extra task in a loop"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("task {extra} of production is STOPPED (extra task in a loop)\n"));
    let stderr = text(&output.stderr);
    let mut lines = stderr.lines();
    assert_eq!(
        lines.next(),
        Some(format!("StopTask sent for {extra} (extra task in a loop); waiting until it is STOPPED…").as_str())
    );
    for line in lines {
        let progress = line.strip_prefix(&format!("task {extra}: ")).unwrap_or_else(|| panic!("{stderr}"));
        assert!(["DEACTIVATING", "STOPPING", "DEPROVISIONING"].contains(&progress), "{stderr}");
    }
    let stopped = lab.task(extra);
    assert_eq!(
        (&stopped["lastStatus"], &stopped["stopCode"], &stopped["stoppedReason"]),
        (&json!("STOPPED"), &json!("UserInitiated"), &json!("extra task in a loop"))
    );
    assert_eq!(lab.task(kept)["lastStatus"], "RUNNING", "the other task runs on");
    let journal = stops(&lab);
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0]["parameters"]["reason"], "extra task in a loop");
    assert_eq!(journal[0]["parameters"]["cluster"], "alinhou-production");

    let output = lab.evoctl().args(["audit", "--rule", "live-tasks"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));

    // Again: it is already STOPPED; nothing is sent.
    let output = lab.evoctl().args(["--output", "json", "task", "stop", "production", extra]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    assert_eq!(
        (
            &report["schema"],
            &report["stop_sent"],
            &report["last_status"],
            &report["stopped_reason"],
            &report["task_id"]
        ),
        (
            &json!("evoctl.task-stop/v1"),
            &json!(false),
            &json!("STOPPED"),
            &json!("extra task in a loop"),
            &json!(extra)
        )
    );
    assert_eq!(text(&output.stderr), format!("task {extra} is already STOPPED: extra task in a loop\n"));
    assert_eq!(stops(&lab).len(), 1);
}

#[test]
fn a_protected_environments_only_task_needs_yes_and_another_environments_task_is_refused() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let only = lab.first_task_id();
    let output = lab.evoctl().args(["task", "stop", "production", &only]).output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: refused: {only} is the only live task of production, which is protected: stopping it leaves production with no WhatsApp connection until ECS starts another task; nothing was stopped\n  \
             fix: run `evoctl task stop production {only} --yes` if you mean it\n"
        )
    );
    let output = lab.evoctl().args(["task", "stop", "staging", &only]).output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: refused: task {only} is not one of staging's: cluster alinhou-staging has no such task; nothing was stopped\n  \
             fix: staging's live tasks: none\n"
        )
    );
    let output = lab
        .evoctl()
        .args(["--output", "json", "task", "stop", "production", "0123456789abcdef0123456789abcdef"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(
        json_stdout(&output)["error"],
        json!({"exit_code": 4, "kind": "refused",
               "message": "refused: task 0123456789abcdef0123456789abcdef is not one of production's: cluster alinhou-production has no such task; nothing was stopped",
               "fix": format!("production's live tasks: {only}")})
    );
    for (args, message) in [
        (vec!["task", "stop", "production", "not/a task"], "error: `not/a task` is not an ECS task id or ARN\n"),
        (
            vec!["task", "stop", "production", &only, "--reason", ""],
            "error: --reason must be 1 to 255 characters (ECS's limit); it has 0\n",
        ),
    ] {
        let output = lab.evoctl().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).starts_with(message), "{}", text(&output.stderr));
    }
    assert_eq!(stops(&lab), Vec::<Value>::new(), "nothing was stopped");
    assert_eq!(lab.task(&only)["lastStatus"], "RUNNING");

    // With --yes it goes, by its full ARN; the service then starts another.
    let arn = lab.task(&only)["taskArn"].as_str().unwrap().to_owned();
    let output = lab.evoctl().args(["task", "stop", "production", &arn, "--yes"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("task {only} of production is STOPPED (evoctl task stop production)\n"));
    assert_eq!(lab.task(&only)["stoppedReason"], "evoctl task stop production");
    // ECS starts one replacement: once every other live task of the service is RUNNING, there
    // is exactly one.
    let others = wait_until(Duration::from_secs(20), "the service's replacement task to be RUNNING", || {
        let state = lab.control("GET", "/state", None);
        let others: Vec<Value> = state["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| {
                t["clusterArn"].as_str().unwrap().ends_with(":cluster/alinhou-production")
                    && t["group"] == "service:EvolutionService"
                    && !t["taskArn"].as_str().unwrap().ends_with(&only)
                    && t["lastStatus"] != "STOPPED"
            })
            .cloned()
            .collect();
        (!others.is_empty() && others.iter().all(|t| t["lastStatus"] == "RUNNING")).then_some(others)
    });
    assert_eq!(others.len(), 1, "{others:#?}");
}

#[test]
fn a_task_that_stays_stopping_ends_the_wait_at_its_timeout() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let draining = lab.add_tasks(&json!({
        "cluster": "alinhou-production", "service": "EvolutionService",
        "desired_status": "STOPPED", "last_status": "DEACTIVATING",
    }));
    let id = &draining[0];
    let output = lab.evoctl().args(["task", "stop", "production", id, "--timeout", "1s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        format!(
            "task {id} is already stopping (DEACTIVATING): Task stopped by deployment\ntask {id}: DEACTIVATING\n\
             error: task {id} is still DEACTIVATING after 1 s\n  fix: ECS goes on stopping it: `evoctl status production` shows when it is STOPPED\n"
        )
    );
    assert_eq!(stops(&lab), Vec::<Value>::new(), "a task already stopping is not stopped again");
}
