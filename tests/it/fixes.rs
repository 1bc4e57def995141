//! Every printed fix works. On each lab scenario, the fixes `doctor`, `audit`, `conflicts` and
//! a refused `connect` print (their JSON `fix` fields) that are `evoctl` commands are run
//! against the same lab: each one either does what it says (exit 0), or fails saying why, and a
//! failure's own fixes are followed in turn; no chain of fixes may come back to a command already
//! on it (a fix that leads to a refusal whose fix leads back). `task stop` is checked for what
//! it does: the task is STOPPED, and the next `audit` has no `live-tasks` finding.

use crate::evolution::call_in_container;
use crate::support::{Lab, json_stdout, text, wait_until};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The `evoctl` commands in a fix: each backquoted `evoctl …`, or the fix itself when it is one.
fn commands_in(fix: &str) -> Vec<Vec<String>> {
    let quoted: Vec<&str> = fix.split('`').skip(1).step_by(2).filter(|c| c.starts_with("evoctl ")).collect();
    let commands: Vec<&str> = if !quoted.is_empty() {
        quoted
    } else if let Some(bare) = fix.strip_prefix("evoctl ") {
        vec![bare.split(" (").next().unwrap_or(bare)]
    } else {
        Vec::new()
    };
    commands
        .into_iter()
        .map(|c| c.trim_start_matches("evoctl ").split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Every fix a JSON document carries: an error's, a finding's, a doctor layer's, or its own.
fn fixes_of(document: &Value) -> Vec<String> {
    let mut fixes = Vec::new();
    let mut push = |fix: &Value| {
        if let Some(fix) = fix.as_str() {
            fixes.push(fix.to_owned());
        }
    };
    push(&document["error"]["fix"]);
    push(&document["fix"]);
    for finding in document["findings"].as_array().into_iter().flatten() {
        push(&finding["fix"]);
    }
    for check in document["checks"].as_array().into_iter().flatten() {
        push(&check["fix"]);
    }
    fixes
}

/// What one run of a command gave.
struct Ran {
    code: Option<i32>,
    document: Value,
    fixes: Vec<String>,
    stderr: String,
}

/// `evoctl --output json ARGS`: its stdout must be one JSON document (a result or an
/// `evoctl.error/v1`), whatever the exit code.
fn run(lab: &Lab, args: &[String]) -> Ran {
    let output = lab.evoctl().arg("--output").arg("json").args(args).output().unwrap();
    let stderr = text(&output.stderr);
    let document: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "`evoctl --output json {}` (exit {:?}) printed no single JSON document ({e}): {}\nstderr: {stderr}",
            args.join(" "),
            output.status.code(),
            text(&output.stdout)
        )
    });
    Ran { code: output.status.code(), fixes: fixes_of(&document), document, stderr }
}

/// Follows fixes, depth first: `done` holds the commands already run (and all they led to),
/// `chain` the commands on the way to the current one.
struct Runner<'a> {
    lab: &'a Lab,
    scenario: &'a str,
    done: BTreeMap<String, Option<i32>>,
    /// Every command run, in order, with its exit code.
    log: Vec<(String, Option<i32>)>,
}

