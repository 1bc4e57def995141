//! `evoctl shell` driven through a real pseudo-terminal: type, see the remote echo and output,
//! Ctrl-C reaches the remote command, Ctrl-D ends the session, and the terminal comes back in
//! the mode it was in; there is no wall-clock deadline, only an idle one, and an idle shell's
//! session ends with it; setting a shell up is bounded by its set-up limit.

use crate::ending::{assert_ended, finish, running_session};
use crate::support::{EVOCTL, Lab, text, wait_until};
use serde_json::json;
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `evoctl shell` on a pseudo-terminal of its own, with everything it prints collected.
struct Terminal {
    pty: Arc<pty_process::blocking::Pty>,
    screen: Arc<Mutex<Vec<u8>>>,
    child: std::process::Child,
    modes_before: String,
    _reader: std::thread::JoinHandle<()>,
}

impl Terminal {
    fn start(lab: &Lab, args: &[&str]) -> Terminal {
        let (pty, pts) = pty_process::blocking::open().unwrap();
        pty.resize(pty_process::Size::new(30, 100)).unwrap();
        let modes_before = modes(&pty);
        let child = pty_process::blocking::Command::new(EVOCTL)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", lab.dir.path())
            .envs(lab.env())
            .current_dir(lab.dir.path())
            .spawn(pts)
            .unwrap();
        let pty = Arc::new(pty);
        let screen = Arc::new(Mutex::new(Vec::<u8>::new()));
        let reader = {
            let (pty, screen) = (Arc::clone(&pty), Arc::clone(&screen));
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = (&*pty).read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    screen.lock().unwrap().extend_from_slice(&buffer[..n]);
                }
            })
        };
        Terminal { pty, screen, child, modes_before, _reader: reader }
    }

    fn seen(&self, needle: &str) -> bool {
        self.screen_text().contains(needle)
    }

    fn screen_text(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, what: &str, needle: &str) {
        wait_until(Duration::from_secs(20), what, || self.seen(needle).then_some(()));
    }

    fn type_keys(&self, keys: &[u8]) {
        (&*self.pty).write_all(keys).unwrap();
    }

    fn modes_restored(&self) -> bool {
        modes(&self.pty) == self.modes_before
    }
}

fn modes(pty: &pty_process::blocking::Pty) -> String {
    let termios = rustix::termios::tcgetattr(pty).unwrap();
    format!("{:?} {:?} {:?}", termios.input_modes, termios.output_modes, termios.local_modes)
}

#[test]
fn shell_runs_interactively_and_restores_the_terminal() {
    let lab = Lab::start("seed");
    let mut terminal = Terminal::start(&lab, &["shell", "production"]);
    terminal.wait_for("the shell's prompt", "# ");
    terminal.type_keys(b"echo o''k\r");
    terminal.wait_for("the command's output", "\r\nok\r\n");
    let prompts = |t: &Terminal| t.screen_text().matches("# ").count();
    terminal.type_keys(b"sleep 30\r");
    terminal.wait_for("the remote echo of the sleep", "sleep 30\r\n");
    let before_interrupt = prompts(&terminal);
    terminal.type_keys(b"\x03");
    // A new prompt well before 30 s means SIGINT reached the remote sleep.
    wait_until(Duration::from_secs(10), "a prompt after Ctrl-C", || {
        (prompts(&terminal) > before_interrupt).then_some(())
    });
    terminal.type_keys(b"echo after-ctrl-c\r");
    terminal.wait_for("output after Ctrl-C", "\r\nafter-ctrl-c\r\n");
    terminal.type_keys(b"\x04");
    let status = wait_until(Duration::from_secs(20), "evoctl shell to end", || terminal.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0), "{}", terminal.screen_text());
    assert!(terminal.modes_restored(), "the terminal modes were not restored");
}

