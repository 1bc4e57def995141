//! Pairing diagnostics: connect reads, from inside the task, the Baileys the image ships
//! (`node_modules/baileys/package.json` under Evolution's `/evolution`) and whether its socket
//! code handles WhatsApp's `companion_reg_refresh`; on one that does not (every released Baileys,
//! 7.0.0-rc.9 as 2.3.7 and 2.4.0-rc2 pin it) it warns before the first code, on a patched one not.

use crate::connect::BAILEYS_WARNING;
use crate::support::{Lab, text};

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
