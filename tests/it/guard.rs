//! The guard against the lab: `audit` reports exactly the rules each broken scenario breaks,
//! `enforce` / `scale` change scaling in the safe order and refuse unsafe plans, throttling does
//! not change an audit's answer, and an unreadable account is never "clean".

use crate::lab::THROTTLE_SEED;
use crate::support::{
    Lab, calls_by_action, creations_since, in_parallel, json_stdout, live_clusters_at, text, wait_until,
};
use serde_json::{Value, json};
use std::time::Duration;

/// Scenario -> the findings `audit` must report, as (rule id, environments).
const EXPECTED: &[(&str, &[(&str, &str)])] = &[
    ("seed", &[]),
    ("staging-up", &[("scaling", "staging"), ("one-live-env", "staging,production")]),
    ("rolling-overlap", &[("deployment-overlap", "production")]),
    ("shared-db-uri", &[("shared-database", "staging,production")]),
    ("shared-redis", &[("shared-redis", "staging,production")]),
    ("default-api-key", &[("default-api-key", "production")]),
    ("scheduled-staging", &[("scaling-schedule", "staging")]),
    ("exec-disabled", &[("exec-readiness", "production")]),
    ("agent-stopped", &[("exec-readiness", "production")]),
    ("empty-jwt-key", &[("webhook-jwt", "production")]),
    ("app-mock-wrong", &[("app-expectations", "production")]),
    ("conflict-loop", &[("live-tasks", "production"), ("conflict-loop", "production")]),
    // Staging's loop in the group both stages share is staging's alone.
    ("shared-log-group", &[("conflict-loop", "staging")]),
    ("ephemeral-keys", &[("session-persistence", "production")]),
    ("efs-keys", &[]),
    ("pairing-refresh", &[("phone-version", "production")]),
];

/// Values from the seed's task definitions and parameters that an audit must never print.
const SEED_SECRETS: &[&str] = &[
    "lab-staging-api-key-4f1d9c2b7e",
    "lab-production-api-key-9a7c3e1f5d",
    "lab-staging-db-pass",
    "lab-production-db-pass",
    "lab-production-webhook-secret-77c1e0",
    "lab-staging-webhook-secret-3b9d42",
    "429683C4C977415CAAFCCE10F7D57E11",
];

fn findings(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let envs: Vec<&str> = f["envs"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
            (f["rule"].as_str().unwrap().to_owned(), envs.join(","))
        })
        .collect()
}

fn audit_json(lab: &Lab) -> (Option<i32>, Value) {
    let output = lab.evoctl().args(["audit", "--format", "json"]).output().unwrap();
    (output.status.code(), json_stdout(&output))
}

#[test]
fn audit_reports_exactly_the_rules_each_scenario_breaks() {
    in_parallel(EXPECTED, 6, |(scenario, expected)| {
        let lab = Lab::start(scenario);
        lab.wait_settled();
        if *scenario == "conflict-loop" {
            // The loop needs a few replacements before it shows in the logs.
            wait_until(Duration::from_secs(20), "the conflict loop in the logs", || {
                let code =
                    lab.evoctl().args(["conflicts", "production", "--sample", "0"]).output().unwrap().status.code();
                (code == Some(1)).then_some(())
            });
        }
        let (code, report) = audit_json(&lab);
        let printed = report.to_string();
        for secret in SEED_SECRETS {
            assert!(!printed.contains(secret), "{scenario}: the audit printed a secret");
        }
        let want: Vec<(String, String)> =
            expected.iter().map(|(rule, envs)| (rule.to_string(), envs.to_string())).collect();
        assert_eq!(findings(&report), want, "{scenario}: {report:#}");
        assert_eq!(code, Some(if expected.is_empty() { 0 } else { 1 }), "{scenario}");
        assert_eq!(report["schema"], "evoctl.audit/v1");
        assert_eq!(report["clean"], expected.is_empty());
        assert_eq!(report["rules"].as_array().unwrap().len(), 23);
    });
}

