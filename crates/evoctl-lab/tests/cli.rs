//! The `evoctl-lab` binary's own command line. (Being an integration test of this crate, it also
//! makes `cargo test --workspace` build the binary that evoctl's integration tests start.)

use std::process::Command;

const LAB: &str = env!("CARGO_BIN_EXE_evoctl-lab");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn unknown_scenario_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(LAB).current_dir(dir.path()).args(["serve", "--scenario", "nope"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("scenario `nope` is neither built in (seed, staging-up, shared-db, rolling-overlap, shared-db-uri, shared-redis, default-api-key, scheduled-staging, exec-disabled, agent-stopped, empty-jwt-key, app-mock-wrong, conflict-loop, kms-exec, two-accounts, two-accounts-both-live, two-accounts-secrets, two-accounts-shared-key, jwt-mismatch, no-whatsapp-route, whatsapp-black-hole, shared-log-group, ephemeral-keys, efs-keys, pairing-refresh) nor a readable file"),
        "{stderr}"
    );
    let output = Command::new(LAB).current_dir(dir.path()).arg("scenarios").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).starts_with("seed               seed: staging 0/0"), "{}", text(&output.stdout));
}
