//! Commands that need no AWS: init, completions, help/version, and the not-yet-implemented ones.

use crate::support::{EVOCTL, clean_command, json_stdout, text};

#[test]
fn init_writes_the_starter_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let output = clean_command(EVOCTL, dir.path()).arg("init").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "wrote evoctl.toml (staging 0/0, production 1/1); edit it, then run `evoctl status`\n"
    );
    let written = std::fs::read_to_string(dir.path().join("evoctl.toml")).unwrap();
    assert!(written.contains("[env.staging]\ncluster = \"alinhou-staging\""));
    assert!(written.contains("scaling = { min = 1, max = 1 }"));

    std::fs::write(dir.path().join("evoctl.toml"), "# mine\n").unwrap();
    let output = clean_command(EVOCTL, dir.path()).arg("init").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: evoctl.toml already exists; not overwriting it\n  fix: pass --force to replace it, or --config to write somewhere else\n"
    );
    assert_eq!(std::fs::read_to_string(dir.path().join("evoctl.toml")).unwrap(), "# mine\n");

    let output = clean_command(EVOCTL, dir.path()).args(["--output", "json", "init", "--force"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json_stdout(&output)["written"], "evoctl.toml");
    assert_eq!(std::fs::read_to_string(dir.path().join("evoctl.toml")).unwrap(), written);
}

#[test]
fn init_honours_config_path_and_the_starter_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let output = clean_command(EVOCTL, dir.path()).args(["--config", "other.toml", "init"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(dir.path().join("other.toml").exists());
    // The starter parses: status gets past config loading and fails only on the region.
    let output = clean_command(EVOCTL, dir.path())
        .args(["--config", "other.toml", "status"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).starts_with("error: no AWS region configured\n"), "{}", text(&output.stderr));
}

#[test]
fn completions_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let output = clean_command(EVOCTL, dir.path()).args(["completions", "bash"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let script = text(&output.stdout);
    assert!(script.contains("_evoctl()"), "{script}");
    assert!(script.contains("status"));
}

#[test]
fn usage_errors_exit_2_and_version_is_quick() {
    let dir = tempfile::tempdir().unwrap();
    let output = clean_command(EVOCTL, dir.path()).args(["status", "--output", "yaml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = clean_command(EVOCTL, dir.path()).arg("--version").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stdout), format!("evoctl {} ({})\n", env!("CARGO_PKG_VERSION"), built_from()));
}

/// The commit this checkout is at, as `--version` names it: short hash and commit date.
fn built_from() -> String {
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .expect("git runs");
        assert!(output.status.success(), "git {args:?}: {}", text(&output.stderr));
        text(&output.stdout).trim().to_owned()
    };
    format!("{} {}", git(&["rev-parse", "--short=7", "HEAD"]), git(&["log", "-1", "--format=%cs", "HEAD"]))
}

#[test]
fn missing_config_file_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let output = clean_command(EVOCTL, dir.path()).arg("status").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: evoctl.toml: config file not found\n  fix: run `evoctl init` to write a starter file, or point --config / EVOCTL_CONFIG at yours\n"
    );
}

#[test]
fn the_command_surface_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let output = clean_command(EVOCTL, dir.path()).arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    insta::assert_snapshot!(text(&output.stdout));
}

/// What bash's completion function runs for `words` with the cursor on the last one: `evoctl`
/// itself with clap's completion variables (as the registered script sets them); the candidates
/// that are values, not flags.
fn complete_bash(dir: &std::path::Path, words: &[&str], vars: &[(&str, &str)]) -> String {
    let output = clean_command(EVOCTL, dir)
        .env("COMPLETE", "bash")
        .env("_CLAP_IFS", "\u{b}")
        .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
        .env("_CLAP_COMPLETE_COMP_TYPE", "9")
        .env("_CLAP_COMPLETE_SPACE", "false")
        .envs(vars.iter().copied())
        .arg("--")
        .args(words)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    // On an empty word clap also offers the command's flags, after the values: those are clap's.
    let candidates = text(&output.stdout);
    let (values, flags): (Vec<&str>, Vec<&str>) = candidates.split('\u{b}').partition(|c| !c.starts_with('-'));
    assert!(flags.iter().all(|flag| flag.starts_with("--")), "{candidates:?}");
    values.iter().filter(|value| !value.is_empty()).copied().collect::<Vec<_>>().join("\u{b}")
}

