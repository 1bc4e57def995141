//! Build script: the commit `evoctl --version` names.
//!
//! Sets `EVOCTL_COMMIT` to `SHORT_HASH DATE` (the commit date, `YYYY-MM-DD`) when the package
//! is built from its own git checkout, else to `unknown` (a crates.io download, a Docker build
//! without `.git`, no git installed). `EVOCTL_BUILD_COMMIT`, when set, is taken as it is instead
//! (a Docker build passes `$(git rev-parse --short=7 HEAD) $(git log -1 --format=%cs)` as a
//! build argument). Cargo reruns it when HEAD moves.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}

/// Rerun when `file` (relative to `dir`) changes; a file that does not exist is not watched
/// (cargo would rerun the script, and rebuild the package, on every build).
fn watch(dir: &Path, file: Option<String>) {
    if let Some(path) = file.map(|file| dir.join(file))
        && path.exists()
    {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn main() {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest_dir);
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=EVOCTL_BUILD_COMMIT");
    if let Some(given) = std::env::var("EVOCTL_BUILD_COMMIT").ok().filter(|given| !given.trim().is_empty()) {
        println!("cargo:rustc-env=EVOCTL_COMMIT={}", given.trim());
        return;
    }
    // Only this package's own checkout counts: a crates.io source unpacked inside some other
    // repository must not take that repository's commit.
    let own_checkout = git(dir, &["rev-parse", "--show-toplevel"])
        .and_then(|top| Path::new(&top).canonicalize().ok())
        .zip(dir.canonicalize().ok())
        .is_some_and(|(top, dir)| top == dir);
    let commit = own_checkout
        .then(|| {
            // HEAD, the branch it points at and packed refs: what moves when a commit is made.
            for path in ["HEAD", "packed-refs"] {
                watch(dir, git(dir, &["rev-parse", "--git-path", path]));
            }
            if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
                watch(dir, git(dir, &["rev-parse", "--git-path", &branch]));
            }
            let hash = git(dir, &["rev-parse", "--short=7", "HEAD"])?;
            let date = git(dir, &["log", "-1", "--format=%cs", "HEAD"])?;
            Some(format!("{hash} {date}"))
        })
        .flatten()
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=EVOCTL_COMMIT={commit}");
}
