//! `evoctl status` and `evoctl task` against the lab's seed and staging-up scenarios.

use crate::support::{Lab, json_stdout, text, wait_until};
use serde_json::json;
use std::time::Duration;

#[test]
fn status_json_on_seed_shows_the_seed_figures() {
    let lab = Lab::start("seed");
    let output = lab.evoctl().args(["--output", "json", "status"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    assert_eq!(report["schema"], "evoctl.status/v1");
    assert_eq!(report["region"], "us-east-1");
    let envs = report["environments"].as_array().unwrap();
    assert_eq!(envs.len(), 2);

    let staging = &envs[0];
    assert_eq!(staging["env"], "staging");
    assert_eq!(staging["cluster"], "alinhou-staging");
    assert_eq!(staging["service"], "EvolutionService");
    assert_eq!(staging["desired_count"], 0);
    assert_eq!(staging["running_count"], 0);
    assert_eq!(staging["pending_count"], 0);
    assert_eq!(staging["scalable_target"], json!({"min_capacity": 0, "max_capacity": 0}));
    assert_eq!(staging["deployment"], json!({"maximum_percent": 100, "minimum_healthy_percent": 0}));
    assert_eq!(staging["tasks"], json!([]));

    let production = &envs[1];
    assert_eq!(production["env"], "production");
    assert_eq!(production["desired_count"], 1);
    assert_eq!(production["running_count"], 1);
    assert_eq!(production["scalable_target"], json!({"min_capacity": 1, "max_capacity": 1}));
    let tasks = production["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["last_status"], "RUNNING");
    assert_eq!(tasks[0]["desired_status"], "RUNNING");
    assert_eq!(tasks[0]["exec_agent"], "RUNNING");
    assert_eq!(tasks[0]["platform_version"], "1.4.0");
    assert_eq!(tasks[0]["id"].as_str().unwrap().len(), 32);
    assert!(tasks[0]["arn"].as_str().unwrap().ends_with(tasks[0]["id"].as_str().unwrap()));
    assert!(output.stderr.is_empty(), "stderr: {}", text(&output.stderr));
    // As configured, nothing stopped: no mark, no stop to explain.
    assert_eq!(report["ok"], true);
    for env in envs {
        assert_eq!((&env["drift"], &env["unsafe"]), (&json!([]), &json!([])), "{}", env["env"]);
        assert_eq!((&env["last_stopped"], &env["latest_event"]), (&json!(null), &json!(null)), "{}", env["env"]);
    }
}

#[test]
fn status_table_lists_services_and_tasks() {
    let lab = Lab::start("seed");
    let report = json_stdout(&lab.evoctl().args(["--output", "json", "status"]).output().unwrap());
    let task = &report["environments"][1]["tasks"][0];
    let (id, started) = (task["id"].as_str().unwrap(), task["started_at"].as_str().unwrap());
    assert_eq!(started.len(), "2026-11-22T00:00:00Z".len(), "{started}");
    let output = lab.evoctl().arg("status").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "ENV         CLUSTER             SERVICE           DESIRED  RUNNING  PENDING  MIN/MAX  DEPLOY MAX/MIN%  LIVE  CHECK\n\
             staging     alinhou-staging     EvolutionService  0        0        0        0/0      100/0            0     ok\n\
             production  alinhou-production  EvolutionService  1        1        0        1/1      100/0            1     ok\n\
             \n\
             ENV         TASK                              STATUS   STARTED               EXEC AGENT\n\
             production  {id}  RUNNING  {started}  RUNNING\n"
        )
    );
}

#[test]
fn status_of_one_named_env_and_an_unknown_env() {
    let lab = Lab::start("seed");
    let output = lab.evoctl().args(["--output", "json", "status", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let report = json_stdout(&output);
    assert_eq!(report["environments"].as_array().unwrap().len(), 1);
    assert_eq!(report["environments"][0]["env"], "production");

    let output = lab.evoctl().args(["status", "prod"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("unknown environment `prod`"), "{stderr}");
    assert!(stderr.contains("staging, production"), "{stderr}");
}

#[test]
fn task_prints_the_production_task_id_and_fails_for_staging() {
    let lab = Lab::start("seed");
    let status = json_stdout(&lab.evoctl().args(["--output", "json", "status", "production"]).output().unwrap());
    let id = status["environments"][0]["tasks"][0]["id"].as_str().unwrap().to_owned();

    let output = lab.evoctl().args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{id}\n"));

    let output = lab.evoctl().args(["--output", "json", "task", "production"]).output().unwrap();
    let report = json_stdout(&output);
    assert_eq!(report["task_id"], id.as_str());
    assert_eq!(report["last_status"], "RUNNING");

    let output = lab.evoctl().args(["task", "staging"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(output.stdout.is_empty());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "no live task for staging (service EvolutionService in alinhou-staging: desired 0, running 0, pending 0)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("fix: staging is configured to run no task (0/0)"), "{stderr}");
}

#[test]
fn two_live_production_tasks_are_refused_with_exit_4() {
    let lab = Lab::start("staging-up");
    let added =
        lab.control("POST", "/tasks", Some(&json!({"cluster": "alinhou-production", "service": "EvolutionService"})));
    let extra = added["task_ids"][0].as_str().unwrap().to_owned();
    let output = lab.evoctl().args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("2 live tasks for production where there must be one"), "{stderr}");
    assert!(stderr.contains(&extra), "{stderr}");

    // staging-up really has staging live as well.
    let output = lab.evoctl().args(["task", "staging"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn json_errors_are_one_document_on_stdout() {
    let lab = Lab::start("seed");
    let output = lab.evoctl().args(["--output", "json", "task", "staging"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    let document = json_stdout(&output);
    assert_eq!(document["schema"], "evoctl.error/v1");
    assert_eq!(document["error"]["kind"], "not_found");
    assert_eq!(document["error"]["exit_code"], 3);
}

#[test]
fn discovery_lists_desired_running_then_stopped_beside_describe_services() {
    let lab = Lab::start("seed");
    lab.control("POST", "/faults", Some(&json!({"latency_ms": 150})));
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["task", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let journal = lab.journal();
    let list_tasks: Vec<_> = journal.iter().filter(|e| e["action"] == "ListTasks").collect();
    let statuses: Vec<_> = list_tasks.iter().map(|e| e["parameters"]["desiredStatus"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["RUNNING", "STOPPED"]);
    for entry in &list_tasks {
        assert_eq!(entry["parameters"]["serviceName"], "EvolutionService");
    }
    let ms = |e: &serde_json::Value, key: &str| e[key].as_f64().unwrap();
    // RUNNING is answered before STOPPED is asked: a task the scheduler stops in between is in
    // the second list (listed at once, it could be in neither, and a wait for 0 ends early).
    assert!(ms(list_tasks[0], "end_ms") <= ms(list_tasks[1], "start_ms"), "{journal:?}");
    // DescribeServices runs beside the listing (each call takes >= 150 ms).
    let describe = journal.iter().find(|e| e["action"] == "DescribeServices").unwrap();
    assert!(
        ms(list_tasks[0], "start_ms") < ms(describe, "end_ms")
            && ms(describe, "start_ms") < ms(list_tasks[0], "end_ms"),
        "{journal:?}"
    );
}

#[test]
fn a_scaled_up_service_shows_the_task_lifecycle() {
    let lab = Lab::start("seed");
    // Nothing in evoctl scales yet: drive the lab through its AWS API with the AWS CLI.
    let output = crate::awscli::aws(&lab)
        .args([
            "ecs",
            "update-service",
            "--cluster",
            "alinhou-staging",
            "--service",
            "EvolutionService",
            "--desired-count",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let agent = wait_until(Duration::from_secs(20), "the staging task's exec agent RUNNING", || {
        let output = lab.evoctl().args(["--output", "json", "status", "staging"]).output().unwrap();
        let report = json_stdout(&output);
        let task = report["environments"][0]["tasks"].get(0).cloned()?;
        (task["exec_agent"] == "RUNNING").then_some(task)
    });
    assert_eq!(agent["last_status"], "RUNNING");
}

#[test]
fn status_check_marks_the_conflict_loop_unsafe_and_drifted_and_exits_1() {
    let lab = Lab::start("conflict-loop");
    let report = json_stdout(&lab.evoctl().args(["--output", "json", "status"]).output().unwrap());
    let ids: Vec<String> = report["environments"][1]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(report["ok"], false);
    assert_eq!(
        report["environments"][1]["unsafe"],
        json!([format!("2 live tasks on one number: {}, {}", ids[0], ids[1])])
    );
    assert_eq!(report["environments"][1]["drift"], json!(["2 live task(s), configured 1/1"]));
    assert_eq!((&report["environments"][0]["unsafe"], &report["environments"][0]["drift"]), (&json!([]), &json!([])));

    let output = lab.evoctl().args(["status", "--check"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let marks = stdout.lines().take(3).collect::<Vec<_>>().join("\n");
    assert_eq!(
        marks,
        "ENV         CLUSTER             SERVICE           DESIRED  RUNNING  PENDING  MIN/MAX  DEPLOY MAX/MIN%  LIVE  CHECK\n\
         staging     alinhou-staging     EvolutionService  0        0        0        0/0      100/0            0     ok\n\
         production  alinhou-production  EvolutionService  1        2        0        1/1      100/0            2     UNSAFE,drift"
    );
    assert!(
        stdout.ends_with(&format!(
            "\nENV         WHAT    DETAIL\n\
             production  UNSAFE  2 live tasks on one number: {}, {}\n\
             production  drift   2 live task(s), configured 1/1\n",
            ids[0], ids[1]
        )),
        "{stdout}"
    );
    // Without --check the same report is information: exit 0.
    let output = lab.evoctl().args(["status"]).output().unwrap();
    assert_eq!((output.status.code(), text(&output.stdout)), (Some(0), stdout));

    // One environment asked for: the others of its number are read to judge it, not shown.
    let output = lab.evoctl().args(["--output", "json", "status", "--check", "staging"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(json_stdout(&output)["environments"].as_array().unwrap().len(), 1);

    let seed = Lab::start("seed");
    let output = seed.evoctl().args(["status", "--check"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
}

#[test]
fn status_check_marks_two_live_environments_of_one_number() {
    let lab = Lab::start("staging-up");
    lab.wait_settled();
    let output = lab.evoctl().args(["--output", "json", "status", "--check", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    let production = &report["environments"][0];
    assert_eq!(production["env"], "production");
    assert_eq!(production["unsafe"], json!(["live together with staging (1 live task(s)) on number `shared`"]));
    assert_eq!(production["drift"], json!([]));
}

#[test]
fn status_shows_why_a_task_stopped_within_the_hour_and_the_services_latest_event() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let before = json_stdout(&lab.evoctl().args(["--output", "json", "status", "production"]).output().unwrap());
    let old = before["environments"][0]["tasks"][0]["id"].as_str().unwrap().to_owned();
    // A restart: ECS replaces the task with a new deployment.
    let output = crate::awscli::aws(&lab)
        .args([
            "ecs",
            "update-service",
            "--cluster",
            "alinhou-production",
            "--service",
            "EvolutionService",
            "--force-new-deployment",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = wait_until(Duration::from_secs(20), "the replaced task stopped and the service steady", || {
        let report = json_stdout(&lab.evoctl().args(["--output", "json", "status", "production"]).output().unwrap());
        let env = &report["environments"][0];
        (env["last_stopped"]["id"] == old.as_str()
            && env["latest_event"]["message"] == "(service EvolutionService) has reached a steady state.")
            .then_some(report)
    });
    let env = &report["environments"][0];
    assert_eq!(env["last_stopped"]["stopped_reason"], "Task stopped by deployment");
    assert_eq!(env["last_stopped"]["stop_code"], "ServiceSchedulerInitiated");
    let new = env["tasks"][0]["id"].as_str().unwrap();
    assert_ne!(new, old);
    let (stopped_at, event_at) =
        (env["last_stopped"]["stopped_at"].as_str().unwrap(), env["latest_event"]["at"].as_str().unwrap());
    assert_eq!(report["ok"], true, "a restart is no drift");

    let output = lab.evoctl().args(["status", "--check", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.ends_with(&format!(
            "\nENV         WHAT     DETAIL\n\
             production  stopped  task {old} at {stopped_at}: Task stopped by deployment (ServiceSchedulerInitiated)\n\
             production  event    {event_at} (service EvolutionService) has reached a steady state.\n"
        )),
        "{stdout}"
    );
}
