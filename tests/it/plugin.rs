//! `--backend aws-cli`: the session-manager-plugin path, tested with `evoctl-lab fake-plugin`,
//! a stand-in that prints what the official plugin prints (and cuts output at stdin EOF, as it
//! does). The stand-in itself is checked against the real AWS CLI.

use crate::support::{EVOCTL_LAB, Lab, clean_process, path_with, text};
use std::io::Read;
use std::process::Stdio;

/// The real `aws ecs execute-command` on the production task, with `dir` first on PATH.
fn aws_execute_command(lab: &Lab, dir: &std::path::Path, command: &str) -> std::process::Command {
    let task = text(&lab.evoctl().args(["task", "production"]).output().unwrap().stdout).trim().to_owned();
    let mut aws = clean_process("aws", lab.dir.path());
    aws.envs(lab.env())
        .env("PATH", path_with(dir))
        .args(["ecs", "execute-command", "--cluster", "alinhou-production", "--task", &task, "--interactive"])
        .args(["--command", command]);
    aws
}

/// `evoctl exec production --backend aws-cli -- node -e SCRIPT` with the stand-in plugin on PATH.
fn exec_via_plugin(lab: &Lab, dir: &std::path::Path, script: &str) -> std::process::Command {
    let mut command = lab.evoctl_process();
    command.env("PATH", path_with(dir)).args([
        "exec",
        "production",
        "--backend",
        "aws-cli",
        "--",
        "node",
        "-e",
        script,
    ]);
    command
}

#[test]
fn the_plugin_backend_returns_exact_output_and_status_and_keeps_the_token_off_argv() {
    let lab = Lab::start("seed");
    let dir = lab.fake_plugin_dir();
    let argv_log = lab.dir.path().join("plugin-argv.log");
    let output = exec_via_plugin(&lab, &dir, "process.stdout.write('hi'); process.exit(3)")
        .env("EVOCTL_FAKE_PLUGIN_ARGV_LOG", &argv_log)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "hi");
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(
        argv.starts_with(
            "AWS_SSM_START_SESSION_RESPONSE us-east-1 StartSession  {\"Target\":\"ecs:alinhou-production_"
        ),
        "{argv}"
    );
    let tokens = lab.control("GET", "/tokens", None);
    for token in tokens.as_array().unwrap() {
        assert!(!argv.contains(token.as_str().unwrap()), "the session token is on the plugin's argv");
    }
}

#[test]
fn a_transcript_cut_at_stdin_eof_is_reported_as_truncated() {
    let lab = Lab::start("seed");
    let dir = lab.fake_plugin_dir();
    // Random text: even compressed, its output marker is far longer than the 300 bytes let through.
    let output =
        exec_via_plugin(&lab, &dir, "process.stdout.write(require('crypto').randomBytes(3750).toString('base64'))")
            .env("EVOCTL_FAKE_PLUGIN_CUT_AFTER", "300")
            .output()
            .unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        "error: the session ended before the command's exit status arrived; output may be truncated: \
         session-manager-plugin: Cannot perform start session: EOF\n  \
         fix: run it again; if it repeats, check the container (`evoctl doctor production`)\n"
    );
}

#[test]
fn a_missing_plugin_is_a_clear_error() {
    let lab = Lab::start("seed");
    let output = lab
        .evoctl_process()
        .env("EVOCTL_SESSION_MANAGER_PLUGIN", lab.dir.path().join("no-such-plugin"))
        .args(["exec", "production", "--backend", "aws-cli", "--", "node", "-v"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(
        text(&output.stderr).contains("fix: install the Session Manager plugin, or drop --backend aws-cli"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn the_stand_in_plugin_speaks_the_real_aws_clis_protocol() {
    let lab = Lab::start("seed");
    let dir = lab.fake_plugin_dir();
    let mut child =
        aws_execute_command(&lab, &dir, "node -e 'process.stdout.write(String(6*7)+String.fromCharCode(10))'")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the AWS CLI must be installed");
    // Keep stdin open until the CLI is done, so the plugin does not stop at EOF.
    let _stdin = child.stdin.take();
    let mut raw = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut raw).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let stripped = evoctl::exec::noise::strip(&raw);
    assert_eq!(text(&stripped.payload), "42\r\n", "{}", text(&raw));
    assert_eq!(stripped.ending, evoctl::exec::noise::Ending::Exited);
    assert!(text(&raw).starts_with("\nThe Session Manager plugin was installed successfully."));
}

#[test]
fn the_gateway_refuses_a_forged_token() {
    let lab = Lab::start("seed");
    // The AWS CLI hands the session JSON to the plugin on argv; swap the token before the stand-in sees it.
    let forge = format!(
        "[ $# -eq 0 ] && exec '{EVOCTL_LAB}' fake-plugin\n\
         forged=$(printf '%s' \"$1\" | sed 's/\"tokenValue\": \"[^\"]*\"/\"tokenValue\": \"forged\"/')\n\
         shift\nexec '{EVOCTL_LAB}' fake-plugin \"$forged\" \"$@\""
    );
    let dir = lab.plugin_script("forging-bin", &forge);
    let output = aws_execute_command(&lab, &dir, "node -e 'process.stdout.write(String(1))'")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(stdout.contains("Cannot perform start session: websocket closed"), "{stdout}");
    assert!(!stdout.contains("Exiting session"), "{stdout}");
}
