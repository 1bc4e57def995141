//! Two exec sessions per task at most (the agent's SessionWorkersLimit; a fourth concurrent
//! session wedges ECS Exec on the task): with two open on the task, by anyone, evoctl refuses a
//! third before ExecuteCommand and names the two; once one ends, it runs.

use crate::ending::assert_ended;
use crate::support::{Lab, text, wait_until};
use std::time::Duration;

fn alive_sessions(lab: &Lab) -> Vec<String> {
    let rows = lab.control("GET", "/processes", None);
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["alive"] == true)
        .map(|r| r["session_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_third_session_on_a_task_is_refused_naming_the_two_open() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let mut first = lab.spawn(&["exec", "production", "--", "sleep", "41"]);
    wait_until(Duration::from_secs(20), "the first session's command to run", || {
        (alive_sessions(&lab).len() == 1).then_some(())
    });
    let mut second = lab.spawn(&["exec", "production", "--", "sleep", "42"]);
    let open = wait_until(Duration::from_secs(20), "both commands to run", || {
        let alive = alive_sessions(&lab);
        (alive.len() == 2).then_some(alive)
    });
    let account = "123456789012"; // the seed scenario's
    let output = lab.evoctl().args(["exec", "production", "--", "echo", "third"]).output().unwrap();
    let task = lab.first_task_id();
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: task {task} already has 2 ECS Exec sessions open ({} (by arn:aws:iam::{account}:user/lab), {} (by arn:aws:iam::{account}:user/lab)): the agent runs at most 2 per container, and one more can wedge ECS Exec on the task until it restarts\n  fix: wait for one to end, or end it: `aws ssm terminate-session --session-id {}`\n",
            open[0], open[1], open[0]
        )
    );
    assert_eq!(output.status.code(), Some(125), "exec: evoctl could not run the command");
    let journal = lab.journal();
    assert_eq!(journal.iter().filter(|e| e["action"] == "ExecuteCommand").count(), 2, "no third ExecuteCommand");
    assert_eq!(journal.iter().filter(|e| e["action"] == "DescribeSessions").count(), 3);
    // One ends (SIGTERM ends its session): now a new one runs.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(first.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the first evoctl to end", || first.try_wait().unwrap());
    assert_ended(&lab, &open[0]);
    let output = lab.evoctl().args(["exec", "production", "--", "echo", "third"]).output().unwrap();
    assert_eq!(
        (output.status.code(), text(&output.stdout)),
        (Some(0), "third\n".to_owned()),
        "{}",
        text(&output.stderr)
    );
    second.kill().unwrap();
    let _ = second.wait();
}
