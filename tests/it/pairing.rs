//! Pairing diagnostics: connect reads, from inside the task, the Baileys the image ships
//! (`node_modules/baileys/package.json` under Evolution's `/evolution`) and whether its socket
//! code handles WhatsApp's `companion_reg_refresh`; on one that does not (every released Baileys,
//! 7.0.0-rc.9 as 2.3.7 and 2.4.0-rc2 pin it) it warns before the first code, on a patched one not.
//! doctor's evolution layer says the same facts (read by the same program code), with the
//! WhatsApp Web version `GET /` reported.

use crate::connect::BAILEYS_WARNING;
use crate::support::{Lab, check, json_stdout, text};
use serde_json::{Value, json};

/// The evolution layer's evidence after its first part, on the lab's unpatched image.
pub(crate) const UNPATCHED_EVIDENCE: &str = "; Baileys 7.0.0-rc.9 ignores companion_reg_refresh, WhatsApp's answer to scans since 2026-07-28 (Baileys #2737; fix: PR #2765), so scans may fail (\"Couldn't link device\")";

fn evolution_check(lab: &Lab) -> Value {
    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    let report = json_stdout(&output);
    check(&report, "evolution")
}

#[test]
fn doctor_reports_an_unpatched_baileys_and_the_whatsapp_web_version() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let check = evolution_check(&lab);
    assert_eq!(check["status"], "OK", "{check}");
    assert_eq!(
        check["evidence"].as_str().unwrap(),
        format!(
            "Evolution API 2.3.7 (client evolution_production), WhatsApp Web 2.3000.1027934701{UNPATCHED_EVIDENCE}"
        )
    );
}

#[test]
fn doctor_reports_a_patched_baileys() {
    let lab = Lab::start_with("seed", &["--baileys-patched"]);
    lab.wait_settled();
    let check = evolution_check(&lab);
    assert_eq!(check["status"], "OK", "{check}");
    assert_eq!(
        check["evidence"],
        "Evolution API 2.3.7 (client evolution_production), WhatsApp Web 2.3000.1027934701; Baileys 7.0.0-rc.9 handles companion_reg_refresh (a patched image)"
    );
}

#[test]
fn connect_warns_of_an_unpatched_baileys_before_the_first_code() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let output = lab.evoctl().args(["connect", "production", "--timeout", "3s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let warned = stderr.find(BAILEYS_WARNING).unwrap_or_else(|| panic!("no warning: {stderr}"));
    let first_code = stderr.find("QR 1 of 30").unwrap_or_else(|| panic!("no code: {stderr}"));
    assert!(warned < first_code, "{stderr}");
    assert_eq!(stderr.matches("companion_reg_refresh").count(), 1, "said once: {stderr}");
}

#[test]
fn a_patched_baileys_links_without_the_warning() {
    let lab = Lab::start_with("seed", &["--baileys-patched", "--auto-scan-after-ms", "1500"]);
    lab.wait_settled();
    let output = lab.evoctl().args(["connect", "production", "--stable-for", "1s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!text(&output.stderr).contains("companion_reg_refresh"), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with("linked 5511987654321 to alinhou-production\n"),
        "{}",
        text(&output.stdout)
    );
}

/// The pairing refresh (scenario `pairing-refresh`: WhatsApp answers a scan with
/// `companion_reg_refresh`; production logs Baileys at debug): on the lab's unpatched image the
/// phone's scan, 1.5 s after the first code is shown, fails; connect says so from the log as it
/// happens, well before its timeout, ends the watch's session and exits with the fix.
#[test]
fn a_scan_failed_to_the_pairing_refresh_is_said_when_it_happens_and_ends_the_watch() {
    let lab = Lab::start_with("pairing-refresh", &["--auto-scan-after-ms", "1500"]);
    lab.wait_settled();
    let started = std::time::Instant::now();
    let output = lab.evoctl().args(["connect", "production", "--timeout", "60s"]).output().unwrap();
    let took = started.elapsed();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}: {stderr}");
    let warning = BAILEYS_WARNING.replace(
        "evoctl sees one only at LOG_BAILEYS=debug",
        "evoctl reads the log (LOG_BAILEYS=debug) to stop when one does",
    );
    let warned = stderr.find(&warning).unwrap_or_else(|| panic!("no warning: {stderr}"));
    let first_code = stderr.find("QR 1 of 30").unwrap_or_else(|| panic!("no code: {stderr}"));
    assert!(warned < first_code, "{stderr}");
    let row = lab.evolution_instance("alinhou-production");
    assert_eq!((&row["state"], &row["processes"][0]["failed_scans"]), (&json!("connecting"), &json!(1)), "{row}");
    let error = stderr.rsplit_once("error: ").map(|(_, e)| e).unwrap_or_else(|| panic!("no error: {stderr}"));
    let (before, after) = error.split_once(" (the phone says").unwrap_or_else(|| panic!("{error}"));
    // The time is the log line's (RFC 3339, to the second).
    let at = before.strip_prefix("alinhou-production was not linked: a scan failed at ").unwrap();
    assert!(at.len() == 20 && at.ends_with('Z'), "{at}");
    assert_eq!(
        after,
        " \"Couldn't link device\"): WhatsApp answered it with companion_reg_refresh, retiring the pairing secret, and the image's Baileys 7.0.0-rc.9 ignores that, so every code it shows fails the same way; the watch was ended\n  \
         fix: run an image whose Baileys handles companion_reg_refresh (Baileys PR #2765; see the README's \"A scan fails on the phone\"), deployed with `evoctl redeploy` and a new task definition revision; then `evoctl connect production`\n"
    );
    let session = crate::ending::sessions(&lab).pop().expect("the watch ran in a session");
    crate::ending::assert_ended(&lab, &session);
}

/// With a patched Baileys in the image the same flow links: the failed first scan's refresh
/// shows a new code (the same ref, a new secret), and the phone's scan of that one links.
#[test]
fn with_a_patched_baileys_the_refresh_shows_a_new_code_whose_scan_links() {
    let lab = Lab::start_with("pairing-refresh", &["--baileys-patched", "--auto-scan-after-ms", "1500"]);
    lab.wait_settled();
    let output =
        lab.evoctl().args(["connect", "production", "--stable-for", "1s", "--timeout", "60s"]).output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("companion_reg_refresh"), "{stderr}");
    let row = lab.evolution_instance("alinhou-production");
    let issued = row["issued_codes"].as_array().unwrap();
    assert_eq!(
        (&row["state"], &row["processes"][0]["failed_scans"], issued.len()),
        (&json!("open"), &json!(1), 2),
        "{row}"
    );
    assert_eq!(row["scanned_code"], issued[1], "the second code linked: {row}");
    assert!(stderr.contains("QR 2 of 30"), "{stderr}");
    assert!(
        text(&output.stdout).starts_with("linked 5511987654321 to alinhou-production\n"),
        "{}",
        text(&output.stdout)
    );
}
