//! `evoctl cp` against the lab's agent: a 20 MiB file up and back with equal digests and its
//! mode kept, a connection cut mid-copy (either way) leaving no partial file on either side, a
//! destination that is a symbolic link refused on both sides, `-r` on a small tree, and bad
//! input. The lab's container filesystem is a real directory (`<ready file>.containers/tasks/
//! <task>/evolution`, the container's working directory), which the tests look into.

use crate::support::{Lab, json_stdout, text, wait_until};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The container's working directory, where relative container paths start, as the container
/// itself says (the lab makes it when the task's first command runs).
fn container_dir(lab: &Lab) -> PathBuf {
    let output = lab
        .evoctl()
        .args(["exec", "production", "-T", "--", "node", "-e", "process.stdout.write(process.cwd())"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let dir = PathBuf::from(text(&output.stdout));
    let expected = lab.dir.path().join("ready.containers/tasks").join(lab.first_task_id()).join("evolution");
    assert_eq!(dir, expected, "the lab's container directory");
    assert!(dir.is_dir(), "no container directory at {}", dir.display());
    dir
}

/// `bytes` of seeded pseudo-random data (xorshift), so a failure can be replayed.
fn random_bytes(bytes: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(bytes + 8);
    while out.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(bytes);
    out
}

fn digest(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read file")))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// The names in `dir` that are copies in progress (evoctl's temporary names on either side).
fn temporaries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.') && name.contains(".evoctl") && name.ends_with(".tmp"))
        .collect();
    names.sort();
    names
}

/// Run evoctl with `args` (resumes refused after one attempt) while watching `dir`: its output
/// and whether a temporary file with data in it was seen there meanwhile (the copy was cut mid-way,
/// not before it began).
fn run_watching(lab: &Lab, args: &[&str], dir: &Path) -> (std::process::Output, bool) {
    let mut child = lab
        .evoctl_process()
        .args(args)
        .env("AWS_MAX_ATTEMPTS", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut partial = false;
    wait_until(Duration::from_secs(120), "evoctl cp to end", || {
        partial |= temporaries(dir).iter().any(|name| std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() > 0));
        child.try_wait().unwrap()
    });
    (child.wait_with_output().unwrap(), partial)
}

#[test]
fn a_20_mib_random_file_goes_up_and_back_with_equal_digests_and_its_mode() {
    let lab = Lab::start("seed");
    let container = container_dir(&lab);
    let local = lab.dir.path().join("a.bin");
    std::fs::write(&local, random_bytes(20 * 1024 * 1024, 26)).unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o640)).unwrap();
    let sha256 = digest(&local);

    let output = lab.evoctl().args(["-q", "--output", "json", "cp", "a.bin", "production:a.bin"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    let document = json_stdout(&output);
    assert_eq!(document["schema"], "evoctl.cp/v1");
    assert_eq!(document["direction"], "upload");
    assert_eq!(document["environment"], "production");
    assert_eq!(document["files"], 1);
    assert_eq!(document["bytes"], 20 * 1024 * 1024);
    assert_eq!(document["sha256"], sha256.as_str());
    assert!(document["seconds"].as_f64().is_some_and(|s| (0.0..120.0).contains(&s)), "{document}");
    let remote = container.join("a.bin");
    assert_eq!(digest(&remote), sha256);
    assert_eq!(mode(&remote), 0o640);
    assert_eq!(temporaries(&container), Vec::<String>::new());

    // Back, under another name, from an absolute container path.
    let back = lab.dir.path().join("back.bin");
    let source = format!("production:{}", remote.display());
    let output = lab.evoctl().args(["-q", "--output", "json", "cp", &source, "back.bin"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    let document = json_stdout(&output);
    assert_eq!(document["direction"], "download");
    assert_eq!(document["files"], 1);
    assert_eq!(document["bytes"], 20 * 1024 * 1024);
    assert_eq!(document["sha256"], sha256.as_str());
    assert_eq!(digest(&back), sha256);
    assert_eq!(mode(&back), 0o640);
    assert_eq!(temporaries(lab.dir.path()), Vec::<String>::new());
}

/// The socket is cut mid-copy and every ResumeSession refused: the copy is given up with a
/// non-zero exit, the session ended, and no file, partial or temporary, is left on either side
/// (in the container the copy program's janitor removes it once ending the session killed the
/// program).
#[test]
fn a_connection_cut_mid_copy_leaves_no_partial_file_on_either_side() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let container = container_dir(&lab);
    let local = lab.dir.path().join("big.bin");
    std::fs::write(&local, random_bytes(20 * 1024 * 1024, 7)).unwrap();
    let cut = |frames: u64| {
        lab.control(
            "POST",
            "/faults",
            Some(&json!({"disconnect_after_frames": frames, "throttle_rate": 1.0, "actions": ["ResumeSession"]})),
        );
    };

    // Up: the program says its progress about every MiB, one output frame each; the sixth
    // output frame is about 5 MiB in.
    cut(6);
    let (output, partial) = run_watching(&lab, &["-q", "cp", "big.bin", "production:big.bin"], &container);
    assert!(partial, "no partial file was seen in the container before the cut");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    assert!(stderr.starts_with("error: the copy did not finish: the data channel of session "), "{stderr}");
    assert!(stderr.contains("; no partial file was kept\n"), "{stderr}");
    let session = crate::ending::sessions(&lab).pop().expect("a session ran");
    crate::ending::assert_ended(&lab, &session);
    wait_until(Duration::from_secs(10), "the container's temporary file removed", || {
        temporaries(&container).is_empty().then_some(())
    });
    assert!(!container.join("big.bin").exists(), "a partial big.bin in the container");

    // Down: the file is put in place first, then the copy back is cut about 3 MB in.
    lab.control("POST", "/faults", Some(&json!({})));
    let output = lab.evoctl().args(["-q", "cp", "big.bin", "production:big.bin"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    cut(3000);
    let (output, partial) = run_watching(&lab, &["-q", "cp", "production:big.bin", "back.bin"], lab.dir.path());
    assert!(partial, "no partial file was seen here before the cut");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    assert!(stderr.starts_with("error: the copy did not finish: the data channel of session "), "{stderr}");
    let session = crate::ending::sessions(&lab).pop().expect("a session ran");
    crate::ending::assert_ended(&lab, &session);
    assert!(!lab.dir.path().join("back.bin").exists(), "a partial back.bin here");
    assert_eq!(temporaries(lab.dir.path()), Vec::<String>::new());
    assert_eq!(digest(&container.join("big.bin")), digest(&local), "the source was changed");
}

/// Ctrl-C once a temporary file with data in it exists in `dir`: evoctl exits 130 and the
/// session is ended.
fn interrupt_mid_copy(lab: &Lab, args: &[&str], dir: &Path) {
    let child = lab
        .evoctl_process()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(60), "a partial file mid-copy", || {
        temporaries(dir).iter().any(|name| std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() > 0)).then_some(())
    });
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{args:?}: {stderr}");
    assert!(stderr.starts_with("interrupted (Ctrl-C): exec session "), "{stderr}");
    assert!(stderr.ends_with(" was ended, and the command with it\n"), "{stderr}");
    let session = crate::ending::sessions(lab).pop().expect("a session ran");
    crate::ending::assert_ended(lab, &session);
}

#[test]
fn ctrl_c_mid_copy_leaves_no_partial_file_on_either_side() {
    let lab = Lab::start("seed");
    let container = container_dir(&lab);
    std::fs::write(lab.dir.path().join("big.bin"), random_bytes(20 * 1024 * 1024, 11)).unwrap();

    interrupt_mid_copy(&lab, &["-q", "cp", "big.bin", "production:big.bin"], &container);
    wait_until(Duration::from_secs(10), "the container's temporary file removed", || {
        temporaries(&container).is_empty().then_some(())
    });
    assert!(!container.join("big.bin").exists(), "a partial big.bin in the container");

    let output = lab.evoctl().args(["-q", "cp", "big.bin", "production:big.bin"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    interrupt_mid_copy(&lab, &["-q", "cp", "production:big.bin", "back.bin"], lab.dir.path());
    assert_eq!(temporaries(lab.dir.path()), Vec::<String>::new());
    assert!(!lab.dir.path().join("back.bin").exists(), "a partial back.bin here");
}

#[test]
fn a_destination_that_is_a_symlink_is_refused_on_both_sides() {
    let lab = Lab::start("seed");
    let container = container_dir(&lab);
    std::fs::write(lab.dir.path().join("a.bin"), b"new content\n").unwrap();
    std::fs::write(container.join("a.bin"), b"remote content\n").unwrap();
    let elsewhere = lab.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let target = elsewhere.join("kept.bin");
    std::fs::write(&target, b"kept\n").unwrap();

    // In the container: the link is not written through, nor replaced.
    std::os::unix::fs::symlink(&target, container.join("link.bin")).unwrap();
    let output = lab.evoctl().args(["cp", "a.bin", "production:link.bin"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: production: link.bin is a symbolic link (it points to {}); evoctl cp does not write through a link into another place\n  fix: copy to the path it points to, or remove the link first\n",
            target.display()
        )
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"kept\n");
    assert!(std::fs::symlink_metadata(container.join("link.bin")).unwrap().file_type().is_symlink());
    assert_eq!(temporaries(&container), Vec::<String>::new());

    // Here: refused before any session starts.
    let executed = || lab.journal().iter().filter(|e| e["action"] == "ExecuteCommand").count();
    let before = executed();
    std::os::unix::fs::symlink(&target, lab.dir.path().join("here.bin")).unwrap();
    let output = lab.evoctl().args(["cp", "production:a.bin", "here.bin"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: here.bin is a symbolic link (it points to {}); evoctl cp does not write through a link into another place\n  fix: copy to the path it points to, or remove the link first\n",
            target.display()
        )
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"kept\n");
    assert_eq!(executed(), before, "a session was started for a refused copy");
}

#[test]
fn r_copies_a_small_tree_both_ways_with_its_modes() {
    let lab = Lab::start("seed");
    let container = container_dir(&lab);
    let tree = lab.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deep")).unwrap();
    std::fs::create_dir(tree.join("empty")).unwrap();
    std::fs::write(tree.join("top.txt"), b"top\n").unwrap();
    std::fs::write(tree.join("sub/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(tree.join("sub/run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::write(tree.join("sub/deep/data.bin"), random_bytes(300 * 1024, 3)).unwrap();
    std::fs::set_permissions(tree.join("sub"), std::fs::Permissions::from_mode(0o700)).unwrap();
    // Not what a umask of 022 gives a new directory: the mode is set, not left to mkdir.
    std::fs::set_permissions(tree.join("empty"), std::fs::Permissions::from_mode(0o750)).unwrap();

    // Without -r a directory is bad input.
    let output = lab.evoctl().args(["cp", "tree", "production:"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: tree is a directory\n  fix: to copy it and everything in it: `evoctl cp -r tree production:`\n"
    );

    // Up into the working directory (an existing directory: the tree lands under its own name).
    let output = lab.evoctl().args(["--output", "json", "cp", "-r", "tree", "production:"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let document = json_stdout(&output);
    assert_eq!(document["files"], 3);
    assert_eq!(document["bytes"], 4 + 18 + 300 * 1024);
    assert_eq!(document["sha256"], serde_json::Value::Null);
    let paths: Vec<&str> =
        document["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["sub/deep/data.bin", "sub/run.sh", "top.txt"]);
    let up = container.join("tree");
    assert_same_tree(&tree, &up);

    // Without -r a container directory is bad input too.
    let output = lab.evoctl().args(["cp", "production:tree", "copy"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: production: tree is a directory\n  fix: to copy it and everything in it: `evoctl cp -r production:tree copy`\n"
    );
    assert!(!lab.dir.path().join("copy").exists());

    // Back into a new directory name.
    let output = lab.evoctl().args(["-q", "cp", "-r", "production:tree", "copy"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("copied 3 file(s), 300.0 KiB, from production:tree to copy in "), "{stdout}");
    assert!(stdout.ends_with(" s\n") && stdout.lines().count() == 1, "{stdout}");
    assert_same_tree(&tree, &lab.dir.path().join("copy"));
}

/// Same entries, contents and modes.
fn assert_same_tree(expected: &Path, got: &Path) {
    fn entries(root: &Path, rel: &Path, out: &mut Vec<(String, u32, Option<String>)>) {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel)).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            let path = rel.join(&name);
            let full = root.join(&path);
            let meta = std::fs::symlink_metadata(&full).unwrap();
            let sha = meta.is_file().then(|| digest(&full));
            out.push((path.display().to_string(), meta.permissions().mode() & 0o777, sha));
            if meta.is_dir() {
                entries(root, &path, out);
            }
        }
    }
    let (mut want, mut have) = (Vec::new(), Vec::new());
    entries(expected, Path::new(""), &mut want);
    entries(got, Path::new(""), &mut have);
    assert_eq!(have, want, "{} differs from {}", got.display(), expected.display());
    assert_eq!(mode(got), mode(expected));
}

#[test]
fn bad_input_is_exit_2_with_the_fix() {
    let lab = Lab::start("seed");
    let cases: [(&[&str], &str); 4] = [
        (
            &["cp", "a.bin", "b.bin"],
            "error: neither a.bin nor b.bin is ENV:PATH (a path in a container)\n  fix: name the container's side, e.g. `evoctl cp a.bin staging:b.bin` to upload (a relative PATH starts at the container's working directory); a local name with a colon is written ./a:b\n",
        ),
        (
            &["cp", "production:/tmp/a", "staging:/tmp/a"],
            "error: both production:/tmp/a and staging:/tmp/a are in a container; one side must be a local path\n  fix: copy through this machine in two steps: `evoctl cp production:/tmp/a ./a`, then `evoctl cp ./a staging:/tmp/a`\n",
        ),
        (&["cp", "missing.bin", "production:/tmp/x"], "error: missing.bin does not exist\n  fix: check the path\n"),
        (
            &["cp", "production:/tmp/x", "no/such/dir/x"],
            "error: there is no directory no/such/dir to copy into\n  fix: create it first (mkdir -p no/such/dir)\n",
        ),
    ];
    for (args, expected) in cases {
        let output = lab.evoctl().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output.stderr));
        assert_eq!(text(&output.stderr), expected, "{args:?}");
        assert_eq!(text(&output.stdout), "", "{args:?}");
    }
    // A container path that does not exist: said by the container, still exit 2.
    let output = lab.evoctl().args(["cp", "production:nope.bin", "x.bin"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let workdir = container_dir(&lab);
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: production: nope.bin does not exist in the container\n  fix: check the path (relative paths start at the container's working directory, {})\n",
            workdir.display()
        )
    );
    assert!(!lab.dir.path().join("x.bin").exists());
}
