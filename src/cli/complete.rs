//! Dynamic shell completion: environment names from the config file.
//!
//! The shell's completion function runs `evoctl` itself with `COMPLETE=SHELL` set (clap's
//! [`CompleteEnv`](clap_complete::CompleteEnv), answered in [`crate::main_entry`] before
//! anything else); every `ENV` argument then offers the environment names of the config file
//! the command line would read: `--config FILE` on that line, else `EVOCTL_CONFIG`, else
//! `./evoctl.toml`. A missing or invalid file offers nothing (completion never prints an error).

use crate::config::Config;
use crate::env_vars::EnvVars;
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use std::ffi::OsString;
use std::path::PathBuf;

/// The candidates of an `ENV` argument: the config's environment names, in file order.
pub fn environment_names() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        let path = config_path(std::env::args_os(), std::env::var_os(EnvVars::EVOCTL_CONFIG));
        match Config::load(path.as_deref()) {
            Ok(config) => config.names().into_iter().map(CompletionCandidate::new).collect(),
            Err(_) => Vec::new(),
        }
    })
}

/// The config file the command line being completed names, as `--config` or `EVOCTL_CONFIG`
/// (none: [`Config::load`]'s default, `./evoctl.toml`). `args` is the completer's own argv: the
/// program, `--`, then the words of the line (up to the next `--`, after which words are a
/// remote command's).
fn config_path(args: impl IntoIterator<Item = OsString>, from_env: Option<OsString>) -> Option<PathBuf> {
    let mut words = args.into_iter().skip_while(|word| word != "--").skip(1).take_while(|word| word != "--");
    let mut named = None;
    while let Some(word) = words.next() {
        match word.to_str() {
            Some("--config") => named = words.next().map(PathBuf::from),
            Some(word) if word.starts_with("--config=") => named = Some(PathBuf::from(&word["--config=".len()..])),
            _ => {}
        }
    }
    named.or_else(|| from_env.filter(|value| !value.is_empty()).map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(line: &[&str], from_env: Option<&str>) -> Option<PathBuf> {
        config_path(line.iter().map(OsString::from), from_env.map(OsString::from))
    }

    #[test]
    fn the_config_is_the_lines_then_the_variables_then_the_default() {
        let line = ["evoctl", "--", "evoctl", "--config", "ops.toml", "status", ""];
        assert_eq!(path(&line, Some("env.toml")), Some(PathBuf::from("ops.toml")));
        assert_eq!(
            path(&["evoctl", "--", "evoctl", "--config=a.toml", "status", ""], None),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(path(&["evoctl", "--", "evoctl", "status", ""], Some("env.toml")), Some(PathBuf::from("env.toml")));
        assert_eq!(path(&["evoctl", "--", "evoctl", "status", ""], Some("")), None);
        // A remote command's own --config is not evoctl's.
        let remote = ["evoctl", "--", "evoctl", "exec", "prod", "--", "tool", "--config", "x.toml"];
        assert_eq!(path(&remote, None), None);
    }
}