/// A shell has no wall-clock deadline, only an idle one: typed at for three and a half times the
/// limit it stays; left alone it ends at the limit, says so, restores the terminal and ends the
/// session.
#[test]
fn a_shell_lives_while_used_and_ends_when_idle() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let mut terminal = Terminal::start(&lab, &["shell", "production", "--idle-timeout", "2s"]);
    terminal.wait_for("the shell's prompt", "# ");
    let session = running_session(&lab);
    let active_since = Instant::now();
    let mut tick = 0;
    while active_since.elapsed() < Duration::from_secs(7) {
        tick += 1;
        terminal.type_keys(format!("echo tick-{tick}\r").as_bytes());
        terminal.wait_for("the tick's output", &format!("\r\ntick-{tick}\r\n"));
        assert!(
            terminal.child.try_wait().unwrap().is_none(),
            "the shell ended while in use, after {:?}",
            active_since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500)); // the user's pace, not synchronisation
    }
    let idle_since = Instant::now();
    let status = wait_until(Duration::from_secs(10), "the idle shell to end", || terminal.child.try_wait().unwrap());
    let idle = idle_since.elapsed();
    assert!(idle >= Duration::from_millis(1500) && idle < Duration::from_secs(5), "ended after {idle:?} idle");
    assert_eq!(status.code(), Some(7));
    terminal.wait_for(
        "the idle message",
        &format!("error: the shell was idle for 2s (no input or output): session {session} was ended"),
    );
    assert!(terminal.modes_restored(), "the terminal modes were not restored");
    assert_ended(&lab, &session);

    // --timeout is an exec/node bound: a shell does not take it.
    let output = lab.evoctl().args(["shell", "production", "--timeout", "2"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("unexpected argument '--timeout'"), "{}", text(&output.stderr));
}

/// Setting a shell up is bounded until the session opens: with ExecuteCommand stalled, or the
/// data channel's opening stalled, `shell` ends at its set-up limit (here 2 s) with a message
/// naming what it was waiting for, and a session that was started is terminated.
#[test]
fn a_shell_that_cannot_open_ends_at_its_set_up_limit() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let terminated =
        |lab: &Lab| lab.journal().iter().filter(|e| e["action"] == "TerminateSession" && e["status"] == 200).count();
    for (faults, waiting_for, sessions_started) in [
        (json!({"latency_ms": 30_000, "actions": ["ExecuteCommand"]}), "ExecuteCommand had not answered", 0),
        (json!({"data_channel_open_delay_ms": 30_000}), "the data channel was still opening", 1),
    ] {
        lab.control("POST", "/faults", Some(&faults));
        let terminated_before = terminated(&lab);
        let started = Instant::now();
        let child = lab
            .evoctl_process()
            .args(["shell", "production"])
            .env("EVOCTL_SHELL_SETUP_TIMEOUT", "2s")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (code, stdout, stderr) = finish(child, Duration::from_secs(15));
        let elapsed = started.elapsed();
        assert_eq!(code, Some(7), "{faults}: {stderr}");
        assert!(elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(3), "{faults}: {elapsed:?}");
        assert_eq!(stdout, "");
        assert!(
            stderr.ends_with(&format!(
                "error: the exec session did not open within 2s (the set-up limit): {waiting_for}\n  fix: check the task and the network path to ssmmessages (`evoctl doctor production`); EVOCTL_SHELL_SETUP_TIMEOUT raises the limit\n"
            )),
            "{faults}: {stderr}"
        );
        assert_eq!(terminated(&lab) - terminated_before, sessions_started, "{faults}");
        let processes = lab.control("GET", "/processes", None);
        assert!(processes.as_array().unwrap().iter().all(|row| row["alive"] == false), "{processes}");
    }
    lab.control("POST", "/faults", Some(&json!({})));

    let output = lab.evoctl().args(["shell", "production"]).env("EVOCTL_SHELL_SETUP_TIMEOUT", "soon").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: EVOCTL_SHELL_SETUP_TIMEOUT=\"soon\" is not a duration\n  fix: set EVOCTL_SHELL_SETUP_TIMEOUT to a duration above zero such as 500ms, 30s or 2m, or unset it\n"
    );
}
