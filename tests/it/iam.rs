//! The IAM policies `evoctl iam-policy` prints (docs/iam) against the lab enforcing them as the
//! caller's only identity policy (`POST /_lab/identity-policy`, evaluated by the lab's own IAM
//! model): with the whole document every command of its class runs as it does unrestricted, and
//! without any one of its actions at least one command of the class fails with IAM's refusal
//! naming that action. The lab runs `kms-exec` (the seed, with exec sessions encrypted under the
//! clusters' KMS keys) so `kms:GenerateDataKey` is called too.

use super::support::{EVOCTL, Lab, in_parallel, text};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Output;

const READ_ONLY: &str = include_str!("../../docs/iam/read-only.json");
const OPERATOR: &str = include_str!("../../docs/iam/operator.json");

/// The scenario every run uses.
const SCENARIO: &str = "kms-exec";
/// The seed's operator role and the ExternalId its trust policy asks for.
const ROLE: &str =
    "aws = { role_arn = \"arn:aws:iam::123456789012:role/EvoctlOperator\", external_id = \"alinhou-ops\" }\n";

/// One command run: its arguments (`{task}` is the live production task, `{file}` a local file),
/// the lab faults it runs under, how its config differs from the lab's, and its exit code with
/// the whole policy.
struct Step {
    name: &'static str,
    args: &'static [&'static str],
    faults: Option<fn() -> Value>,
    config: Config,
    exit: i32,
}

#[derive(Clone, Copy, PartialEq)]
enum Config {
    Lab,
    /// Production is read through the seed's operator role (STS AssumeRole).
    Role,
    /// Production's scaling is 0/0 (the lab runs it at 1/1): `scale production --apply`
    /// registers the target and updates the service.
    ProductionDown,
}

/// A socket cut every second while the command runs: the session is resumed.
fn cut_sockets() -> Value {
    json!({"disconnect_every_ms": 1000})
}

/// The socket cut once, after the agent's second frame: a session shorter than a second (doctor's)
/// is resumed too, whatever the machine's speed.
fn cut_once() -> Value {
    json!({"disconnect_after_frames": 2})
}

