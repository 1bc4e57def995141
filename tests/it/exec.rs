//! `evoctl exec` / `evoctl node` over the native data channel against the lab's agent: exact
//! output, the remote exit status, faults on the wire, a dropped socket, the watchdog, no
//! session token anywhere, and stdin: piped input streamed with its end, a terminal read only
//! with `-i`, `node ENV -`.

use crate::support::{Lab, assert_checksummed, assert_checksummed_among_logs, random_writer, text, wait_until};
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn exec_prints_exactly_the_output_and_returns_the_remote_status() {
    let lab = Lab::start("seed");
    // stdin at /dev/null and no tty, as in CI.
    let output = lab
        .evoctl_process()
        .args(["exec", "production", "--", "node", "-e", "process.stdout.write('hi'); process.exit(3)"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "hi");
    assert_eq!(text(&output.stderr), "");

    let output =
        lab.evoctl().args(["exec", "production", "--", "sh", "-c", "echo out; echo err >&2; exit 5"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5));
    assert_eq!(text(&output.stdout), "out\n");
    assert_eq!(text(&output.stderr), "err\n");
}

#[test]
fn the_command_runs_without_a_shell_in_the_containers_environment() {
    let lab = Lab::start("seed");
    let output = lab
        .evoctl()
        .args(["exec", "production", "--", "node", "-e"])
        .arg("console.log(process.env.SERVER_URL, process.cwd().endsWith('/evolution'), require('fs').existsSync(require('path').join(process.env.PATH,'curl')))")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "https://evolution.alinhou.example true false\n");

    let output = lab.evoctl().args(["exec", "production", "--", "curl", "-s", "http://x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(127));
    assert!(text(&output.stderr).contains("evoctl: curl: spawn curl ENOENT"), "{}", text(&output.stderr));
}

#[test]
fn eight_mib_survive_loss_duplication_and_reordering() {
    let lab = Lab::start("seed");
    // Loss the real agent recovers from: it resends only its oldest unacked frame, one per
    // 100 ms tick (ssm-data-channel.md §9 row 1), about 10 frames/s against ~1000 sent per second.
    lab.control("POST", "/faults", Some(&json!({"drop_rate": 0.002, "duplicate_rate": 0.05, "reorder_window": 8})));
    let size = 8 * 1024 * 1024;
    let output = lab.evoctl().args(["exec", "production", "--", "node", "-e", &random_writer(size)]).output().unwrap();
    assert_checksummed(&output, size);
}

#[test]
fn a_dropped_socket_is_resumed_and_the_output_is_complete() {
    let lab = Lab::start("seed");
    lab.control("POST", "/faults", Some(&json!({"disconnect_after_frames": 40, "ack_delay_ms": 20})));
    let size = 512 * 1024;
    let output = lab
        .evoctl()
        .args(["-v", "exec", "production", "--timeout", "60", "--", "node", "-e", &random_writer(size)])
        .output()
        .unwrap();
    assert_checksummed_among_logs(&output, size);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("data channel dropped; resuming"), "{stderr}");
    assert!(lab.journal().iter().any(|e| e["action"] == "ResumeSession"));
}

/// A network that cuts the socket every 2 s, for the whole of a 30 s command that prints a line
/// every 500 ms: every cut is resumed (the failures in a row start over once a resumed socket
/// delivers), and the output is complete and exact, with the command's exit 0.
#[test]
fn a_socket_cut_every_two_seconds_is_resumed_each_time_and_the_output_is_exact() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.control("POST", "/faults", Some(&json!({"disconnect_every_ms": 2000})));
    let program = "let n = 0; const t = setInterval(() => { n += 1; console.log(`line ${n} of 60`); \
                   if (n === 60) clearInterval(t); }, 500);";
    let output =
        lab.evoctl().args(["exec", "production", "--timeout", "90", "--", "node", "-e", program]).output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let expected: String = (1..=60).map(|n| format!("line {n} of 60\n")).collect();
    assert_eq!(text(&output.stdout), expected);
    assert_eq!(stderr, "");
    // 30 s of output through sockets that last 2 s each: about 15 cuts, each resumed.
    let resumed = lab.journal().iter().filter(|e| e["action"] == "ResumeSession" && e["status"] == 200).count();
    assert!((12..=20).contains(&resumed), "{resumed} resumes");
}