#[test]
fn audit_table_and_github_formats_are_exact() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let output = lab.evoctl().arg("audit").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stdout), "audit clean: 23 rules over staging, production\n");
    let output = lab.evoctl().args(["audit", "--format", "github"]).output().unwrap();
    assert_eq!(text(&output.stdout), "::notice title=evoctl audit::clean: 23 rules over staging, production\n");

    let lab = Lab::start("rolling-overlap");
    lab.wait_settled();
    let output = lab.evoctl().args(["audit", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stdout),
        "SEVERITY  RULE                ENV         EVIDENCE\n\
         error     deployment-overlap  production  deploymentConfiguration maximumPercent 200 / minimumHealthyPercent 100: a deploy starts the new task before stopping the old one: two connections on one number\n\
         \n\
         fixes:\n  \
         deployment-overlap (production): set maximumPercent 100 and minimumHealthyPercent 0 (SST: transform.service { deploymentMaximumPercent: 100, deploymentMinimumHealthyPercent: 0 }; now: `aws ecs update-service --cluster alinhou-production --service EvolutionService --deployment-configuration maximumPercent=100,minimumHealthyPercent=0`)\n\
         \n\
         1 finding(s): 23 rules over production\n"
    );
    let output = lab.evoctl().args(["audit", "--format", "github", "--rule", "deployment-overlap"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stdout),
        "::error title=evoctl audit deployment-overlap (production)::deploymentConfiguration maximumPercent 200 / minimumHealthyPercent 100: a deploy starts the new task before stopping the old one: two connections on one number. Fix: set maximumPercent 100 and minimumHealthyPercent 0 (SST: transform.service { deploymentMaximumPercent: 100, deploymentMinimumHealthyPercent: 0 }; now: `aws ecs update-service --cluster alinhou-production --service EvolutionService --deployment-configuration maximumPercent=100,minimumHealthyPercent=0`)\n"
    );
    // Skipping the rule that fires leaves the audit clean; an unknown id is a usage error.
    let output = lab.evoctl().args(["audit", "--skip", "deployment-overlap"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stdout), "audit clean: 22 rules over staging, production\n");
    let output = lab.evoctl().args(["audit", "--rule", "deploy-overlap"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).starts_with("error: unknown rule id `deploy-overlap`\n  fix: use one of: scaling, "));
}

#[test]
fn audit_under_30_percent_throttling_returns_the_same_findings() {
    let lab = Lab::start("staging-up");
    lab.wait_settled();
    lab.reset_faults(&json!({}));
    let calm_output = lab.evoctl().args(["audit", "--format", "json"]).output().unwrap();
    assert_eq!(calm_output.status.code(), Some(1));
    let logical = calls_by_action(&lab.journal());
    for run in 0..2 {
        // Seeded: the same answers are throttled on every run, whatever the concurrency.
        lab.reset_faults(&json!({"throttle_rate": 0.3, "seed": THROTTLE_SEED}));
        let output = lab.evoctl().args(["audit", "--format", "json"]).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "run {run}: {}", text(&output.stderr));
        assert_eq!(text(&output.stdout), text(&calm_output.stdout), "run {run}: the same report");
        crate::support::assert_throttled_exactly(&lab.journal(), &logical, AUDIT_THROTTLED, run);
    }
}

/// What [`THROTTLE_SEED`] throttles in an audit of `staging-up`: (action, throttled answers).
const AUDIT_THROTTLED: &[(&str, usize)] = &[
    ("DescribeScalableTargets", 1),
    ("DescribeScalingPolicies", 0),
    ("DescribeScheduledActions", 2),
    ("DescribeServices", 2),
    ("DescribeTaskDefinition", 2),
    ("DescribeTasks", 1),
    ("FilterLogEvents", 0),
    ("GetFunctionConfiguration", 0),
    ("GetParameter", 2),
    ("ListTasks", 1),
];

