//! Secret hygiene, end to end: every command runs at -vvv against a lab seeded with canary
//! secrets (the global API key of both environments, production's injected from an SSM
//! parameter through the task definition's `secrets` and read by the audit to compare it, and
//! the webhook secret of both environments), and no canary and
//! no issued session token or KMS data key may appear in the lab's journal (the ExecuteCommand
//! command strings are what CloudTrail records), in evoctl's stdout or stderr, in a spawned
//! plugin's argv, or in any file evoctl writes. The run happens twice: on plain exec sessions
//! and on KMS-encrypted ones.
//!
//! "Appear" means in any form a secret could leak in, not only as the raw text: hex, base64
//! (standard and URL-safe, padded or not, at any byte offset inside a larger blob: the
//! ExecuteCommand command strings are base64 programs) and decimal or hex byte lists (what
//! `Buffer.toJSON()`, `<Buffer ..>` or a Rust `{:?}` of the bytes print). See [`Secrets`].

use crate::support::{Lab, path_with, text};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
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
[parameters."/alinhou/production/evolution-api-key"]
type = "SecureString"
value = "CANARY-APIKEY-PROD-7f3a91"
[task_definitions.alinhou-production-EvolutionService.secrets]
AUTHENTICATION_API_KEY = "/alinhou/production/evolution-api-key"
[task_definitions.alinhou-production-EvolutionService.environment]
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

/// Secrets to look for, each with every form it could leak in, so that a check cannot pass just
/// because the secret went out encoded.
pub struct Secrets {
    secrets: Vec<Secret>,
}

struct Secret {
    name: String,
    /// (what the form is, its bytes); no two forms have the same bytes.
    forms: Vec<(String, Vec<u8>)>,
    /// Every form as one byte-literal alternation (one pass over a haystack per secret).
    regex: regex::bytes::Regex,
}

impl Secrets {
    pub fn new(secrets: impl IntoIterator<Item = (String, Vec<u8>)>) -> Secrets {
        let secrets = secrets
            .into_iter()
            .map(|(name, bytes)| {
                let forms = leak_forms(&bytes);
                let pattern = forms
                    .iter()
                    .map(|(_, form)| form.iter().map(|b| format!("\\x{b:02x}")).collect::<String>())
                    .collect::<Vec<_>>()
                    .join("|");
                let regex = regex::bytes::Regex::new(&format!("(?-u:{pattern})")).expect("literal alternation");
                Secret { name, forms, regex }
            })
            .collect();
        Secrets { secrets }
    }

    /// The canaries, every issued session token and every KMS data key (the lab lists a data
    /// key as its base64 and its hex; the key's own bytes are added so that all their forms count).
    fn canaries_and_issued(issued: &[String]) -> Secrets {
        let canaries = CANARIES.iter().map(|c| (c.to_string(), c.as_bytes().to_vec()));
        let tokens = issued.iter().enumerate().map(|(i, t)| (format!("issued secret #{i}"), t.as_bytes().to_vec()));
        let mut keys: Vec<Vec<u8>> =
            issued.iter().filter_map(|t| STANDARD.decode(t).ok()).filter(|k| k.len() == 64).collect();
        keys.dedup();
        let keys = keys.into_iter().enumerate().map(|(i, k)| (format!("KMS data key #{i} (its bytes)"), k));
        Secrets::new(canaries.chain(tokens).chain(keys))
    }

    /// The first secret found in `haystack`, as "NAME as FORM".
    pub fn find_in(&self, haystack: &[u8]) -> Option<String> {
        self.secrets.iter().find_map(|secret| {
            let found = secret.regex.find(haystack)?.as_bytes();
            let form = secret.forms.iter().find(|(_, bytes)| bytes == found).map(|(what, _)| what.as_str());
            Some(format!("{} as {}", secret.name, form.expect("a match is one of the forms")))
        })
    }

    /// Fail, naming the secret, the form and `place`, if any secret is in `haystack`.
    pub fn assert_absent(&self, haystack: &[u8], place: &str) {
        if let Some(leak) = self.find_in(haystack) {
            panic!("{leak} is in {place}");
        }
    }
}

