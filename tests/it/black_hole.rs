//! WhatsApp black-holed as Fargate really has it (SYNs dropped, scenario `whatsapp-black-hole`):
//! the stand-in's `GET /` answers only after 135 s and create (with `qrcode`) and connect of a
//! closed instance never answer, as the real 2.3.7 does (connect creates without `qrcode`, so
//! its first connect is the call that hangs). evoctl checks the route beside every
//! call and stops with the route's cause and fix well within 20 s; `doctor` fails whatsapp-reach
//! without waiting for `GET /`; nothing runs past its `--timeout`; and whatever ended the wait,
//! the remote process is gone and its session terminated.

use crate::connect::BAILEYS_WARNING;
use crate::ending::{assert_ended, finish, running_session, sessions};
use crate::support::{Lab, check, json_stdout, text};
use std::process::Stdio;
use std::time::{Duration, Instant};

const FIX: &str = "give the service's subnets a route to the internet (a NAT gateway for private subnets, or a public subnet with assignPublicIp ENABLED) and allow outbound TCP 443 in the task's security group and network ACL; then `evoctl doctor production` checks the route again (whatsapp-reach)";

/// The missing route as the reach check says it, for the lab's black-holed endpoint.
fn no_route(lab: &Lab) -> String {
    let port = lab.ready["env"]["EVOCTL_WHATSAPP_ENDPOINT"].as_str().unwrap().rsplit(':').next().unwrap().to_owned();
    format!(
        "no route from the task to WhatsApp: the TCP connection to localhost:{port} got no answer within 5 s (a private subnet without a NAT gateway, or egress blocked by a security group or NACL); Baileys cannot connect, so no QR ever comes"
    )
}

/// How evoctl says that `call` (`METHOD PATH`) hangs on the missing route, its seconds blurred
/// (`waited_blurred`), with the fix.
fn unanswered(lab: &Lab, call: &str) -> String {
    format!(
        "Evolution has not answered {call} in N s (it waits on WhatsApp before it answers): {}\n  fix: {FIX}\n",
        no_route(lab)
    )
}

/// `text` with the seconds a call had waited when the route check failed made `N`; they must be
/// under 15 (the check starts 6 s into the wait and takes at most 5 s).
fn waited_blurred(text: &str) -> String {
    let pattern = regex::Regex::new(r"has not answered (\S+ \S+) in (\d+) s").unwrap();
    if let Some(found) = pattern.captures(text) {
        let waited: u64 = found[2].parse().unwrap();
        assert!((6..15).contains(&waited), "waited {waited} s: {text}");
    }
    pattern.replace(text, "has not answered $1 in N s").into_owned()
}

/// What connect says on stderr before it reaches Evolution, waiting up to `timeout` seconds.
fn connect_notes(lab: &Lab, timeout: u64) -> String {
    format!(
        "preflight ok: production is the only live environment on its number; task {} (exec agent RUNNING)\n\
         waiting for alinhou-production to be linked (up to {timeout} s)…\n",
        lab.first_task_id()
    )
}

/// Every session evoctl opened has ended: its process is gone and it was terminated.
fn all_ended(lab: &Lab) {
    let all = sessions(lab);
    assert!(!all.is_empty(), "no session ran");
    for session in all {
        assert_ended(lab, &session);
    }
}

