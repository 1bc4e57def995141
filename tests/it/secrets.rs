//! Secret hygiene, end to end: every command runs at -vvv against a lab seeded with canary
//! secrets (the global API key and the webhook secret of both environments), and no canary and
//! no issued session token or KMS data key may appear in the lab's journal (the ExecuteCommand
//! command strings are what CloudTrail records), in evoctl's stdout or stderr, in a spawned
//! plugin's argv, or in any file evoctl writes. The run happens twice: on plain exec sessions
//! and on KMS-encrypted ones.

use crate::support::{Lab, in_parallel, path_with, text};
use std::path::Path;

const CANARIES: &[&str] = &[
    "CANARY-APIKEY-PROD-7f3a91",
    "CANARY-APIKEY-STAGE-2c8d40",
    "CANARY-WEBHOOK-PROD-e5b6d2",
    "CANARY-WEBHOOK-STAGE-91ac07",
    "canary-db-pass-44d1",
];

fn canary_scenario(dir: &Path, base: &str) -> String {
    let path = dir.join("canaries.toml");
    std::fs::write(
        &path,
        format!(r#"extends = "{base}"
description = "{base} with canary secrets"
[task_definitions.alinhou-production-EvolutionService.environment]
AUTHENTICATION_API_KEY = "CANARY-APIKEY-PROD-7f3a91"
DATABASE_CONNECTION_URI = "postgresql://evolution:canary-db-pass-44d1@db.alinhou.internal:5432/evolution_prod?schema=evolution_api"
[task_definitions.alinhou-staging-EvolutionService.environment]
AUTHENTICATION_API_KEY = "CANARY-APIKEY-STAGE-2c8d40"
[parameters."/alinhou/production/evolution-webhook-secret"]
value = "CANARY-WEBHOOK-PROD-e5b6d2"
[parameters."/alinhou/staging/evolution-webhook-secret"]
value = "CANARY-WEBHOOK-STAGE-91ac07"
"#),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn no_secret_reaches_the_journal_output_argv_or_files() {
    in_parallel(&["seed", "kms-exec"], 2, |base| every_command_keeps_secrets(base));
}

fn every_command_keeps_secrets(base: &str) {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::start_with(&canary_scenario(dir.path(), base), &["--auto-scan-after-ms", "1200"]);
    lab.wait_settled();
    let out = lab.dir.path();
    let png = out.join("qr.png");
    let svg = out.join("qr.svg");
    let init = out.join("written.toml");
    let plugin_dir = lab.fake_plugin_dir();
    let argv_log = out.join("plugin-argv.log");

    let runs: Vec<Vec<String>> = [
        vec!["status"],
        vec!["task", "production"],
        vec!["exec", "production", "--", "node", "-e", "console.log(Object.keys(process.env).length > 0)"],
        vec!["exec", "production", "--backend", "aws-cli", "--", "node", "-e", "console.log('via plugin')"],
        vec!["node", "production", "-e", "console.log('node')"],
        vec!["connect", "production", "--stable-for", "1s", "--png", png.to_str().unwrap()],
        vec!["connect", "production", "--stable-for", "1s"],
        vec!["instance", "list", "production"],
        vec!["instance", "state", "production"],
        vec!["instance", "create", "production", "second"],
        vec!["instance", "connect", "production", "second", "--png", png.to_str().unwrap()],
        vec!["webhook", "show", "production"],
        vec!["webhook", "set", "production"],
        vec!["webhook", "set", "production", "second"],
        vec!["--output", "json", "webhook", "show", "production", "second"],
        vec!["qr", "2@canary-free-code", "--svg", svg.to_str().unwrap()],
        vec!["audit"],
        vec!["audit", "--format", "json"],
        vec!["audit", "--format", "github"],
        vec!["scale", "production"],
        vec!["enforce"],
        vec!["conflicts", "production", "--sample", "1s"],
        vec!["doctor", "production"],
        vec!["--output", "json", "doctor", "production"],
        vec!["init", "--force", "--config", init.to_str().unwrap()],
        vec!["instance", "delete", "production", "second", "--yes"],
    ]
    .iter()
    .map(|args| args.iter().map(|a| a.to_string()).collect())
    .collect();
    let path = path_with(&plugin_dir);
    let mut printed = Vec::new();
    for args in &runs {
        let output = lab
            .evoctl()
            .arg("-vvv")
            .args(args)
            .env("PATH", &path)
            .env("EVOCTL_FAKE_PLUGIN_ARGV_LOG", &argv_log)
            .output()
            .unwrap();
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(0), "{base} {args:?}: {stderr}");
        for canary in CANARIES {
            assert!(!stdout.contains(canary), "{base} {args:?} printed {canary} on stdout");
            assert!(!stderr.contains(canary), "{base} {args:?} printed {canary} on stderr (-vvv)");
        }
        printed.push((args, stdout, stderr));
    }
    let issued = lab.control("GET", "/tokens", None);
    let issued: Vec<&str> = issued.as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for (args, stdout, stderr) in &printed {
        for secret in &issued {
            assert!(!stdout.contains(secret) && !stderr.contains(secret), "{base} {args:?} printed a session secret");
        }
    }
    if base == "kms-exec" {
        let journal = lab.journal();
        let count = |action: &str| journal.iter().filter(|e| e["action"] == action && e["status"] == 200).count();
        assert_eq!(count("GenerateDataKey"), count("ExecuteCommand"), "every session was encrypted");
        assert_eq!(count("Decrypt"), count("ExecuteCommand"));
    }
    // The webhook secret did reach the instance (over the data channel), so the check means something.
    let row = lab.evolution_instance("alinhou-production");
    assert_eq!(row["webhook"]["headers"]["jwt_key"].as_str().map(str::len), Some("CANARY-WEBHOOK-PROD-e5b6d2".len()));

    let journal = serde_json::to_string(&lab.journal()).unwrap();
    for secret in &issued {
        assert!(!journal.contains(secret), "{base}: a session secret is in the journal");
    }
    let executes = journal.matches("\"ExecuteCommand\"").count();
    assert!(executes >= 10, "the runs went through the data channel ({executes} sessions)");
    for canary in CANARIES {
        assert!(!journal.contains(canary), "{canary} is in the journal (CloudTrail would record it)");
    }
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    for secret in CANARIES.iter().copied().chain(issued.iter().copied()) {
        assert!(!argv.contains(secret), "a secret is in the plugin's argv");
    }
    for file in [&png, &svg, &init] {
        let bytes = std::fs::read(file).unwrap();
        for canary in CANARIES {
            let found = bytes.windows(canary.len()).any(|w| w == canary.as_bytes());
            assert!(!found, "{canary} is in {}", file.display());
        }
    }
}