#[test]
fn audit_with_the_lab_stopped_exits_5_never_clean() {
    let mut lab = Lab::start("seed");
    lab.stop();
    let output = lab.evoctl().env("AWS_MAX_ATTEMPTS", "2").args(["audit", "--format", "json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    assert_eq!(report["schema"], "evoctl.error/v1");
    assert_eq!(report["error"]["exit_code"], 5);
    let output = lab.evoctl().env("AWS_MAX_ATTEMPTS", "1").args(["audit", "--format", "github"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5));
    assert!(
        text(&output.stdout).starts_with("::error title=evoctl audit could not read the account::"),
        "{}",
        text(&output.stdout)
    );
    assert!(!text(&output.stdout).contains("clean"));
}

fn writes(journal: &[Value]) -> Vec<(String, String)> {
    journal
        .iter()
        .filter(|e| e["action"] == "RegisterScalableTarget" || e["action"] == "UpdateService")
        .map(|e| {
            let cluster = e["parameters"]["cluster"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| e["parameters"]["ResourceId"].as_str().map(|r| r.split('/').nth(1).unwrap().to_owned()))
                .unwrap();
            (e["action"].as_str().unwrap().to_owned(), cluster)
        })
        .collect()
}

#[test]
fn enforce_brings_staging_down_target_first_then_is_idempotent() {
    let lab = Lab::start("staging-up");
    lab.wait_settled();
    let output = lab.evoctl().arg("enforce").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        text(&output.stdout),
        "ENV         NOW (MIN/MAX)         WANTED         PLAN\n\
         staging     1/1 desired 1 live 1  0/0 desired 0  3 change(s)\n\
         production  1/1 desired 1 live 1  1/1 desired 1  -\n\
         1. staging: RegisterScalableTarget min 0 max 0\n\
         2. staging: UpdateService desiredCount 0\n\
         3. staging: wait until 0 live task(s)\n\
         \n\
         nothing changed: run again with --apply to make these changes\n"
    );
    assert_eq!(writes(&lab.journal()), Vec::<(String, String)>::new(), "a plan changes nothing");

    let output = lab.evoctl().args(["enforce", "--apply"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "applied and verified: staging 0/0 desired 0\n");
    assert!(text(&output.stderr).contains("staging: verified\n"), "{}", text(&output.stderr));
    assert_eq!(
        writes(&lab.journal()),
        [
            ("RegisterScalableTarget".to_owned(), "alinhou-staging".to_owned()),
            ("UpdateService".into(), "alinhou-staging".into())
        ]
    );
    let status = json_stdout(&lab.evoctl().args(["--output", "json", "status", "staging"]).output().unwrap());
    assert_eq!(status["environments"][0]["tasks"], json!([]));
    assert_eq!(status["environments"][0]["scalable_target"], json!({"min_capacity": 0, "max_capacity": 0}));
    let output = lab.evoctl().arg("audit").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));

    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["enforce", "--apply"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stdout), "nothing to do: staging, production already match their configured scaling\n");
    assert_eq!(writes(&lab.journal()), Vec::<(String, String)>::new());
}