/// A path that stays down: the socket is cut and every ResumeSession is refused (one attempt
/// per call, so each refusal is quick). The session is given up after five failed attempts in a
/// row with the reason, and ended: TerminateSession, the command gone.
#[test]
fn a_path_that_stays_down_is_given_up_after_five_failed_resumes_in_a_row() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    lab.control(
        "POST",
        "/faults",
        Some(&json!({"disconnect_every_ms": 1000, "throttle_rate": 1.0, "actions": ["ResumeSession"]})),
    );
    let output = lab
        .evoctl()
        .args(["exec", "production", "--timeout", "60", "--", "sleep", "30"])
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let session = crate::ending::sessions(&lab).pop().expect("a session ran");
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: the data channel of session {session} dropped and could not be resumed: 5 attempts in a row failed (the last: ResumeSession failed (ThrottlingException: Rate exceeded))\n  fix: check the network path to ssmmessages (proxy, VPC endpoint, firewall) and retry\n"
        )
    );
    let refused = lab.journal().iter().filter(|e| e["action"] == "ResumeSession").count();
    assert_eq!(refused, 5);
    crate::ending::assert_ended(&lab, &session);
}

#[test]
fn paused_publication_and_delayed_acks_only_slow_things_down() {
    let lab = Lab::start("seed");
    lab.control(
        "POST",
        "/faults",
        // Some loss, so frames wait for resends across the pause (at a rate the real agent's
        // oldest-only resend recovers before its 2 s drain).
        Some(&json!({"pause_after_frames": 20, "pause_ms": 300, "ack_delay_ms": 40, "drop_rate": 0.01})),
    );
    let size = 256 * 1024;
    let output = lab.evoctl().args(["exec", "production", "--", "node", "-e", &random_writer(size)]).output().unwrap();
    assert_checksummed(&output, size);
}