impl Runner<'_> {
    fn follow(&mut self, fix: &str, chain: &mut Vec<String>) {
        for command in commands_in(fix) {
            let line = command.join(" ");
            // A fix names what it acts on: never a placeholder.
            for word in &command {
                assert!(
                    !["ENV", "ID", "NAME", "TASK_ID", "DIGITS"].contains(&word.as_str()),
                    "{}: a placeholder in `evoctl {line}` (from {fix:?})",
                    self.scenario
                );
            }
            assert!(
                !chain.contains(&line),
                "{}: the fix `evoctl {line}` leads back to itself: {} -> {line}",
                self.scenario,
                chain.join(" -> ")
            );
            if self.done.contains_key(&line) {
                continue;
            }
            let ran = run(self.lab, &command);
            self.done.insert(line.clone(), ran.code);
            self.log.push((line.clone(), ran.code));
            assert!(
                ran.code.is_some_and(|c| c != 2),
                "{}: the fix `evoctl {line}` is not a valid command line (exit {:?}): {}",
                self.scenario,
                ran.code,
                ran.stderr
            );
            if ran.code == Some(0) {
                self.assert_done(&command, &ran.document);
            }
            if ran.code != Some(0) {
                // It says why; whatever it suggests in turn must not come back here.
                assert!(
                    !ran.fixes.is_empty() || !ran.stderr.is_empty(),
                    "{}: `evoctl {line}` failed (exit {:?}) without saying why",
                    self.scenario,
                    ran.code
                );
                chain.push(line);
                for next in &ran.fixes {
                    self.follow(next, chain);
                }
                chain.pop();
            }
        }
    }

    /// A change that succeeded is there, read back from the lab (or by planning again).
    fn assert_done(&self, command: &[String], document: &Value) {
        let words: Vec<&str> = command.iter().map(String::as_str).collect();
        match words.as_slice() {
            // `task stop ENV ID` ended that task: the lab has it STOPPED, stopped by its user.
            ["task", "stop", _, id, ..] => {
                let task = self.lab.task(id);
                assert_eq!(
                    (&task["lastStatus"], &task["stopCode"]),
                    (&json!("STOPPED"), &json!("UserInitiated")),
                    "{task}"
                );
            }
            // `connect ENV [NAME]` linked it: open in the lab's Evolution.
            ["connect", ..] => {
                let name = document["instance"].as_str().unwrap_or_else(|| panic!("{}: {document}", self.scenario));
                assert_eq!(self.lab.evolution_instance(name)["state"], "open", "{}: {words:?}", self.scenario);
            }
            // A scaling change applied: planning it again finds nothing to do.
            ["scale", _, "--apply", ..] | ["enforce", "--apply", ..] => {
                let again: Vec<String> = command.iter().filter(|w| *w != "--apply").cloned().collect();
                let plan = run(self.lab, &again);
                assert_eq!(plan.code, Some(0), "{}: {}", self.scenario, plan.stderr);
                let steps: Vec<&Value> = plan.document["environments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|e| e["steps"].as_array().unwrap())
                    .collect();
                assert!(steps.is_empty(), "{}: {words:?} left {steps:?}", self.scenario);
            }
            _ => {}
        }
    }
}

/// The fixes every source prints on `lab` now.
fn printed_fixes(lab: &Lab) -> Vec<(String, String)> {
    let mut fixes = Vec::new();
    let mut add = |source: String, ran: Ran| {
        fixes.extend(ran.fixes.into_iter().map(|fix| (source.clone(), fix)));
    };
    add("audit".into(), run(lab, &["audit".to_owned()]));
    for env in ["staging", "production"] {
        add(format!("doctor {env}"), run(lab, &["doctor".to_owned(), env.to_owned()]));
        let sample = ["conflicts", env, "--sample", "2s"].map(str::to_owned);
        add(format!("conflicts {env}"), run(lab, &sample));
        let connect = ["connect", env, "--timeout", "60s"].map(str::to_owned);
        let ran = run(lab, &connect);
        // Only the refusal is a source: a connect that goes on is a change of its own.
        if ran.code == Some(4) {
            add(format!("connect {env}"), ran);
        }
    }
    fixes
}

/// What a scenario needs before its fixes are read.
#[derive(Clone, Copy, Debug)]
enum Setup {
    None,
    /// Production linked and a message sent (the webhook deliveries then show in the log).
    LinkedWithAMessage,
    /// Production's instance created the way a curl example does: `close`, never linked.
    CreatedClose,
}