#[test]
fn enforce_takes_the_env_going_down_before_the_one_going_up() {
    // Staging is up and production is down: the swap must never have both live.
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start(&crate::support::swapped_scenario(dir.path()));
    lab.wait_settled();
    let output = lab.evoctl().args(["--output", "json", "enforce", "--apply"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let plan = json_stdout(&output);
    assert_eq!(plan["schema"], "evoctl.plan/v1");
    assert_eq!(plan["applied"], true);
    assert_eq!(plan["environments"][0]["env"], "staging");
    assert_eq!(plan["environments"][1]["env"], "production");
    let journal = lab.journal();
    assert_eq!(
        writes(&journal),
        [
            ("RegisterScalableTarget".to_owned(), "alinhou-staging".to_owned()),
            ("UpdateService".into(), "alinhou-staging".into()),
            ("RegisterScalableTarget".into(), "alinhou-production".into()),
            ("UpdateService".into(), "alinhou-production".into()),
        ]
    );
    // The lab's own timeline: production's first new task was created only after staging's
    // last task had STOPPED, so no instant had both environments of the number live.
    let timeline = lab.timeline();
    let is = |e: &Value, cluster: &str, status: &str| e["cluster"] == cluster && e["last_status"] == status;
    let staging_stopped = timeline.iter().rposition(|e| is(e, "alinhou-staging", "STOPPED")).expect("staging stopped");
    let production_created =
        timeline.iter().position(|e| is(e, "alinhou-production", "PROVISIONING")).expect("production started");
    assert!(staging_stopped < production_created, "{timeline:#?}");
    assert!(timeline[staging_stopped]["t_ms"].as_u64() < timeline[production_created]["t_ms"].as_u64());
    for upto in 0..=timeline.len() {
        assert!(live_clusters_at(&timeline, upto).len() <= 1, "two live after {:#?}", &timeline[..upto]);
    }
    assert_eq!(creations_since(&timeline, 0).len(), 2, "staging's seeded task and production's new one");
    let last = timeline.last().unwrap();
    assert!(is(last, "alinhou-production", "RUNNING"), "{last}");
    assert_eq!(live_clusters_at(&timeline, timeline.len()), ["alinhou-production"]);
    assert_eq!(lab.evoctl().arg("audit").output().unwrap().status.code(), Some(0));
}

#[test]
fn scale_refuses_to_bring_an_env_up_while_another_is_live() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let path = lab.dir.path().join("both-up.toml");
    let config = std::fs::read_to_string(lab.config_path()).unwrap().replacen(
        "[env.staging.scaling]\nmin = 0\nmax = 0",
        "[env.staging.scaling]\nmin = 1\nmax = 1",
        1,
    );
    assert!(config.contains("[env.staging.scaling]\nmin = 1\nmax = 1"), "{config}");
    std::fs::write(&path, config).unwrap();
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().arg("--config").arg(&path).args(["scale", "staging", "--apply"]).output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(
        text(&output.stderr),
        "error: refused: this would leave staging (1 task(s)) and production (1 task(s)) live together on number `shared`\n  \
         fix: bring production down first (`evoctl scale production --apply`), or run `evoctl enforce --apply`\n"
    );
    assert_eq!(writes(&lab.journal()), Vec::<(String, String)>::new(), "nothing was changed");
    let output = lab.evoctl().arg("--config").arg(&path).args(["enforce", "--apply"]).output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert!(text(&output.stderr).contains("fix: evoctl.toml configures them to run together"));
}

#[test]
fn conflicts_on_the_conflict_scenario_report_a_two_second_loop() {
    let lab = Lab::start("conflict-loop");
    let report = wait_until(Duration::from_secs(30), "six conflict lines", || {
        let output =
            lab.evoctl().args(["--output", "json", "conflicts", "production", "--sample", "0"]).output().unwrap();
        let report = json_stdout(&output);
        (report["logs"]["events"].as_u64()? >= 6).then_some((output.status.code(), report))
    });
    assert_eq!(report.0, Some(1));
    assert_eq!(report.1["loop"], true);
    assert_eq!(report.1["logs"]["tasks"].as_array().unwrap().len(), 2);
    let period = report.1["logs"]["period_seconds"].as_f64().unwrap();
    assert!((1.5..=2.6).contains(&period), "period {period}");
}

/// Whether two journal entries were in flight at the same time.
fn overlapping(a: &Value, b: &Value) -> bool {
    let (a0, a1) = (a["start_ms"].as_f64().unwrap(), a["end_ms"].as_f64().unwrap());
    let (b0, b1) = (b["start_ms"].as_f64().unwrap(), b["end_ms"].as_f64().unwrap());
    a0 < b1 && b0 < a1
}

#[test]
fn audit_reads_every_environment_concurrently() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    // Each call takes 400 ms: reads started together overlap even when a loaded machine starts
    // them 100 ms apart (at 100 ms one such run failed); reads in sequence never do.
    lab.control("POST", "/faults", Some(&json!({"latency_ms": 400})));
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().arg("audit").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let journal = lab.journal();
    let find = |action: &str, cluster: &str| {
        journal
            .iter()
            .find(|e| e["action"] == action && e["parameters"]["cluster"] == cluster)
            .unwrap_or_else(|| panic!("{action} for {cluster}"))
            .clone()
    };
    let (staging, production) =
        (find("DescribeServices", "alinhou-staging"), find("DescribeServices", "alinhou-production"));
    assert!(overlapping(&staging, &production), "the environments are read at the same time");
    let targets: Vec<&Value> = journal.iter().filter(|e| e["action"] == "DescribeScalableTargets").collect();
    assert!(overlapping(&staging, targets[0]), "an environment's independent reads overlap");
    // The one chain per environment (service -> task definition -> log events) runs once each:
    // no read is repeated.
    for action in ["DescribeServices", "DescribeTaskDefinition", "FilterLogEvents", "ListTasks"] {
        let per_env = if action == "ListTasks" { 4 } else { 2 };
        assert_eq!(journal.iter().filter(|e| e["action"] == action).count(), per_env, "{action}");
    }
    assert_eq!(targets.len(), 1, "one DescribeScalableTargets for every environment");
}