#[test]
fn connect_names_the_missing_route_within_20_s_although_connect_never_answers() {
    let lab = Lab::start("whatsapp-black-hole");
    lab.wait_settled();
    let started = Instant::now();
    let output = lab.evoctl().args(["connect", "production", "--timeout", "60s"]).output().unwrap();
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(took < Duration::from_secs(20), "connect took {took:?}");
    let stderr = waited_blurred(&text(&output.stderr));
    // create (without qrcode, which needs no WhatsApp) answers; the watch's first connect,
    // which starts the socket, is the call that waits on WhatsApp here.
    let expected = format!(
        "{}{BAILEYS_WARNING}created the instance\nerror: alinhou-production: {}",
        connect_notes(&lab, 60),
        unanswered(&lab, "GET /instance/connect/alinhou-production")
    );
    assert_eq!(stderr, expected);
    all_ended(&lab);

    // The instance is there and still `close`; connect of it hangs the same way, and is said
    // the same way.
    let output = lab.evoctl().args(["connect", "production", "--timeout", "60s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = waited_blurred(&text(&output.stderr));
    let expected = format!(
        "{}{BAILEYS_WARNING}error: alinhou-production: {}",
        connect_notes(&lab, 60),
        unanswered(&lab, "GET /instance/connect/alinhou-production")
    );
    assert_eq!(stderr, expected);
    all_ended(&lab);
}

#[test]
fn instance_create_names_the_missing_route_within_20_s() {
    let lab = Lab::start("whatsapp-black-hole");
    lab.wait_settled();
    let started = Instant::now();
    let output = lab.evoctl().args(["instance", "create", "production"]).output().unwrap();
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(took < Duration::from_secs(20), "instance create took {took:?}");
    assert_eq!(waited_blurred(&text(&output.stderr)), format!("error: {}", unanswered(&lab, "POST /instance/create")));
    all_ended(&lab);
}

#[test]
fn doctor_fails_whatsapp_reach_without_waiting_for_get_root() {
    let lab = Lab::start("whatsapp-black-hole");
    lab.wait_settled();
    let started = Instant::now();
    let output = lab.evoctl().args(["--output", "json", "doctor", "production"]).output().unwrap();
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(took < Duration::from_secs(20), "doctor took {took:?} (GET / answers after 135 s)");
    let report = json_stdout(&output);
    let evolution = check(&report, "evolution");
    assert_eq!(evolution["status"], "WARN", "{evolution}");
    let evidence = evolution["evidence"].as_str().unwrap();
    assert!(evidence.starts_with("GET / has not answered in "), "{evidence}");
    assert!(
        evidence.ends_with(" s: Evolution 2.3.7 fetches WhatsApp Web's version on every GET / with no timeout, and the task cannot reach WhatsApp (whatsapp-reach below)"),
        "{evidence}"
    );
    let reach = check(&report, "whatsapp-reach");
    assert_eq!(reach["status"], "FAIL", "{reach}");
    assert_eq!(reach["evidence"], no_route(&lab).as_str());
    // The layers after it were judged too (the calls they make answer without WhatsApp).
    assert_eq!(check(&report, "api-key")["status"], "OK");
    assert_ne!(check(&report, "instance")["status"], "SKIP");
    all_ended(&lab);
}

#[test]
fn the_timeout_bounds_connect_while_a_call_hangs() {
    let lab = Lab::start("whatsapp-black-hole");
    lab.wait_settled();
    let started = Instant::now();
    let output = lab.evoctl().args(["connect", "production", "--timeout", "4s"]).output().unwrap();
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(7), "{}", text(&output.stderr));
    // --timeout, plus the second the session may take to end.
    assert!(took < Duration::from_secs(5) + Duration::from_millis(500), "connect --timeout 4s took {took:?}");
    assert_eq!(
        text(&output.stderr),
        format!(
            "{}{BAILEYS_WARNING}created the instance\nerror: alinhou-production was not linked within 4 s (0 QR(s) shown); it is left waiting for a scan\n  \
             fix: run `evoctl connect production` again and scan the new QR\n",
            connect_notes(&lab, 4)
        )
    );
    all_ended(&lab);
}

#[test]
fn ctrl_c_while_connect_hangs_ends_the_remote_call() {
    let lab = Lab::start("whatsapp-black-hole");
    lab.wait_settled();
    let child = lab
        .evoctl_process()
        .args(["connect", "production", "--timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let session = running_session(&lab);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let (code, _, stderr) = finish(child, Duration::from_secs(10));
    assert_eq!(code, Some(130), "{stderr}");
    // The signal lands once the session runs: before or after it has said the image's Baileys,
    // and before or after create (which answers at once) while connect hangs.
    let interrupted = "interrupted: alinhou-production is not linked (state unknown); the watch in the container was ended and nothing else was changed. Run `evoctl connect production` again to continue\n";
    let notes = connect_notes(&lab, 60);
    let said = [
        format!("{notes}{interrupted}"),
        format!("{notes}{BAILEYS_WARNING}{interrupted}"),
        format!("{notes}{BAILEYS_WARNING}created the instance\n{interrupted}"),
    ];
    assert!(said.contains(&stderr), "{stderr}");
    assert_ended(&lab, &session);
}