/// One test per scenario (each a lab of its own, so they run side by side): every fix printed
/// there does what it says, or says why not, and none leads back to itself.
macro_rules! every_printed_fix {
    ($($name:ident: $scenario:literal, $setup:ident;)*) => {$(
        #[test]
        fn $name() {
            every_printed_fix_does_what_it_says_or_says_why_not_and_none_leads_back($scenario, &Setup::$setup);
        }
    )*};
}

every_printed_fix! {
    every_printed_fix_works_in_seed: "seed", None;
    every_printed_fix_works_with_an_instance_created_close: "seed", CreatedClose;
    every_printed_fix_works_in_conflict_loop: "conflict-loop", None;
    every_printed_fix_works_in_jwt_mismatch: "jwt-mismatch", LinkedWithAMessage;
    every_printed_fix_works_in_empty_jwt_key: "empty-jwt-key", None;
    every_printed_fix_works_in_no_whatsapp_route: "no-whatsapp-route", None;
    every_printed_fix_works_in_whatsapp_black_hole: "whatsapp-black-hole", None;
    every_printed_fix_works_in_shared_db: "shared-db", None;
    every_printed_fix_works_in_staging_up: "staging-up", None;
    every_printed_fix_works_in_two_accounts: "two-accounts", None;
    every_printed_fix_works_in_rolling_overlap: "rolling-overlap", None;
}

fn every_printed_fix_does_what_it_says_or_says_why_not_and_none_leads_back(scenario: &str, setup: &Setup) {
    let lab = Lab::start_with(scenario, &["--auto-scan-after-ms", "300"]);
    lab.wait_settled();
    match setup {
        Setup::None => {}
        Setup::LinkedWithAMessage => {
            // The lab's phone scans the code 300 ms after create shows it: wait for that scan
            // (a scan of our own could come after it, for a code no longer shown).
            let output = lab.evoctl().args(["instance", "create", "production"]).output().unwrap();
            assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
            wait_until(Duration::from_secs(30), "the phone to link production", || {
                (lab.evolution_instance("alinhou-production")["state"] == "open").then_some(())
            });
            lab.control("POST", "/phone/message", Some(&json!({"instance": "alinhou-production", "text": "oi"})));
        }
        Setup::CreatedClose => {
            let body =
                json!({"instanceName": "alinhou-production", "integration": "WHATSAPP-BAILEYS", "qrcode": false});
            let lines = call_in_container(&lab, "production", &[("POST", "/instance/create", body)]);
            assert!(lines[0].starts_with("201 "), "{lines:?}");
        }
    }
    // conflict-loop's two live tasks, the longest-running first: the second is the extra one.
    let live = live_tasks(&lab, "production");
    let printed = printed_fixes(&lab);
    let mut runner = Runner { lab: &lab, scenario, done: BTreeMap::new(), log: Vec::new() };
    for (source, fix) in &printed {
        let mut chain = vec![source.clone()];
        runner.follow(fix, &mut chain);
    }
    let commands: BTreeSet<String> = runner.log.iter().map(|(line, _)| line.clone()).collect();
    eprintln!("{scenario} ({setup:?}): ran {:?}", runner.log);
    let expected: &[&str] = match (scenario, setup) {
        // Production runs its task but has no instance: doctor's instance layer says connect
        // (which links it: the phone scans).
        ("seed" | "two-accounts", Setup::None) => &["connect production"],
        // An instance created `close`: doctor says connect, or for 2.3.7's new instances stuck
        // in close delete and re-create it; its missing webhook row: `webhook set`, which
        // after the delete finds no instance (exit 3) and points at `instance list`.
        ("seed", Setup::CreatedClose) => &[
            "connect production",
            "instance delete production --yes",
            "webhook set production",
            "instance list production",
        ],
        // Two tasks on one number: stop the extra one; doctor's isolation layer names
        // `audit production`, whose conflict-loop finding stays while the loop is in the
        // last 15 minutes of the log (exit 1).
        ("conflict-loop", _) => {
            assert_eq!(live.len(), 2, "{live:?}");
            &[&format!("task stop production {}", live[1]), "audit production"]
        }
        // The receiver verifies with another secret: webhook-delivery offers pointing
        // jwt_secret at the receiver's parameter and `webhook set`.
        ("jwt-mismatch", _) => &["webhook set production"],
        // No instance yet (connect); the blank secret: `webhook set` and the audit that lists
        // it (exit 1: filling the SSM parameter is no evoctl command).
        ("empty-jwt-key", _) => &["connect production", "webhook set production", "audit production"],
        // None: the one broken thing is the task's route to WhatsApp, which no evoctl command
        // gives. doctor's whatsapp-reach fix is the network change and its instance layer waits
        // on it, audit finds nothing, and connect fails on the route (exit 1), no refusal.
        ("no-whatsapp-route" | "whatsapp-black-hole", _) => &[],
        // Staging runs against its configured 0/0: scale it (or enforce) to 0/0, then audit it
        // (shared-db: its shared database stays a finding, exit 1); production has no
        // instance: connect, the refusal's `--enforce` variant, and its audit.
        ("staging-up" | "shared-db", _) => &[
            "scale staging --apply",
            "enforce --apply",
            "audit staging",
            "connect production",
            "audit production",
            "connect production --enforce",
        ],
        // No instance (connect); the 200/100 deployment is the service's to change: its audit
        // still finds deployment-overlap (exit 1).
        ("rolling-overlap", _) => &["connect production", "audit production"],
        (other, setup) => panic!("{other} ({setup:?}): no expectation"),
    };
    let expected: BTreeSet<String> = expected.iter().map(|c| c.to_string()).collect();
    assert_eq!(commands, expected, "{scenario} ({setup:?}): {:?}", runner.log);
    if scenario == "conflict-loop" {
        assert_eq!(lab.task(&live[0])["lastStatus"], "RUNNING", "the longest-running task is kept");
        let audit = json_stdout(&lab.evoctl().args(["--output", "json", "audit"]).output().unwrap());
        let rules: Vec<&str> =
            audit["findings"].as_array().unwrap().iter().map(|f| f["rule"].as_str().unwrap()).collect();
        assert!(!rules.contains(&"live-tasks"), "{audit}");
    }
}