/// How a command refuses while production has two live tasks.
#[derive(Clone, Copy)]
enum Refusal {
    /// It needs the one live task and names both.
    TwoTasks,
    /// `connect`'s preflight.
    Preflight,
    /// The scaling plan (nothing to scale, but the draining task would stay beside the new state).
    Plan,
}

/// Every command that changes something or talks to Evolution (production is 1/1 in the seed
/// config), and how it must refuse.
const MUTATING: &[(&[&str], Refusal)] = &[
    (&["connect", "production"], Refusal::Preflight),
    (&["instance", "create", "production"], Refusal::TwoTasks),
    (&["instance", "connect", "production"], Refusal::TwoTasks),
    (&["instance", "restart", "production"], Refusal::TwoTasks),
    (&["instance", "logout", "production", "--yes"], Refusal::TwoTasks),
    (&["instance", "delete", "production", "--yes"], Refusal::TwoTasks),
    (&["webhook", "set", "production"], Refusal::TwoTasks),
    (&["scale", "production", "--apply"], Refusal::Plan),
    (&["enforce", "--apply"], Refusal::Plan),
    (&["redeploy", "production", "--yes"], Refusal::TwoTasks),
    (&["api", "production", "POST", "/instance/restart/alinhou-production"], Refusal::TwoTasks),
];

/// The headline claim: while a replaced production task is still draining beside the running
/// one (two connections on one number), evoctl names both and every mutating command refuses
/// (exit 4) without changing anything.
#[test]
fn a_draining_task_beside_the_running_one_makes_every_mutating_command_refuse() {
    in_parallel(&["RUNNING", "DEACTIVATING", "STOPPING"], 3, |last_status| {
        let lab = Lab::start("seed");
        lab.wait_settled();
        let running = lab.first_task_id();
        let draining = lab.add_tasks(&json!({
            "cluster": "alinhou-production",
            "service": "EvolutionService",
            "desired_status": "STOPPED",
            "last_status": last_status,
        }));
        assert_eq!(draining.len(), 1);
        let draining = &draining[0];
        let timeline = lab.timeline();
        let last = timeline.last().unwrap();
        assert_eq!(
            (&last["task_id"], &last["cluster"], &last["last_status"], &last["desired_status"]),
            (&json!(draining), &json!("alinhou-production"), &json!(last_status), &json!("STOPPED"))
        );
        let two_tasks = format!(
            "error: 2 live tasks for production where there must be one (two WhatsApp connections on one number loop in conflict/replaced): \
             {running} (RUNNING, desired RUNNING), {draining} ({last_status}, desired STOPPED)\n  \
             fix: ECS is already stopping {draining} ({last_status}): wait until it is STOPPED (`evoctl status production`)\n"
        );

        let output = lab.evoctl().args(["task", "production"]).output().unwrap();
        assert_eq!(output.status.code(), Some(4), "{last_status}: {}", text(&output.stderr));
        assert_eq!((text(&output.stdout), text(&output.stderr)), (String::new(), two_tasks.clone()), "{last_status}");

        for (command, refusal) in MUTATING {
            lab.control("DELETE", "/journal", None);
            let output = lab.evoctl().args(*command).output().unwrap();
            let case = format!("{last_status}: {command:?}");
            assert_eq!(output.status.code(), Some(4), "{case}: {}", text(&output.stderr));
            let expected = match refusal {
                Refusal::TwoTasks => two_tasks.clone(),
                Refusal::Preflight => format!(
                    "error: refused before touching Evolution: production has 2 live task(s); linking needs exactly one\n  \
                     fix: ECS is already stopping {draining} ({last_status}): wait until it is STOPPED (`evoctl status production`)\n"
                ),
                Refusal::Plan => format!(
                    "error: refused: production has 2 live task(s) where its service wants 1 (a replaced or stray task has not stopped); keeping it at 1 would leave two connections on one number\n  \
                     fix: ECS is already stopping {draining} ({last_status}): wait until it is STOPPED (`evoctl status production`), then run again\n"
                ),
            };
            assert_eq!((text(&output.stdout), text(&output.stderr)), (String::new(), expected), "{case}");
            let changes: Vec<Value> = lab
                .journal()
                .into_iter()
                .filter(|e| {
                    ["RegisterScalableTarget", "UpdateService", "ExecuteCommand", "StopTask"]
                        .contains(&e["action"].as_str().unwrap())
                })
                .collect();
            assert_eq!(changes, Vec::<Value>::new(), "{case}: changed something");
        }
        assert_eq!(lab.timeline(), timeline, "{last_status}: no task changed");
    });
}