#[test]
fn completion_offers_the_environment_names_of_the_config_the_line_would_read() {
    let dir = tempfile::tempdir().unwrap();
    // No config file: nothing to offer, and no error.
    assert_eq!(complete_bash(dir.path(), &["evoctl", "status", ""], &[]), "");
    assert_eq!(clean_command(EVOCTL, dir.path()).arg("init").output().unwrap().status.code(), Some(0));
    std::fs::write(
        dir.path().join("ops.toml"),
        "[env.alpha]\ncluster = \"a\"\nscaling = { min = 0, max = 0 }\n[env.beta]\ncluster = \"b\"\nscaling = { min = 1, max = 1 }\n",
    )
    .unwrap();
    // ./evoctl.toml, in file order; a prefix narrows them; every ENV argument offers them.
    assert_eq!(complete_bash(dir.path(), &["evoctl", "status", ""], &[]), "staging\u{b}production");
    assert_eq!(complete_bash(dir.path(), &["evoctl", "status", "staging", "pro"], &[]), "production");
    assert_eq!(complete_bash(dir.path(), &["evoctl", "connect", "st"], &[]), "staging");
    assert_eq!(complete_bash(dir.path(), &["evoctl", "exec", "-i", "p"], &[]), "production");
    // --config on the line wins over EVOCTL_CONFIG, which wins over ./evoctl.toml.
    let env = [("EVOCTL_CONFIG", "ops.toml")];
    assert_eq!(complete_bash(dir.path(), &["evoctl", "doctor", ""], &env), "alpha\u{b}beta");
    let line = ["evoctl", "--config", "evoctl.toml", "logs", ""];
    assert_eq!(complete_bash(dir.path(), &line, &env), "staging\u{b}production");
    assert_eq!(complete_bash(dir.path(), &["evoctl", "--config=ops.toml", "audit", "b"], &[]), "beta");
}

#[test]
fn complete_bash_prints_the_registration_script() {
    let dir = tempfile::tempdir().unwrap();
    let output = clean_command(EVOCTL, dir.path()).env("COMPLETE", "bash").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let script = r#"
_clap_complete_evoctl() {
    local IFS=$'\013'
    local _CLAP_COMPLETE_INDEX=${COMP_CWORD}
    local _CLAP_COMPLETE_COMP_TYPE=${COMP_TYPE}
    if compopt +o nospace 2> /dev/null; then
        local _CLAP_COMPLETE_SPACE=false
    else
        local _CLAP_COMPLETE_SPACE=true
    fi
    local words=("${COMP_WORDS[@]}")
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        words[COMP_CWORD]="$2"
    fi
    COMPREPLY=( $( \
        _CLAP_IFS="$IFS" \
        _CLAP_COMPLETE_INDEX="$_CLAP_COMPLETE_INDEX" \
        _CLAP_COMPLETE_COMP_TYPE="$_CLAP_COMPLETE_COMP_TYPE" \
        _CLAP_COMPLETE_SPACE="$_CLAP_COMPLETE_SPACE" \
        COMPLETE="bash" \
        "EVOCTL" -- "${words[@]}" \
    ) )
    if [[ $? != 0 ]]; then
        unset COMPREPLY
    elif [[ $_CLAP_COMPLETE_SPACE == false ]] && [[ "${COMPREPLY-}" =~ [=/:]$ ]]; then
        compopt -o nospace
    fi
}
if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -o nospace -o bashdefault -o nosort -F _clap_complete_evoctl evoctl
else
    complete -o nospace -o bashdefault -F _clap_complete_evoctl evoctl
fi

"#;
    assert_eq!(text(&output.stdout), script.replace("EVOCTL", EVOCTL));
}