const fn step(name: &'static str, args: &'static [&'static str]) -> Step {
    Step { name, args, faults: None, config: Config::Lab, exit: 0 }
}

/// The read-only class: `status`, `audit`, `doctor`, `logs`, `conflicts`.
fn read_only_steps() -> Vec<Step> {
    vec![
        step("status", &["status"]),
        step("audit", &["audit"]),
        step("doctor", &["doctor", "production"]),
        step("logs", &["logs", "production"]),
        step("conflicts", &["conflicts", "production", "--sample", "1s"]),
        step("conflicts-verbose", &["conflicts", "production", "--sample", "1s", "-v"]),
        Step { config: Config::Role, ..step("status-as-role", &["status"]) },
        Step { faults: Some(cut_once), ..step("doctor-resumed", &["doctor", "production"]) },
    ]
}

/// Every command: the read-only class, then the ones that change things or open sessions.
fn operator_steps() -> Vec<Step> {
    let mut steps = read_only_steps();
    steps.extend([
        step("discover", &["init", "--discover", "--dry-run"]),
        step("exec", &["exec", "production", "--", "echo", "hi"]),
        Step { faults: Some(cut_sockets), ..step("exec-resumed", &["exec", "production", "--", "sleep", "3"]) },
        step("api", &["api", "production", "GET", "/instance/fetchInstances"]),
        step("cp", &["cp", "{file}", "production:/tmp/iam-probe.txt"]),
        step("connect", &["connect", "production"]),
        step("instance-state", &["instance", "state", "production"]),
        step("webhook-show", &["webhook", "show", "production"]),
        step("webhook-test", &["webhook", "test", "production"]),
        step("enforce", &["enforce"]),
        // Metrics are off in the seed's task definition: StartSession, the forward, a 404, exit 1.
        Step { exit: 1, ..step("metrics", &["metrics", "production"]) },
        step("task-stop", &["task", "stop", "production", "{task}", "--yes"]),
        step("redeploy", &["redeploy", "production", "--yes"]),
        Step { config: Config::ProductionDown, ..step("scale-down", &["scale", "production", "--apply"]) },
        step("scale-up", &["scale", "production", "--apply"]),
    ]);
    steps
}

/// How a command shows that it lacks an action.
#[derive(Debug, PartialEq)]
enum Shows {
    /// It fails (another exit code than with the whole policy, not 0) with IAM's refusal naming
    /// the action on stderr.
    Fails,
    /// `doctor`: the layer that needs it fails (exit 1) with the refusal in its report (stdout).
    Reports,
    /// Evoctl goes on without it by design and says so on stderr with these words: its work is
    /// done (the same exit code), but less safely (`ssm:DescribeSessions`: the two-sessions
    /// check then counts only this run's sessions, said at `-v`; `ssm:TerminateSession`: the
    /// remote command may outlive the session, a warning).
    Degrades(&'static str),
}

/// The command of the class that needs each action, and how it shows the action is missing.
fn needs(action: &str, operator: bool) -> (&'static str, Shows) {
    let (name, shows) = match action {
        "ecs:DescribeClusters" => ("doctor", Shows::Reports),
        "ecs:DescribeServices" | "ecs:DescribeTasks" | "ecs:ListTasks" => ("status", Shows::Fails),
        "application-autoscaling:DescribeScalableTargets" => ("status", Shows::Fails),
        "ecs:DescribeTaskDefinition" | "logs:FilterLogEvents" => ("logs", Shows::Fails),
        "application-autoscaling:DescribeScalingPolicies" | "application-autoscaling:DescribeScheduledActions" => {
            ("audit", Shows::Fails)
        }
        "lambda:GetFunctionConfiguration" | "ssm:GetParameter" => ("audit", Shows::Fails),
        "ecs:ExecuteCommand" | "kms:GenerateDataKey" if operator => ("exec", Shows::Fails),
        "ecs:ExecuteCommand" | "kms:GenerateDataKey" => ("doctor", Shows::Reports),
        "ssm:ResumeSession" if operator => ("exec-resumed", Shows::Fails),
        "ssm:ResumeSession" => ("doctor-resumed", Shows::Reports),
        "ssm:DescribeSessions" => ("conflicts-verbose", Shows::Degrades("cannot list the task's open sessions")),
        "ssm:TerminateSession" => (
            "conflicts",
            Shows::Degrades("this caller may not call ssm:TerminateSession (grant it on the session ARNs)"),
        ),
        "sts:AssumeRole" => ("status-as-role", Shows::Fails),
        "ecs:ListClusters" | "ecs:ListServices" | "lambda:ListFunctions" | "lambda:ListTags" => {
            ("discover", Shows::Fails)
        }
        "ecs:StopTask" => ("task-stop", Shows::Fails),
        "ecs:UpdateService" | "application-autoscaling:RegisterScalableTarget" => ("scale-down", Shows::Fails),
        "ssm:StartSession" => ("metrics", Shows::Fails),
        other => panic!("no command of evoctl is known to need {other}: is it in the policy for nothing?"),
    };
    (name, shows)
}

/// A lab holding every caller to `policy`, its tasks settled (which it checks unrestricted).
fn lab_with(policy: &Value) -> Lab {
    let lab = Lab::start_with(SCENARIO, &["--auto-scan-after-ms", "300"]);
    lab.wait_settled();
    lab.control("POST", "/identity-policy", Some(policy));
    lab
}

/// Run `step` in `lab` (its faults only while it runs).
fn run(lab: &Lab, step: &Step) -> Output {
    let file = lab.dir.path().join("iam-probe.txt");
    std::fs::write(&file, "probe\n").expect("probe file");
    let task = if step.args.contains(&"{task}") { production_task(lab) } else { String::new() };
    let args: Vec<String> = step
        .args
        .iter()
        .map(|a| a.replace("{task}", &task).replace("{file}", file.to_str().expect("utf-8 path")))
        .collect();
    let mut command = lab.evoctl();
    if step.config != Config::Lab {
        let original = std::fs::read_to_string(lab.config_path()).expect("lab config");
        let changed = match step.config {
            Config::Role => original.replacen("[env.production]\n", &format!("[env.production]\n{ROLE}"), 1),
            _ => original.replacen(
                "[env.production.scaling]\nmin = 1\nmax = 1\n",
                "[env.production.scaling]\nmin = 0\nmax = 0\n",
                1,
            ),
        };
        assert_ne!(changed, original, "{}: the config change applies", step.name);
        let path = lab.dir.path().join(format!("{}.toml", step.name));
        std::fs::write(&path, changed).expect("changed config");
        command.arg("--config").arg(path);
    }
    if let Some(faults) = step.faults {
        lab.control("POST", "/faults", Some(&faults()));
    }
    let output = command.args(&args).env("AWS_MAX_ATTEMPTS", "1").timeout(std::time::Duration::from_secs(60)).output();
    if step.faults.is_some() {
        lab.control("POST", "/faults", Some(&json!({})));
    }
    output.expect("evoctl runs")
}

/// The live production task's id, read unrestricted.
fn production_task(lab: &Lab) -> String {
    let mut command = super::support::clean_command(EVOCTL, lab.dir.path());
    let output = command.envs(lab.env()).args(["task", "production"]).output().expect("evoctl runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    text(&output.stdout).trim().to_owned()
}

/// Every action a policy allows, in order.
fn actions(policy: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for statement in policy["Statement"].as_array().expect("statements") {
        match &statement["Action"] {
            Value::String(one) => found.push(one.clone()),
            list => {
                found.extend(list.as_array().expect("actions").iter().map(|a| a.as_str().expect("action").to_owned()))
            }
        }
    }
    found
}

/// `policy` without `action` (a statement left with no action is dropped).
fn without(policy: &Value, action: &str) -> Value {
    let mut policy = policy.clone();
    let statements = policy["Statement"].as_array_mut().expect("statements");
    for statement in statements.iter_mut() {
        if let Some(list) = statement["Action"].as_array_mut() {
            list.retain(|a| a != action);
        } else if statement["Action"] == action {
            statement["Action"] = json!([]);
        }
    }
    statements.retain(|s| s["Action"].as_array().is_none_or(|l| !l.is_empty()));
    policy
}

/// With the whole policy every step runs as it does unrestricted, in one lab.
fn every_step_succeeds(policy: &Value, steps: &[Step]) {
    let lab = lab_with(policy);
    for step in steps {
        let output = run(&lab, step);
        assert_eq!(
            output.status.code(),
            Some(step.exit),
            "{} under the whole policy: {}",
            step.name,
            text(&output.stderr)
        );
        if step.name == "metrics" {
            assert!(
                text(&output.stderr).starts_with("error: metrics are off in production: "),
                "{}",
                text(&output.stderr)
            );
        }
        if step.name == "task-stop" || step.name == "redeploy" || step.name == "scale-up" {
            lab.wait_settled();
        }
    }
    // Evoctl's calls (the lab's own, the agent's KMS Decrypt, have no caller) are exactly the
    // policy's actions, none of them refused; GetCallerIdentity needs no permission.
    let journal = lab.journal();
    let denied: Vec<&Value> =
        journal.iter().filter(|e| e["error"].as_str().is_some_and(|c| c.starts_with("AccessDenied"))).collect();
    assert!(denied.is_empty(), "calls refused under the whole policy: {denied:?}");
    let called: BTreeSet<String> = journal
        .iter()
        .filter(|e| e["caller"].is_string())
        .map(|e| format!("{}:{}", e["service"].as_str().expect("service"), e["action"].as_str().expect("action")))
        .filter(|a| a != "sts:GetCallerIdentity")
        .collect();
    assert_eq!(called, actions(policy).into_iter().collect::<BTreeSet<_>>());
}

/// Without any one action, the command that needs it shows IAM's refusal naming it.
fn every_action_is_needed(policy: &Value, steps: &[Step], operator: bool) {
    let all = actions(policy);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), all.len(), "each action once");
    in_parallel(&all, 3, |action| {
        let (name, shows) = needs(action, operator);
        let step = steps.iter().find(|s| s.name == name).expect("the step is of the class");
        let lab = lab_with(&without(policy, action));
        let output = run(&lab, step);
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        let code = output.status.code();
        let refusal = format!("is not authorized to perform: {action} on resource: ");
        let why = format!("{name} without {action}: exit {code:?}\n{stderr}\n{stdout}");
        match shows {
            Shows::Fails => {
                assert!(code != Some(step.exit) && code != Some(0), "{why}");
                assert!(stderr.contains(&refusal), "{why}");
            }
            Shows::Reports => {
                assert_eq!(code, Some(1), "{why}");
                assert!(stdout.lines().any(|l| l.contains("FAIL") && l.contains(&refusal)), "{why}");
            }
            Shows::Degrades(words) => {
                assert_eq!(code, Some(step.exit), "{why}");
                assert!(stderr.contains(words), "{why}");
                assert!(stderr.contains(action.as_str()), "{why}");
            }
        }
    });
}

/// The whole policy's run in its own lab, beside the runs without one action each.
fn policy_is_exactly_enough(document: &str, steps: &[Step], operator: bool) {
    let policy: Value = serde_json::from_str(document).expect("policy JSON");
    std::thread::scope(|scope| {
        scope.spawn(|| every_step_succeeds(&policy, steps));
        every_action_is_needed(&policy, steps, operator);
    });
}

#[test]
fn the_read_only_policy_runs_every_read_command_and_each_action_is_needed() {
    policy_is_exactly_enough(READ_ONLY, &read_only_steps(), false);
}

#[test]
fn the_operator_policy_runs_every_command_and_each_action_is_needed() {
    policy_is_exactly_enough(OPERATOR, &operator_steps(), true);
}

#[test]
fn iam_policy_prints_the_documents_in_both_formats() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (args, document) in [
        (&["iam-policy"][..], OPERATOR),
        (&["iam-policy", "--read-only"][..], READ_ONLY),
        (&["--output", "json", "iam-policy"][..], OPERATOR),
        (&["--output", "json", "iam-policy", "--read-only"][..], READ_ONLY),
    ] {
        let output = super::support::clean_command(EVOCTL, dir.path()).args(args).output().expect("evoctl runs");
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert_eq!(text(&output.stdout), document, "{args:?}");
        assert_eq!(text(&output.stderr), "", "{args:?}");
    }
}