/// A lab on the seed with `tables` added (a scenario file written in the lab's own directory's
/// sibling `dir`).
fn seed_with(dir: &std::path::Path, description: &str, tables: &str) -> Lab {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, format!("extends = \"seed\"\ndescription = \"{description}\"\n{tables}")).unwrap();
    Lab::start(path.to_str().unwrap())
}

/// A database or Redis on localhost is a sidecar of each task (its own network namespace):
/// two environments both on loopback share nothing.
#[test]
fn databases_and_caches_on_loopback_are_each_tasks_own_and_never_shared() {
    let dir = tempfile::tempdir().unwrap();
    let sidecars = |env: &str| {
        format!(
            "[task_definitions.alinhou-{env}-EvolutionService.environment]\n\
             DATABASE_CONNECTION_URI = \"postgresql://evolution:lab-{env}-db-pass@localhost:5432/evolution?schema=evolution_api\"\n\
             CACHE_REDIS_URI = \"redis://127.0.0.1:6379/1\"\n\
             CACHE_REDIS_PREFIX_KEY = \"evolution\"\n"
        )
    };
    let lab = seed_with(
        dir.path(),
        "sidecars: both environments on a Postgres and a Redis in their own task",
        &(sidecars("staging") + &sidecars("production")),
    );
    lab.wait_settled();
    let output = lab.evoctl().args(["audit", "--skip", "session-persistence"]).output().unwrap();
    assert_eq!(text(&output.stdout), "audit clean: 22 rules over staging, production\n");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    // Shared with nobody, but a sidecar Redis dies with its task, and the session's keys with it.
    let output = lab.evoctl().args(["--output", "json", "audit", "--rule", "session-persistence"]).output().unwrap();
    let report = json_stdout(&output);
    let found: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["envs"][0].as_str().unwrap().to_owned(), f["severity"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(found, [("staging".to_owned(), "warning".to_owned()), ("production".to_owned(), "error".to_owned())]);
}

/// A secret the operator may not read is compared by its full ARN: a bare name and an ARN that
/// resolve to one parameter of one account are one secret, and the finding says how it knows.
#[test]
fn an_unreadable_secret_is_compared_by_its_full_arn_and_the_finding_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let arn = "arn:aws:ssm:us-east-1:123456789012:parameter/alinhou/evolution-api-key";
    let lab = seed_with(
        dir.path(),
        "denied-key: both environments read one API key parameter the operator may not read",
        &format!(
            "[parameters.\"/alinhou/evolution-api-key\"]\ntype = \"SecureString\"\nvalue = \"lab-denied-api-key-7e2c\"\nread_denied = true\n\
             [task_definitions.alinhou-staging-EvolutionService.secrets]\nAUTHENTICATION_API_KEY = \"/alinhou/evolution-api-key\"\n\
             [task_definitions.alinhou-production-EvolutionService.secrets]\nAUTHENTICATION_API_KEY = \"{arn}\"\n"
        ),
    );
    lab.wait_settled();
    let output = lab.evoctl().args(["audit", "--format", "github"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "::error title=evoctl audit shared-api-key (staging%2C production)::staging and production use the same AUTHENTICATION_API_KEY (compared by ARN, the value not being readable: {arn} (ssm:GetParameter answered AccessDeniedException)). Fix: give each environment its own AUTHENTICATION_API_KEY: with one key, staging tooling can drive production\n"
        )
    );
    assert!(!text(&output.stdout).contains("lab-denied-api-key"));
    // Both reads were refused by the lab, by full ARN; the task still has the value.
    let denied: Vec<Value> = lab
        .journal()
        .iter()
        .filter(|e| e["action"] == "GetParameter" && e["parameters"]["Name"] == arn)
        .map(|e| e["status"].clone())
        .collect();
    assert_eq!(denied, [json!(400), json!(400)]);
}
