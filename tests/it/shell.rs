//! `evoctl shell` driven through a real pseudo-terminal: type, see the remote echo and output,
//! Ctrl-C reaches the remote command, Ctrl-D ends the session, and the terminal comes back in
//! the mode it was in.

use crate::support::{EVOCTL, Lab, wait_until};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn modes(pty: &pty_process::blocking::Pty) -> String {
    let termios = rustix::termios::tcgetattr(pty).unwrap();
    format!("{:?} {:?} {:?}", termios.input_modes, termios.output_modes, termios.local_modes)
}

#[test]
fn shell_runs_interactively_and_restores_the_terminal() {
    let lab = Lab::start("seed");
    let (pty, pts) = pty_process::blocking::open().unwrap();
    pty.resize(pty_process::Size::new(30, 100)).unwrap();
    let before = modes(&pty);
    let mut child = pty_process::blocking::Command::new(EVOCTL)
        .arg("shell")
        .arg("production")
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
    let seen = |needle: &str| String::from_utf8_lossy(&screen.lock().unwrap()).contains(needle);
    wait_until(Duration::from_secs(20), "the shell's prompt", || seen("# ").then_some(()));
    (&*pty).write_all(b"echo o''k\r").unwrap();
    wait_until(Duration::from_secs(20), "the command's output", || seen("\r\nok\r\n").then_some(()));
    let prompts = || String::from_utf8_lossy(&screen.lock().unwrap()).matches("# ").count();
    (&*pty).write_all(b"sleep 30\r").unwrap();
    wait_until(Duration::from_secs(20), "the remote echo of the sleep", || seen("sleep 30\r\n").then_some(()));
    let before_interrupt = prompts();
    (&*pty).write_all(b"\x03").unwrap();
    // A new prompt well before 30 s means SIGINT reached the remote sleep.
    wait_until(Duration::from_secs(10), "a prompt after Ctrl-C", || (prompts() > before_interrupt).then_some(()));
    (&*pty).write_all(b"echo after-ctrl-c\r").unwrap();
    wait_until(Duration::from_secs(20), "output after Ctrl-C", || seen("\r\nafter-ctrl-c\r\n").then_some(()));
    (&*pty).write_all(b"\x04").unwrap();
    let status = wait_until(Duration::from_secs(20), "evoctl shell to end", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0), "{}", String::from_utf8_lossy(&screen.lock().unwrap()));
    assert_eq!(modes(&pty), before, "the terminal modes were not restored");
    drop(reader);
}
