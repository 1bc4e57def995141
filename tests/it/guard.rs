//! The guard against the lab: `audit` reports exactly the rules each broken scenario breaks,
//! `enforce` / `scale` change scaling in the safe order and refuse unsafe plans, throttling does
//! not change an audit's answer, and an unreadable account is never "clean".

use crate::support::{Lab, in_parallel, json_stdout, text, wait_until};
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
        assert_eq!(report["rules"].as_array().unwrap().len(), 20);
    });
}

#[test]
fn audit_table_and_github_formats_are_exact() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let output = lab.evoctl().arg("audit").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stdout), "audit clean: 20 rules over staging, production\n");
    let output = lab.evoctl().args(["audit", "--format", "github"]).output().unwrap();
    assert_eq!(text(&output.stdout), "::notice title=evoctl audit::clean: 20 rules over staging, production\n");

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
         1 finding(s): 20 rules over production\n"
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
    assert_eq!(text(&output.stdout), "audit clean: 19 rules over staging, production\n");
    let output = lab.evoctl().args(["audit", "--rule", "deploy-overlap"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).starts_with("error: unknown rule id `deploy-overlap`\n  fix: use one of: scaling, "));
}

#[test]
fn audit_under_30_percent_throttling_returns_the_same_findings() {
    let lab = Lab::start("staging-up");
    lab.wait_settled();
    let (code, calm) = audit_json(&lab);
    assert_eq!(code, Some(1));
    lab.control("DELETE", "/journal", None);
    lab.control("POST", "/faults", Some(&json!({"throttle_rate": 0.3})));
    for _ in 0..2 {
        let (code, throttled) = audit_json(&lab);
        assert_eq!(code, Some(1), "{throttled:#}");
        assert_eq!(throttled["findings"], calm["findings"]);
    }
    assert!(lab.journal().iter().any(|e| e["error"] == "ThrottlingException"), "throttling was injected");
}

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
    let scenario = dir.path().join("swapped.toml");
    std::fs::write(
        &scenario,
        "extends = \"staging-up\"\ndescription = \"staging up, production down\"\n\
         [services.\"alinhou-production/EvolutionService\"]\ndesired_count = 0\nscaling = { min = 0, max = 0 }\n",
    )
    .unwrap();
    let lab = Lab::start(scenario.to_str().unwrap());
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
    // Production's first write came after staging's task was seen gone.
    let status = json_stdout(&lab.evoctl().args(["--output", "json", "status"]).output().unwrap());
    assert_eq!(status["environments"][0]["tasks"], json!([]));
    assert_eq!(status["environments"][1]["tasks"].as_array().unwrap().len(), 1);
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
    lab.control("POST", "/faults", Some(&json!({"latency_ms": 100})));
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