/// The lab refuses what the policy does not allow in each protocol's own shape (JSON 1.1: 400
/// AccessDeniedException; Lambda's REST: 403 AccessDeniedException; STS's query: 403
/// AccessDenied), lets through what it allows, and a Deny wins over an Allow.
#[test]
fn the_lab_refuses_in_each_protocols_shape() {
    let lab = Lab::start(SCENARIO);
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ecs:*", "application-autoscaling:Describe*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "ecs:DescribeTaskDefinition", "Resource": "*"}
    ]});
    lab.control("POST", "/identity-policy", Some(&policy));
    assert_eq!(lab.control("GET", "/identity-policy", None), policy);
    let output = lab.evoctl().args(["logs", "production"]).output().expect("evoctl runs");
    assert_eq!(output.status.code(), Some(5));
    assert_eq!(
        text(&output.stderr),
        "error: DescribeTaskDefinition failed: AccessDeniedException: User: arn:aws:iam::123456789012:user/evoctl-lab is not authorized to perform: ecs:DescribeTaskDefinition on resource: * with an explicit deny in an identity-based policy\n  fix: the caller is not allowed to call DescribeTaskDefinition: grant it in IAM or use another --profile\n"
    );
    let output = lab.evoctl().args(["status"]).output().expect("evoctl runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));

    // Lambda (REST) and STS (query) refused; ECS allowed.
    let policy = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "NotAction": ["lambda:*", "sts:*"], "Resource": "*"}});
    lab.control("POST", "/identity-policy", Some(&policy));
    lab.control("DELETE", "/journal", None);
    let _ = lab.evoctl().args(["audit"]).output().expect("evoctl runs");
    let config = std::fs::read_to_string(lab.config_path()).expect("lab config");
    let role_config = lab.dir.path().join("role.toml");
    std::fs::write(&role_config, config.replacen("[env.production]\n", &format!("[env.production]\n{ROLE}"), 1))
        .expect("config");
    let output =
        lab.evoctl().arg("--config").arg(&role_config).args(["status", "production"]).output().expect("evoctl runs");
    assert_ne!(output.status.code(), Some(0));
    assert!(
        text(&output.stderr).contains("AccessDenied: User: arn:aws:iam::123456789012:user/evoctl-lab is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/EvoctlOperator because no identity-based policy allows the sts:AssumeRole action"),
        "{}",
        text(&output.stderr)
    );
    let refusals: BTreeSet<(String, String, u64, String)> = lab
        .journal()
        .iter()
        .filter(|e| e["status"] != 200)
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (field("service"), field("action"), e["status"].as_u64().unwrap_or_default(), field("error"))
        })
        .collect();
    let expected: BTreeSet<(String, String, u64, String)> = [
        ("lambda", "GetFunctionConfiguration", 403, "AccessDeniedException"),
        ("sts", "AssumeRole", 403, "AccessDenied"),
    ]
    .into_iter()
    .map(|(s, a, c, e)| (s.to_owned(), a.to_owned(), c, e.to_owned()))
    .collect();
    assert_eq!(refusals, expected);

    lab.control("DELETE", "/identity-policy", None);
    assert_eq!(lab.control("GET", "/identity-policy", None), Value::Null);
    let output = lab.evoctl().args(["logs", "production"]).output().expect("evoctl runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}