/// Every byte string `secret` could leak as; each is a substring of the text that would carry
/// it, wherever in a larger buffer the secret sits.
///
/// - raw bytes; hex, lower and upper case; byte lists: decimal joined by `,` or `, ` (inside
///   `[67,65,78]`, `{"type":"Buffer","data":[67,65,78]}`, Rust's `[67, 65, 78]`), hex joined by
///   `, ` (Rust `{:x?}`) or ` ` (node's `<Buffer 43 41 4e>`).
/// - base64, standard and URL-safe: base64 works on 3-byte groups, so a secret at byte offset
///   `o` of a larger blob is encoded with alignment `k = o % 3`. For each k, encode `k` filler
///   bytes + the secret and keep only the characters made of secret bits alone: drop the first
///   `ceil(8k/6)` (they carry filler bits) and everything from `floor(8(k+n)/6)` on (they
///   carry bits of whatever follows, or padding). What is left is in every encoding of any blob
///   holding the secret at that alignment, padded or unpadded.
pub fn leak_forms(secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    assert!(secret.len() >= 12, "a secret this short would match by chance in its encoded forms");
    let join = |format: fn(&u8) -> String, separator: &str| {
        secret.iter().map(format).collect::<Vec<_>>().join(separator).into_bytes()
    };
    let mut forms = vec![
        ("raw".to_owned(), secret.to_vec()),
        ("hex".to_owned(), hex::encode(secret).into_bytes()),
        ("upper-case hex".to_owned(), hex::encode_upper(secret).into_bytes()),
        ("a byte list `1,2`".to_owned(), join(|b| b.to_string(), ",")),
        ("a byte list `1, 2`".to_owned(), join(|b| b.to_string(), ", ")),
        ("a hex byte list `1, 2`".to_owned(), join(|b| format!("{b:x}"), ", ")),
        ("a hex byte list `01 02`".to_owned(), join(|b| format!("{b:02x}"), " ")),
    ];
    for k in 0..3 {
        let mut blob = vec![0u8; k];
        blob.extend_from_slice(secret);
        let (start, end) = ((8 * k).div_ceil(6), 8 * blob.len() / 6);
        for (alphabet, engine) in [("base64", &STANDARD), ("URL-safe base64", &URL_SAFE)] {
            let core = engine.encode(&blob).as_bytes()[start..end].to_vec();
            assert!(core.len() >= 16, "a base64 core this short would match by chance");
            forms.push((format!("{alphabet} at byte offset {k} mod 3"), core));
        }
    }
    let mut unique: Vec<(String, Vec<u8>)> = Vec::new();
    for (what, bytes) in forms {
        if !unique.iter().any(|(_, seen)| *seen == bytes) {
            unique.push((what, bytes));
        }
    }
    unique
}

#[test]
fn the_leak_forms_find_a_secret_inside_larger_encodings() {
    let canary = CANARIES[0].as_bytes();
    // A binary secret whose base64 has `+` and `/`, so the URL-safe forms matter.
    let binary: Vec<u8> = (0..64u8).map(|i| 0xf8 | (i % 8)).collect();
    assert!(STANDARD.encode(&binary).contains(['+', '/']));
    let secrets = Secrets::new([("canary".to_owned(), canary.to_vec()), ("binary".to_owned(), binary.clone())]);
    let filler = |n: usize, seed: u8| (0..n).map(|i| seed.wrapping_add(i as u8).wrapping_mul(97)).collect::<Vec<u8>>();
    for (name, secret) in [("canary", canary), ("binary", &binary[..])] {
        for before in 0..7 {
            for after in 0..4 {
                let mut blob = filler(before, 0xa5);
                blob.extend_from_slice(secret);
                blob.extend(filler(after, 0x3c));
                let found = |encoded: &str| secrets.find_in(encoded.as_bytes());
                let offset = format!("at byte offset {} mod 3", before % 3);
                for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                    let encoded = format!("node -e \"run()\" {}", engine.encode(&blob));
                    let leak = found(&encoded).unwrap_or_else(|| panic!("{name} not found in {encoded}"));
                    assert!(leak.starts_with(&format!("{name} as ")) && leak.ends_with(&offset), "{leak}");
                }
                assert_eq!(found(&hex::encode(&blob)), Some(format!("{name} as hex")));
                assert_eq!(found(&hex::encode_upper(&blob)), Some(format!("{name} as upper-case hex")));
                let json = serde_json::json!({"type": "Buffer", "data": blob}).to_string();
                assert_eq!(found(&json), Some(format!("{name} as a byte list `1,2`")), "{json}");
                assert_eq!(found(&format!("key: {blob:?}")), Some(format!("{name} as a byte list `1, 2`")));
                assert_eq!(found(&format!("key: {blob:x?}")), Some(format!("{name} as a hex byte list `1, 2`")));
                let node =
                    format!("<Buffer {}>", blob.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "));
                assert_eq!(found(&node), Some(format!("{name} as a hex byte list `01 02`")), "{node}");
            }
        }
    }
    assert_eq!(secrets.find_in(format!("x{}y", CANARIES[0]).as_bytes()), Some("canary as raw".to_owned()));
    // Nothing is found where the secret is not: other canaries, a changed byte, the filler alone.
    let mut changed = canary.to_vec();
    changed[10] ^= 1;
    for other in [CANARIES[1].as_bytes(), &changed, &filler(200, 7)] {
        for text in [STANDARD.encode(other), URL_SAFE_NO_PAD.encode(other), hex::encode(other), format!("{other:?}")] {
            assert_eq!(secrets.find_in(text.as_bytes()), None, "{text}");
        }
    }
}