/// The ids of `env`'s live tasks, as `status` lists them (the longest-running first).
fn live_tasks(lab: &Lab, env: &str) -> Vec<String> {
    let status = json_stdout(&lab.evoctl().args(["--output", "json", "status", env]).output().unwrap());
    let tasks = status["environments"][0]["tasks"].as_array().unwrap_or_else(|| panic!("{status}"));
    tasks.iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
}

/// A parked environment (configured 0/0, no task) is healthy, and nothing suggests linking it.
#[test]
fn a_parked_environment_is_ok_in_doctor_and_never_offered_a_link() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let output = lab.evoctl().args(["doctor", "staging"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("\ntasks             OK      parked: no live task, desired 0 (configured 0/0)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\nexec-trial        SKIP    parked: no task to examine\n"), "{stdout}");
    assert!(stdout.ends_with("\n\ndoctor: OK (parked: no task, as configured)\n"), "{stdout}");
    let report = json_stdout(&lab.evoctl().args(["--output", "json", "doctor", "staging"]).output().unwrap());
    assert_eq!((&report["ok"], &report["parked"], &report["first_broken"]), (&json!(true), &json!(true), &Value::Null));
    assert!(fixes_of(&report).is_empty(), "{report}");

    let output = lab.evoctl().args(["connect", "staging"]).output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(
        text(&output.stderr),
        "error: refused: staging is configured to run no task (scaling 0/0 in evoctl.toml), so there is nothing to link there; nothing was changed\n  \
         fix: to link a number on staging, give it scaling = { min = 1, max = 1 } under [env.staging] in evoctl.toml first (and 0/0 to every other environment of its number)\n"
    );
    assert!(lab.journal().iter().all(|e| e["action"] != "ExecuteCommand"), "nothing touched Evolution");
}
