//! Pairing diagnostics: connect reads, from inside the task, the Baileys the image ships
//! (`node_modules/baileys/package.json` under Evolution's `/evolution`) and whether its socket
//! code handles WhatsApp's `companion_reg_refresh`; on one that does not (every released Baileys,
//! 7.0.0-rc.9 as 2.3.7 and 2.4.0-rc2 pin it) it warns before the first code, on a patched one not.
//! doctor's evolution layer says the same facts (read by the same program code), with the
//! WhatsApp Web version `GET /` reported.

use crate::connect::BAILEYS_WARNING;
use crate::support::{Lab, check, json_stdout, text};
use serde_json::Value;

/// The evolution layer's evidence after its first part, on the lab's unpatched image.
pub(crate) const UNPATCHED_EVIDENCE: &str = "; Baileys 7.0.0-rc.9 ignores companion_reg_refresh (no release handles it; fix: Baileys PR #2765): a code used after WhatsApp rotates the pairing secret fails on the phone; use each code at once, or a patched image";

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