/// A starved agent (a pause after every pty read) lets the command run a full pty buffer ahead
/// of it and exit with output still unread: every byte still arrives, with the real status.
#[test]
fn a_slow_agent_still_gets_all_output_before_the_command_exits() {
    let lab = Lab::start("seed");
    lab.control("POST", "/faults", Some(&json!({"pty_read_delay_ms": 2})));
    let size = 256 * 1024;
    let output = lab.evoctl().args(["exec", "production", "--", "node", "-e", &random_writer(size)]).output().unwrap();
    assert_checksummed(&output, size);
    let output = lab
        .evoctl()
        .args(["exec", "production", "--", "sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x; exit 3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert_eq!(output.stdout.len(), 200_000);
}

#[test]
fn node_runs_inline_and_large_scripts() {
    let lab = Lab::start("seed");
    let output = lab.evoctl().args(["node", "production", "-e", "console.log(6*7)"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "42\n");

    // Over the command-string budget: the script travels over stdin instead.
    let script = format!("const pad = '{}';\nconsole.log(pad.length); process.exit(4);\n", "x".repeat(20_000));
    let path = lab.dir.path().join("big.js");
    std::fs::write(&path, script).unwrap();
    let output = lab.evoctl().args(["node", "production"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "20000\n");
    let commands: Vec<String> = lab
        .journal()
        .iter()
        .filter(|e| e["action"] == "ExecuteCommand")
        .map(|e| e["parameters"]["command"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(commands.len(), 2);
    assert!(commands.iter().all(|c| c.len() < 6 * 1024 && c.starts_with("node -e ")), "{commands:?}");
}

#[test]
fn exec_failures_are_125_with_the_reason_and_fix() {
    let lab = Lab::start("seed");
    let output = lab.evoctl().args(["exec", "staging", "--", "node", "-v"]).output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(text(&output.stderr).starts_with("error: no live task for staging"), "{}", text(&output.stderr));

    lab.control("POST", "/faults", Some(&json!({"agent_not_connected": true})));
    let output = lab.evoctl().args(["exec", "production", "--", "node", "-v"]).output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("is not connected (The execute command failed due to an internal error. Try again later.)"),
        "{stderr}"
    );
    assert!(stderr.contains("fix: retry in a few seconds; if it persists run `evoctl doctor production`"), "{stderr}");

    lab.control("POST", "/faults", Some(&json!({"exec_disabled": true})));
    let output = lab.evoctl().args(["exec", "production", "--", "node", "-v"]).output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(
        text(&output.stderr)
            .contains("ExecuteCommand was refused: The execute command failed because execute command was not enabled"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_timeout_and_a_stopping_task_end_the_session_clearly() {
    let lab = Lab::start("seed");
    let started = std::time::Instant::now();
    let output = lab.evoctl().args(["exec", "production", "--timeout", "1", "--", "sleep", "20"]).output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(
        text(&output.stderr).starts_with("error: the exec session did not finish within 1s"),
        "{}",
        text(&output.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let timed_out = crate::ending::sessions(&lab).pop().expect("a session ran");
    crate::ending::assert_ended(&lab, &timed_out);

    let mut child = lab
        .evoctl_process()
        .args(["exec", "production", "--", "sleep", "30"])
        .env("EVOCTL_WATCHDOG_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), "the exec session to start", || {
        lab.journal().iter().any(|e| e["action"] == "ExecuteCommand").then_some(())
    });
    let output = crate::awscli::aws(&lab)
        .args([
            "ecs",
            "update-service",
            "--cluster",
            "alinhou-production",
            "--service",
            "EvolutionService",
            "--desired-count",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let status = wait_until(Duration::from_secs(20), "evoctl to end", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(125));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("while the exec session was running"), "{stderr}");
    assert!(stderr.contains("fix: the task was replaced or stopped"), "{stderr}");
    let watched = crate::ending::sessions(&lab).pop().expect("a session ran");
    assert_ne!(watched, timed_out);
    crate::ending::assert_ended(&lab, &watched);
}

#[test]
fn no_session_token_appears_in_output_logs_or_the_journal() {
    let lab = Lab::start("seed");
    lab.control("POST", "/faults", Some(&json!({"disconnect_after_frames": 5})));
    let output = lab
        .evoctl()
        .args(["-vvv", "exec", "production", "--", "node", "-e", &random_writer(64 * 1024)])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let tokens = lab.control("GET", "/tokens", None);
    let tokens: Vec<&str> = tokens.as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tokens.len(), 2, "one from ExecuteCommand, one from ResumeSession");
    let journal = serde_json::to_string(&lab.journal()).unwrap();
    for token in tokens {
        assert!(!text(&output.stdout).contains(token));
        assert!(!text(&output.stderr).contains(token));
        assert!(!journal.contains(token));
    }
}

/// The real agent writes nothing at all for a command it cannot start (ssm-data-channel.md §9
/// row 9): that is an error naming the cause and the fix, not "output may be truncated"; and
/// the session is still ended.
#[test]
fn a_command_that_cannot_start_is_said_so_not_called_truncated() {
    let lab = Lab::start("seed");
    lab.control("POST", "/faults", Some(&json!({"missing_programs": ["node"]})));
    let output = lab.evoctl().args(["exec", "production", "--", "node", "-v"]).output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(
            "error: the command did not start in the container: the session closed without a byte of output, which is how the ECS Exec agent reports a command it cannot start (evoctl runs `node`)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("fix: check that the image has `node` on its PATH"), "{stderr}");
    assert!(!stderr.contains("truncated"), "{stderr}");
    assert!(
        lab.journal().iter().any(|e| e["action"] == "TerminateSession"),
        "the session was ended with TerminateSession"
    );
}

/// `evoctl ARGS` with `input` on a pipe as its stdin (the pipe ends after it).
fn with_piped_stdin(lab: &Lab, args: &[&str], input: &[u8]) -> std::process::Output {
    lab.evoctl().args(args).write_stdin(input.to_vec()).output().unwrap()
}

/// Piped stdin reaches the command and its end is the command's end of input, on both backends;
/// `-T` and `/dev/null` send none; a 5 MiB file arrives byte for byte (its digest is taken in the
/// container by sha256sum and here by the sha2 crate).
#[test]
fn piped_stdin_reaches_the_command_and_its_end_ends_it() {
    use sha2::Digest;
    let lab = Lab::start("seed");
    let plugin = lab.fake_plugin_dir();
    let blob: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let blob_path = lab.dir.path().join("blob.bin");
    std::fs::write(&blob_path, &blob).unwrap();
    let digest = format!("{}  stdin.bin\n", hex::encode(sha2::Sha256::digest(&blob)));
    for backend in ["native", "aws-cli"] {
        let output = lab
            .evoctl()
            .env("PATH", crate::support::path_with(&plugin))
            .args(["exec", "production", "--backend", backend, "--", "cat"])
            .write_stdin("hello\n")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{backend}: {}", text(&output.stderr));
        assert_eq!(text(&output.stdout), "hello\n", "{backend}");
        assert_eq!(text(&output.stderr), "", "{backend}");

        let output = lab
            .evoctl_process()
            .env("PATH", crate::support::path_with(&plugin))
            .args([
                "exec",
                "production",
                "--backend",
                backend,
                "--",
                "sh",
                "-c",
                "cat > stdin.bin; sha256sum stdin.bin",
            ])
            .stdin(std::fs::File::open(&blob_path).unwrap())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{backend}: {}", text(&output.stderr));
        assert_eq!(text(&output.stdout), digest, "{backend}");
    }

    let output = with_piped_stdin(&lab, &["exec", "production", "-T", "--", "sh", "-c", "cat; echo end"], b"hello\n");
    assert_eq!((output.status.code(), text(&output.stdout)), (Some(0), "end\n".to_owned()), "{}", text(&output.stderr));
    let output = lab
        .evoctl_process()
        .args(["exec", "production", "--", "sh", "-c", "cat; echo end"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!((output.status.code(), text(&output.stdout)), (Some(0), "end\n".to_owned()), "{}", text(&output.stderr));

    // A command that echoes as it reads: its output is read while the rest of its input is
    // still coming (5 MiB each way).
    let output = lab
        .evoctl_process()
        .args(["exec", "production", "--", "cat"])
        .stdin(std::fs::File::open(&blob_path).unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(output.stdout == blob, "cat gave back {} bytes, not the {} sent", output.stdout.len(), blob.len());
}

/// `node ENV -` runs the program stdin holds (never on the command line); `-e` and a file
/// program read piped stdin as their input, a large file streamed ahead of it.
#[test]
fn node_takes_its_program_or_its_input_from_stdin() {
    let lab = Lab::start("seed");
    let script = lab.dir.path().join("script.js");
    std::fs::write(&script, "console.log('from stdin', require('os').platform()); process.exit(4);\n").unwrap();
    let output = lab
        .evoctl_process()
        .args(["node", "production", "-"])
        .stdin(std::fs::File::open(&script).unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("from stdin {}\n", std::env::consts::OS));
    let commands = lab.journal();
    assert!(
        commands.iter().filter(|e| e["action"] == "ExecuteCommand").all(|e| !e.to_string().contains("from stdin")),
        "the program reached the command string"
    );

    let count = "let n='';process.stdin.on('data',(d)=>n+=d).on('end',()=>console.log(JSON.stringify(n)))";
    let output = with_piped_stdin(&lab, &["node", "production", "-e", count], b"abc\ndef");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "\"abc\\ndef\"\n");

    // Over the 1 MiB program budget: the program streams first, then the input.
    let big = lab.dir.path().join("big.js");
    std::fs::write(&big, format!("const pad = '{}';\n{count}\n", "x".repeat(1536 * 1024))).unwrap();
    let output = lab.evoctl().arg("node").arg("production").arg(&big).write_stdin("piped").output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "\"piped\"\n");
}

/// A command that is done does not wait for stdin to end: `yes | evoctl exec ENV -- head -1`.
#[test]
fn a_command_that_ends_early_is_not_held_by_stdin_that_never_ends() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let mut child = lab
        .evoctl_process()
        .args(["exec", "production", "--", "head", "-n", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"first\nsecond\n").unwrap();
    // `stdin` stays open until the end of the test.
    let (code, out, err) = crate::ending::finish(child, Duration::from_secs(20));
    assert_eq!((code, out.as_str(), err.as_str()), (Some(0), "first\n", ""));
    let session = crate::ending::sessions(&lab).pop().expect("a session ran");
    crate::ending::assert_ended(&lab, &session);
    drop(stdin);
}

/// On a terminal stdin is not read (the command reads an empty input at once) unless `-i`, which
/// forwards what is typed until Ctrl-D.
#[test]
fn a_terminal_is_read_only_with_dash_i() {
    use std::io::Write;
    let lab = Lab::start("seed");
    let run = |args: &[&str], typed: &[u8]| {
        let (pty, pts) = pty_process::blocking::open().unwrap();
        let mut child = pty_process::blocking::Command::new(crate::support::EVOCTL)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", lab.dir.path())
            .envs(lab.env())
            .current_dir(lab.dir.path())
            .spawn(pts)
            .unwrap();
        (&pty).write_all(typed).unwrap();
        let status = wait_until(Duration::from_secs(20), "evoctl to end", || child.try_wait().unwrap());
        let screen = crate::support::pty_to_end(&pty);
        (status.code(), text(&screen))
    };
    let (code, screen) = run(&["exec", "production", "--", "sh", "-c", "cat; echo end"], b"");
    assert_eq!((code, screen.as_str()), (Some(0), "end\r\n"));
    // The terminal echoes the typed line, then the command's output follows.
    let (code, screen) = run(&["exec", "production", "-i", "--", "sh", "-c", "cat; echo end"], b"typed\n\x04");
    assert_eq!((code, screen.as_str()), (Some(0), "typed\r\ntyped\r\nend\r\n"));
}

/// Compressed output (the runner deflates a piece when that makes it smaller): JSON lines that
/// compress, random bytes that do not, pieces past 64 KiB and small ones, on stdout and stderr
/// at once, each arrive exactly as the command wrote them (the command also keeps a copy of each
/// stream in the lab's directory, which is this machine's).
#[test]
fn compressible_and_random_output_arrive_exactly_on_both_streams() {
    let lab = Lab::start("seed");
    let writer = "const fs=require('fs'),c=require('crypto'),d=process.argv[1],o=[],e=[];\
        const json=(n)=>JSON.stringify({id:n,instanceName:'named'+n,connectionStatus:n%3?'open':'close',\
        ownerJid:'5511'+String(n*7919%1e8).padStart(8,'0')+'@s.whatsapp.net'})+'\\n';\
        const put=(s,l,b)=>{l.push(b);s.write(b);};\
        for(let i=0;i<64;i++){\
        put(process.stdout,o,Buffer.from(Array.from({length:400},(_,j)=>json(i*400+j)).join('')));\
        put(process.stderr,e,c.randomBytes(i%2?30000:300));\
        put(process.stdout,o,c.randomBytes(i%8?700:70000));\
        put(process.stderr,e,Buffer.from('warning '+i+': '+'retrying '.repeat(i*8)+'\\n'));}\
        fs.writeFileSync(d+'/out.bin',Buffer.concat(o));fs.writeFileSync(d+'/err.bin',Buffer.concat(e));";
    let dir = lab.dir.path().to_str().unwrap();
    let output = lab.evoctl().args(["exec", "production", "--", "node", "-e", writer, dir]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let (stdout, stderr) = (
        std::fs::read(lab.dir.path().join("out.bin")).unwrap(),
        std::fs::read(lab.dir.path().join("err.bin")).unwrap(),
    );
    assert!(stdout.len() > 3 * 1024 * 1024, "{} bytes", stdout.len());
    assert!(output.stdout == stdout, "stdout differs: {} bytes, {} written", output.stdout.len(), stdout.len());
    assert!(output.stderr == stderr, "stderr differs: {} bytes, {} written", output.stderr.len(), stderr.len());
    // What the agent carried: compression paid (the JSON is most of the output).
    let wire =
        lab.control("GET", "/processes", None).as_array().unwrap().last().unwrap()["output_bytes"].as_u64().unwrap();
    let total = (stdout.len() + stderr.len()) as u64;
    assert!(wire < total, "{wire} bytes on the wire for {total} of output");
}

/// A line is delivered as soon as the command writes it, compressed or not: nothing waits for
/// more output. The command writes a JSON line (compressed on the way), then pauses 2 s and only
/// then creates a file; the line is here while the file is not there yet.
#[test]
fn a_line_before_a_pause_arrives_before_the_pause_ends() {
    let lab = Lab::start("seed");
    let marker = lab.dir.path().join("pause-ended");
    let program = "const fs=require('fs');\
        console.log(JSON.stringify(Array.from({length:100},(_,i)=>({instanceName:'named'+i,connectionStatus:'open'}))));\
        setTimeout(()=>{fs.writeFileSync(process.argv[1],'');console.log('after');},2000);";
    let mut child = lab
        .evoctl_process()
        .args(["exec", "production", "--", "node", "-e", program])
        .arg(&marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buffer = [0; 65536];
        while let Ok(n @ 1..) = std::io::Read::read(&mut stdout, &mut buffer) {
            if tx.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let first: String = (0..100)
        .map(|i| format!(r#"{{"instanceName":"named{i}","connectionStatus":"open"}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let first = format!("[{first}]\n");
    let mut got = Vec::new();
    wait_until(Duration::from_secs(20), "the first line", || {
        got.extend(rx.try_iter().flatten());
        (got.len() >= first.len()).then_some(())
    });
    let pause_ended = marker.exists();
    assert_eq!(text(&got), first);
    assert!(!pause_ended, "the line arrived only after the pause");
    let status = wait_until(Duration::from_secs(20), "evoctl to end", || child.try_wait().unwrap());
    reader.join().unwrap();
    got.extend(rx.try_iter().flatten());
    assert_eq!(status.code(), Some(0));
    assert_eq!(text(&got), format!("{first}after\n"));
}

/// A compressed piece that inflates past evoctl's limit is a protocol error, not memory: the
/// command forges one with the run's nonce (read from the bootstrap's command line) straight on
/// the terminal, 2 MiB of zeros in 2 KiB; evoctl ends the run with the limit named.
#[test]
fn a_compressed_piece_past_the_limit_ends_the_run_naming_the_limit() {
    let lab = Lab::start("seed");
    let forger = "const fs=require('fs'),z=require('zlib');\
        const n=fs.readFileSync('/proc/'+process.ppid+'/cmdline','latin1').split('\\0').filter(Boolean).pop();\
        fs.writeSync(fs.openSync('/dev/tty','w'),'\\nEVOCTL-'+n+':o:'+z.deflateRawSync(Buffer.alloc(2*1024*1024)).toString('base64')+'\\n');\
        setTimeout(()=>{},30000);";
    let started = std::time::Instant::now();
    let output = lab.evoctl().args(["exec", "production", "--", "node", "-e", forger]).output().unwrap();
    assert_eq!(
        (output.status.code(), text(&output.stdout), text(&output.stderr)),
        (
            Some(125),
            String::new(),
            "error: the container's output broke evoctl's envelope: a compressed output piece inflates past 1048576 bytes, \
             evoctl's limit per piece (the runner sends at most 65536 bytes in one); the run was ended\n  \
             fix: run it again; if it repeats, something in the container writes evoctl's markers (`evoctl doctor production`)\n"
                .to_owned()
        )
    );
    assert!(started.elapsed() < Duration::from_secs(20), "the run was not ended: {:?}", started.elapsed());
    let session = crate::ending::sessions(&lab).pop().expect("a session ran");
    crate::ending::assert_ended(&lab, &session);
}
