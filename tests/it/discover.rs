//! `evoctl init --discover`: a config found in AWS instead of typed. The oracle is the lab's own
//! `evoctl.toml` for the scenario, and the journal (read-only calls, each account's own).

use crate::support::{Lab, json_stdout, text};
use serde_json::Value;

/// The AWS calls discovery may make: reads only.
const READS: &[&str] = &[
    "ListClusters",
    "DescribeClusters",
    "ListServices",
    "DescribeServices",
    "DescribeTaskDefinition",
    "DescribeScalableTargets",
    "ListFunctions",
    "ListTags",
    "AssumeRole",
];

/// Each environment's (cluster, instance, scaling, protected) in a config file.
fn environments(path: &std::path::Path) -> Vec<(String, String, String, toml::Value, bool)> {
    let table: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    table["env"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, env)| {
            (
                name.clone(),
                env["cluster"].as_str().unwrap().to_owned(),
                env.get("instance").and_then(toml::Value::as_str).unwrap_or(name).to_owned(),
                env["scaling"].clone(),
                env.get("protected").and_then(toml::Value::as_bool).unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn discovery_reproduces_the_seeds_environments_reading_only() {
    let lab = Lab::start("seed");
    lab.control("DELETE", "/journal", None);
    let written = lab.dir.path().join("discovered.toml");
    let output = lab.evoctl().arg("--config").arg(&written).args(["init", "--discover"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "wrote {} with 2 environment(s): staging, production; review its TODO lines, then run `evoctl status` and `evoctl audit`\n",
            written.display()
        )
    );
    assert_eq!(environments(&written), environments(&lab.config_path()));
    let journal = lab.journal();
    for entry in &journal {
        assert!(READS.contains(&entry["action"].as_str().unwrap()), "discovery only reads: {entry}");
    }
    assert!(journal.iter().any(|e| e["action"] == "ListTags"), "the app Lambdas were matched by their tags");

    // With what it wrote, status reads the same two environments as with the lab's own file.
    let status = |config: &std::path::Path| {
        let output = lab.evoctl().arg("--config").arg(config).args(["--output", "json", "status"]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let document = json_stdout(&output);
        let rows: Vec<(Value, Value, Value)> = document["environments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["env"].clone(), e["desired_count"].clone(), e["tasks"].as_array().unwrap().len().into()))
            .collect();
        rows
    };
    assert_eq!(status(&written), status(&lab.config_path()));
}

#[test]
fn discovery_over_two_accounts_writes_a_config_that_status_and_audit_use_unchanged() {
    let lab = Lab::start("two-accounts");
    let written = lab.dir.path().join("discovered.toml");
    let output = lab
        .evoctl()
        .arg("--config")
        .arg(&written)
        .args([
            "init",
            "--discover",
            "--discover-profile",
            "alinhou-staging",
            "--discover-profile",
            "alinhou-production",
        ])
        .args(["--discover-region", "us-east-1", "--discover-region", "sa-east-1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        "looking for Evolution API services in 4 place(s)…\n\
         no ECS cluster in account 111111111111 (profile alinhou-staging, sa-east-1)\n\
         no ECS cluster in account 222222222222 (profile alinhou-production, us-east-1)\n"
    );
    assert_eq!(environments(&written), environments(&lab.config_path()));
    let config = std::fs::read_to_string(&written).unwrap();
    assert!(config.contains("\naws = { profile = \"alinhou-staging\", region = \"us-east-1\" }\n"), "{config}");
    assert!(config.contains("\naws = { profile = \"alinhou-production\", region = \"sa-east-1\" }\n"), "{config}");

    let output = lab.evoctl().arg("--config").arg(&written).args(["--output", "json", "status"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let accounts: Vec<Value> =
        json_stdout(&output)["environments"].as_array().unwrap().iter().map(|e| e["account"].clone()).collect();
    assert_eq!(accounts, ["111111111111", "222222222222"]);
    let output = lab.evoctl().arg("--config").arg(&written).args(["audit"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert_eq!(text(&output.stdout), "audit clean: 23 rules over staging, production\n");
}

#[test]
fn bad_discovery_input_is_a_clear_error_and_never_a_partial_file() {
    let lab = Lab::start("seed");
    let existing = lab.dir.path().join("existing.toml");
    std::fs::write(&existing, "# mine\n").unwrap();
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().arg("--config").arg(&existing).args(["init", "--discover"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: {} already exists; not overwriting it\n  fix: pass --force to replace it, --dry-run to print the discovered config, or --config to write elsewhere\n",
            existing.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "# mine\n");
    assert!(lab.journal().is_empty(), "refused before any AWS call");

    let fresh = lab.dir.path().join("fresh.toml");
    let output = lab
        .evoctl()
        .arg("--config")
        .arg(&fresh)
        .args(["init", "--discover", "--discover-profile", "nope"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).starts_with(
            "error: AWS profile `nope` (named by --discover-profile) is in neither ~/.aws/config nor ~/.aws/credentials\n"
        ),
        "{}",
        text(&output.stderr)
    );
    let output = lab
        .evoctl()
        .arg("--config")
        .arg(&fresh)
        .args(["init", "--discover", "--discover-region", "eu-west-1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).ends_with(
            "no ECS cluster in the default credential chain, eu-west-1\nerror: no Evolution API service found in: the default credential chain, eu-west-1\n  fix: look elsewhere with --discover-profile NAME and --discover-region REGION (repeatable), or write the file by hand: `evoctl init`\n"
        ),
        "{}",
        text(&output.stderr)
    );
    assert!(!fresh.exists(), "no file from a failed discovery");

    // --dry-run prints and writes nothing; the JSON carries the same text.
    let output = lab
        .evoctl()
        .arg("--config")
        .arg(&existing)
        .args(["--output", "json", "init", "--discover", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let document = json_stdout(&output);
    assert_eq!(document["written"], Value::Null);
    assert!(document["config"].as_str().unwrap().contains("\n[env.production]\n"));
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "# mine\n");
}

#[test]
fn without_an_app_lambda_the_instance_is_the_one_evolution_reports() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("untagged.toml");
    std::fs::write(
        &scenario,
        "extends = \"seed\"\ndescription = \"untagged: the app Lambdas carry another stage\"\n\
         [lambdas.alinhou-production-Api]\ntags = { \"sst:stage\" = \"elsewhere\" }\n\
         [lambdas.alinhou-staging-Api]\ntags = { \"sst:stage\" = \"elsewhere-too\" }\n",
    )
    .unwrap();
    let lab = Lab::start(scenario.to_str().unwrap());
    lab.wait_settled();
    let output = lab.evoctl().args(["instance", "create", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["--output", "json", "init", "--discover", "--dry-run"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let document = json_stdout(&output);
    let config = document["config"].as_str().unwrap();
    assert!(config.contains("\ninstance = \"alinhou-production\"  # the one instance Evolution reports\n"), "{config}");
    assert!(
        config.contains(
            "\n# TODO instance: no app Lambda tagged sst:stage = staging sets EVOLUTION_INSTANCE_NAME, and Evolution could not be asked ("
        ),
        "{config}"
    );
    // Asking Evolution is one exec session, to production (staging has no task); nothing else
    // but reads.
    let journal = lab.journal();
    let execs: Vec<&Value> = journal.iter().filter(|e| e["action"] == "ExecuteCommand").collect();
    assert_eq!(execs.len(), 1, "{journal:?}");
    assert_eq!(execs[0]["parameters"]["cluster"], "alinhou-production");
    for entry in &journal {
        let action = entry["action"].as_str().unwrap();
        assert!(
            READS.contains(&action)
                || matches!(
                    action,
                    "ExecuteCommand" | "ListTasks" | "DescribeTasks" | "DescribeSessions" | "TerminateSession"
                ),
            "{entry}"
        );
    }
}

/// `init --discover` over the two accounts' profiles with no region chosen.
fn discover_both_profiles(lab: &Lab, written: &std::path::Path, env_remove: &[&str]) -> std::process::Output {
    let mut command = lab.evoctl();
    for var in env_remove {
        command.env_remove(var);
    }
    command
        .arg("--config")
        .arg(written)
        .args([
            "init",
            "--discover",
            "--discover-profile",
            "alinhou-staging",
            "--discover-profile",
            "alinhou-production",
        ])
        .output()
        .unwrap()
}

/// Each profile is read in its own configured region (production's is sa-east-1), whether or not
/// the shell has a region of its own; the variable is for profiles without one.
#[test]
fn each_discovery_profile_is_read_in_its_own_region() {
    let lab = Lab::start("two-accounts");
    for (env_remove, notes) in [
        (
            &[][..],
            "profile alinhou-production: looking in sa-east-1, its own region (AWS_REGION=us-east-1 is for profiles without one; --discover-region chooses)\n",
        ),
        (&["AWS_REGION", "AWS_DEFAULT_REGION"][..], ""),
    ] {
        let written = lab.dir.path().join(format!("discovered-{}.toml", env_remove.len()));
        let output = discover_both_profiles(&lab, &written, env_remove);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert_eq!(text(&output.stderr), format!("{notes}looking for Evolution API services in 2 place(s)…\n"));
        assert_eq!(environments(&written), environments(&lab.config_path()));
        let config: toml::Table = std::fs::read_to_string(&written).unwrap().parse().unwrap();
        let aws = |env: &str| config["env"][env]["aws"].clone();
        let want = |profile: &str, region: &str| -> toml::Value {
            toml::Value::Table(format!("profile = \"{profile}\"\nregion = \"{region}\"").parse().unwrap())
        };
        assert_eq!(aws("staging"), want("alinhou-staging", "us-east-1"));
        assert_eq!(aws("production"), want("alinhou-production", "sa-east-1"));
    }
}

/// A set of environments that protects nothing, or that would run two on one number, is said
/// loudly: on stderr and in the header of the file written.
#[test]
fn discovery_warns_when_no_production_environment_is_found_or_two_would_be_live() {
    let lab = Lab::start("two-accounts");
    let written = lab.dir.path().join("staging-only.toml");
    let output = lab
        .evoctl()
        .arg("--config")
        .arg(&written)
        .args(["init", "--discover", "--discover-profile", "alinhou-staging"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let warning = "no production environment found: none of staging is named like production (a stage or cluster with `prod`, or `live`), so none is marked protected; if one of them serves the live number, set `protected = true` on it, or look in its account with --discover-profile";
    assert_eq!(
        text(&output.stderr),
        format!("looking for Evolution API services in 1 place(s)…\nwarning: {warning}\n")
    );
    let config = std::fs::read_to_string(&written).unwrap();
    assert!(
        config.starts_with(&format!(
            "# evoctl.toml written by `evoctl init --discover` from what AWS holds now:\n\
             #   account 111111111111 (profile alinhou-staging, us-east-1)\n\
             # WARNING: {warning}\n"
        )),
        "{config}"
    );

    let lab = Lab::start("two-accounts-both-live");
    let written = lab.dir.path().join("both.toml");
    let output = discover_both_profiles(&lab, &written, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let warnings = [
        "staging and production have scaling min > 0: on one WhatsApp number they would be live together (the audit's one-live-env fails); scale all but one to 0, or give environments on different numbers their own `number`",
        "staging and production have desiredCount > 0 now: on one WhatsApp number they would be live together (the audit's one-live-env fails); scale all but one to 0, or give environments on different numbers their own `number`",
    ];
    assert!(
        text(&output.stderr).ends_with(&format!("warning: {}\nwarning: {}\n", warnings[0], warnings[1])),
        "{}",
        text(&output.stderr)
    );
    let config = std::fs::read_to_string(&written).unwrap();
    assert!(
        config.contains(&format!("\n# WARNING: {}\n# WARNING: {}\n# Review it.", warnings[0], warnings[1])),
        "{config}"
    );
}