#[test]
fn no_secret_reaches_the_journal_output_argv_or_files() {
    every_command_keeps_secrets("seed");
}

#[test]
fn no_secret_reaches_the_journal_output_argv_or_files_on_kms_encrypted_sessions() {
    every_command_keeps_secrets("kms-exec");
}

/// The exec sessions the runs below open, all told: one per command that reaches the container
/// (`doctor`'s in-task layers share one), several for `connect` (the link watch, the webhook) and
/// `instance delete` (the owner check and the wait); `status --instances` one per environment with a task;
/// `cp` one per copy.
const EXEC_SESSIONS: usize = 32;

/// One run: its arguments, its exit code, and the lab control calls (`POST /_lab/PATH BODY`) made
/// before it.
type Run = (Vec<String>, i32, Vec<(&'static str, serde_json::Value)>);

/// Runs that fail on purpose, each with what is set up before it (`POST /_lab/PATH BODY`) and its
/// exit code: answers that echo the API key (a 401 and a 500 page), an answer of another shape
/// holding the key, a receiver that echoes the JWT and the webhook secret it verifies with, and a
/// receiver that never answers.
fn failing_runs(lab: &Lab) -> Vec<Run> {
    use serde_json::json;
    let task = lab.first_task_id();
    let respond = |status: u16, body: serde_json::Value| {
        ("/evolution/faults", json!({"task": task, "respond_next": {"status": status, "body": body}}))
    };
    let key = CANARIES[0];
    let echoed_key =
        json!({"status": 401, "error": "Unauthorized", "response": {"message": format!("Unauthorized: apikey {key}")}});
    let page =
        format!("<html><head><title>500 Internal</title></head><body>request headers: apikey: {key}</body></html>");
    let old_shape = json!([{"instance": {"instanceName": "alinhou-production", "apikey": key, "status": "open"}}]);
    let hostile = format!("\u{1b}]0;x\u{7}\u{1b}[31mdenied {{token}} (verified with {})", CANARIES[2]);
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        (strings(&["instance", "state", "production"]), 1, vec![respond(401, echoed_key)]),
        (strings(&["instance", "state", "production"]), 1, vec![respond(500, json!(page))]),
        (strings(&["instance", "list", "production"]), 1, vec![respond(200, old_shape)]),
        (strings(&["webhook", "test", "production"]), 1, vec![("/receiver", json!({"status": 401, "body": hostile}))]),
        (strings(&["doctor", "production"]), 1, vec![]),
        (strings(&["webhook", "test", "production", "--timeout", "1s"]), 1, vec![("/receiver", json!({"status": 0}))]),
    ]
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

    let runs: Vec<Run> = [
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
        vec!["cp", svg.to_str().unwrap(), "production:qr.svg"],
        vec!["--output", "json", "cp", "production:qr.svg", out.join("back.svg").to_str().unwrap()],
        vec!["audit"],
        vec!["audit", "--format", "json"],
        vec!["audit", "--format", "github"],
        vec!["scale", "production"],
        vec!["enforce"],
        vec!["conflicts", "production", "--sample", "1s"],
        vec!["webhook", "test", "production"],
        vec!["--output", "json", "webhook", "test", "production"],
        vec!["logs", "production", "--since", "10m"],
        vec!["--output", "json", "logs", "production", "--since", "10m", "--kind", "webhook"],
        vec!["doctor", "production"],
        vec!["--output", "json", "doctor", "production"],
        vec!["api", "production", "GET", "/instance/fetchInstances"],
        vec!["--output", "json", "api", "production", "GET", "/webhook/find/alinhou-production"],
        vec!["status", "--instances"],
        vec!["init", "--force", "--config", init.to_str().unwrap()],
        vec!["instance", "delete", "production", "second", "--yes"],
    ]
    .iter()
    .map(|args| (args.iter().map(|a| a.to_string()).collect(), 0, Vec::new()))
    .chain(failing_runs(&lab))
    .collect();
    let path = path_with(&plugin_dir);
    let mut printed = Vec::new();
    for (args, exit, before) in &runs {
        for (path, body) in before {
            lab.control("POST", path, Some(body));
        }
        let output = lab
            .evoctl()
            .arg("-vvv")
            .args(args)
            .env("PATH", &path)
            .env("EVOCTL_FAKE_PLUGIN_ARGV_LOG", &argv_log)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(*exit), "{base} {args:?}: {}", text(&output.stderr));
        printed.push((args, output.stdout, output.stderr));
    }
    let issued = lab.control("GET", "/tokens", None);
    let mut issued: Vec<String> = issued.as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    // The JWTs the probes and Evolution's deliveries carried (the Authorization header the
    // lab's receiver saw): secrets as much as the key they were signed with.
    let deliveries = lab.control("GET", "/webhooks", None);
    let jwts: Vec<String> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["headers"]["authorization"].as_str())
        .map(|a| a.trim_start_matches("Bearer ").to_owned())
        .collect();
    let probes = deliveries.as_array().unwrap().iter().filter(|d| d["target"] == "production/evoctl-probe").count();
    assert_eq!(
        probes, 7,
        "the probes of `webhook test` and `doctor` (twice each), and of the three failing runs reached the receiver"
    );
    assert_eq!(jwts.len(), deliveries.as_array().unwrap().len(), "every delivery and probe carried a JWT");
    issued.extend(jwts);
    let secrets = Secrets::canaries_and_issued(&issued);
    for (args, stdout, stderr) in &printed {
        secrets.assert_absent(stdout, &format!("{base} {args:?} stdout"));
        secrets.assert_absent(stderr, &format!("{base} {args:?} stderr (-vvv)"));
    }
    if base == "kms-exec" {
        let journal = lab.journal();
        let count = |action: &str| journal.iter().filter(|e| e["action"] == action && e["status"] == 200).count();
        assert_eq!(count("GenerateDataKey"), count("ExecuteCommand"), "every session was encrypted");
        assert_eq!(count("Decrypt"), count("ExecuteCommand"));
    }
    // The three audits and three doctors read production's API key parameter (by full ARN), so its
    // value passed through evoctl and the check means something for it too.
    let read = "arn:aws:ssm:us-east-1:123456789012:parameter/alinhou/production/evolution-api-key";
    let reads = lab.journal().iter().filter(|e| e["parameters"]["Name"] == read && e["status"] == 200).count();
    assert_eq!(reads, 6, "{base}: each audit and doctor read the parameter once");
    // The webhook secret did reach the instance (over the data channel), so the check means something.
    let row = lab.evolution_instance("alinhou-production");
    assert_eq!(row["webhook"]["headers"]["jwt_key"].as_str().map(str::len), Some("CANARY-WEBHOOK-PROD-e5b6d2".len()));

    let entries = lab.journal();
    let count = |action: &str| entries.iter().filter(|e| e["action"] == action).count();
    assert_eq!(
        (count("ExecuteCommand"), count("TerminateSession")),
        (EXEC_SESSIONS, EXEC_SESSIONS),
        "{base}: the runs' exec sessions, each ended"
    );
    let journal = serde_json::to_string(&entries).unwrap();
    secrets.assert_absent(journal.as_bytes(), &format!("the {base} journal (CloudTrail would record it)"));
    let argv = std::fs::read(&argv_log).unwrap();
    assert!(!argv.is_empty(), "the plugin ran and logged its argv");
    secrets.assert_absent(&argv, "the plugin's argv");
    for file in [&png, &svg, &init] {
        secrets.assert_absent(&std::fs::read(file).unwrap(), &file.display().to_string());
    }
}
