//! `evoctl connect`: the runbook end to end against the lab, with the simulated phone.

use crate::qr::zbar_decode;
use crate::support::{Lab, json_stdout, text, wait_until};
use serde_json::Value;
use std::time::Duration;

fn executes(journal: &[Value]) -> usize {
    journal.iter().filter(|e| e["action"] == "ExecuteCommand").count()
}

/// What connect says first, before any code, of the Baileys every lab image ships (7.0.0-rc.9,
/// as 2.3.7 pins it, which does not handle companion_reg_refresh).
pub(crate) const BAILEYS_WARNING: &str = "warning: the image's Baileys 7.0.0-rc.9 ignores companion_reg_refresh, WhatsApp's answer to scans since 2026-07-28 (Baileys #2737; fix: PR #2765), so scans may fail (\"Couldn't link device\"); evoctl sees one only at LOG_BAILEYS=debug\n";

#[test]
fn connect_links_production_shows_a_decodable_qr_and_is_idempotent() {
    let lab = Lab::start_with("seed", &["--auto-scan-after-ms", "1500"]);
    lab.wait_settled();
    let png = lab.dir.path().join("qr.png");
    let output =
        lab.evoctl().args(["connect", "production", "--stable-for", "1s", "--png"]).arg(&png).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    // No terminal here: the code is said on stderr, and stdout holds only the summary.
    let summary = text(&output.stdout);
    assert!(
        summary.starts_with("linked 5511987654321 to alinhou-production\nenv:      production\ntask:     "),
        "{summary}"
    );
    assert!(summary.contains("\nwebhook:  unchanged\ntime:     "), "{summary}");
    let row = lab.evolution_instance("alinhou-production");
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr,
        format!(
            "preflight ok: production is the only live environment on its number; task {} (exec agent RUNNING)\n\
             waiting for alinhou-production to be linked (up to 600 s)…\n{BAILEYS_WARNING}created the instance\n\
             QR 1 of 30: no terminal to draw it on; scan {}. Its code: {}\n",
            lab.first_task_id(),
            png.display(),
            row["scanned_code"].as_str().unwrap()
        )
    );

    assert_eq!(row["state"], "open");
    let issued: Vec<&str> = row["issued_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(issued.contains(&zbar_decode(&png).as_str()), "the PNG shows a code the simulator issued");
    let config = std::fs::read_to_string(lab.config_path()).unwrap();
    let url = row["webhook"]["url"].as_str().unwrap();
    assert!(url.ends_with("/_lab/webhooks/production") && config.contains(url), "{url}");
    assert_eq!(row["webhook"]["events"], serde_json::json!(["MESSAGES_UPSERT"]));

    // Again: already connected, nothing created, exit 0.
    lab.control("DELETE", "/journal", None);
    let output =
        lab.evoctl().args(["--output", "json", "connect", "production", "--stable-for", "1s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    assert_eq!(report["schema"], "evoctl.connect/v1");
    assert_eq!(report["already_connected"], true);
    assert_eq!(report["created"], false);
    assert_eq!(report["qr_shown"], 0);
    assert_eq!(report["number"], "5511987654321");
    let output = lab.evoctl().args(["connect", "production", "--stable-for", "1s"]).output().unwrap();
    assert!(text(&output.stdout).starts_with("alinhou-production is already connected (open) to 5511987654321\n"));
    // Already linked: one exec session per run (the watch reports the number too), none per poll.
    assert_eq!(executes(&lab.journal()), 2, "one exec session per run");
}

#[test]
fn connect_refuses_while_staging_is_up_and_enforce_fixes_it_first() {
    let lab = Lab::start_with("staging-up", &["--auto-scan-after-ms", "1500"]);
    lab.wait_settled();
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["connect", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(
        text(&output.stderr),
        "error: refused before touching Evolution: staging has 1 live task(s) (desired 1) on the number production uses\n  \
         fix: bring every environment to its configured scaling first: `evoctl enforce --apply` (or `evoctl connect production --enforce`)\n"
    );
    assert_eq!(executes(&lab.journal()), 0, "no Evolution call before the preflight passes");

    let output = lab.evoctl().args(["connect", "production", "--enforce", "--stable-for", "1s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("linked 5511987654321 to alinhou-production\n"));
    let journal = lab.journal();
    let position = |action: &str| journal.iter().position(|e| e["action"] == action).unwrap();
    assert!(position("RegisterScalableTarget") < position("UpdateService"));
    assert!(position("UpdateService") < position("ExecuteCommand"), "staging goes down before Evolution is touched");
    let status = json_stdout(&lab.evoctl().args(["--output", "json", "status", "staging"]).output().unwrap());
    assert_eq!(status["environments"][0]["tasks"], serde_json::json!([]));
}

#[test]
fn a_rotated_qr_is_shown_and_its_scan_links() {
    // The phone scans 2.5 s after the first QR; QRs rotate every 1.5 s: it scans the second one.
    let lab = Lab::start_with("seed", &["--qr-rotate-ms", "1500", "--auto-scan-after-ms", "2500"]);
    lab.wait_settled();
    let png = lab.dir.path().join("rotating.png");
    let output =
        lab.evoctl().args(["connect", "production", "--stable-for", "1s", "--png"]).arg(&png).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("linked 5511987654321 to alinhou-production\n"));
    let row = lab.evolution_instance("alinhou-production");
    let second = row["issued_codes"][1].as_str().unwrap();
    let said = |n: usize| {
        format!(
            "QR {n} of 30: no terminal to draw it on; scan {}. Its code: {}\n",
            png.display(),
            row["issued_codes"][n - 1].as_str().unwrap()
        )
    };
    let stderr = text(&output.stderr);
    assert!(stderr.ends_with(&format!("{}{}", said(1), said(2))), "{stderr}");
    assert_eq!(row["scanned_code"], second, "the phone linked with the rotated code");
    assert_eq!(zbar_decode(&png), second, "the PNG followed the rotation");
}

#[test]
fn ctrl_c_says_what_state_things_are_in() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let out_path = lab.dir.path().join("connect.out");
    let err_path = lab.dir.path().join("connect.err");
    let mut child = lab
        .evoctl_process()
        .args(["connect", "production"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), "the first QR", || {
        std::fs::read_to_string(&err_path).unwrap().contains("QR 1 of 30: ").then_some(())
    });
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = wait_until(Duration::from_secs(10), "evoctl to stop", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(130));
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        stderr.ends_with(
            "interrupted: alinhou-production is not linked (state connecting, 1 QR(s) shown); the watch in the container was ended and nothing else was changed. Run `evoctl connect production` again to continue\n"
        ),
        "{stderr}"
    );
    assert_eq!(lab.evolution_instance("alinhou-production")["state"], "connecting");
    // What remains says the same: the watch's command is gone and its session was terminated.
    let session = crate::ending::sessions(&lab).pop().expect("the watch ran");
    crate::ending::assert_ended(&lab, &session);
}

#[test]
fn nearing_the_qr_limit_is_warned_and_reaching_it_stops_the_watch_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("low-limit.toml");
    std::fs::write(
        &scenario,
        "extends = \"seed\"\ndescription = \"seed with QRCODE_LIMIT 4\"\n\
         [task_definitions.alinhou-production-EvolutionService.environment]\nQRCODE_LIMIT = \"4\"\n",
    )
    .unwrap();
    let lab = Lab::start_with(scenario.to_str().unwrap(), &["--qr-rotate-ms", "400"]);
    lab.wait_settled();
    let output = lab.evoctl().args(["connect", "production", "--timeout", "10s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("warning: QR 1 of 4 (QRCODE_LIMIT): after the last one Evolution refuses the instance"),
        "{stderr}"
    );
    // The limit reached stops the watch at once, with the fix (not at the timeout).
    assert!(stderr.contains("error: alinhou-production was not linked and Evolution refused it: its QRCODE_LIMIT of 4 codes was reached (the last one shown here was number "), "{stderr}");
    assert!(
        stderr.ends_with(
            "), so it logged the instance out and closed it\n  \
             fix: run `evoctl connect production` again for a new flow of 4 codes and use one as soon as it appears, or raise QRCODE_LIMIT in the task definition (2.3.7's default is 30)\n"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("not linked within"), "{stderr}");
}
