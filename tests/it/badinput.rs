//! The bad-input corpus: hostile names, configs, webhook settings, remote output and API
//! answers. Each ends in a clear message and its documented exit code, never a panic.

use crate::support::{Lab, text};
use serde_json::json;
use sha2::{Digest, Sha256};

fn no_panic(output: &std::process::Output, what: &str) {
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert_ne!(output.status.code(), Some(101), "{what}: {stderr}");
}

#[test]
fn bad_environment_and_instance_names_get_clear_errors() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let long = "p".repeat(300);
    for env in ["prod uction", "prødüction", long.as_str(), "", "../production", "production\n"] {
        for command in [&["status", env][..], &["task", env], &["audit", env], &["doctor", env], &["connect", env]] {
            let output = lab.evoctl().args(command).output().unwrap();
            no_panic(&output, &format!("{command:?}"));
            assert_eq!(output.status.code(), Some(2), "{command:?}: {}", text(&output.stderr));
            let stderr = text(&output.stderr);
            assert!(stderr.starts_with("error: unknown environment `"), "{command:?}: {stderr}");
            assert!(stderr.contains("(known in ") && stderr.contains("staging, production"), "{stderr}");
        }
    }
    // Instance names go to Evolution URL-encoded: a name it does not have is "not found".
    for name in ["bad name", "ünïcødé", "a/b?c=d#e", long.as_str()] {
        let output = lab.evoctl().args(["instance", "state", "production", name]).output().unwrap();
        no_panic(&output, name);
        assert_eq!(output.status.code(), Some(3), "{name}: {}", text(&output.stderr));
        assert!(text(&output.stderr).contains("instance does not exist"), "{}", text(&output.stderr));
    }
    let output = lab.evoctl().args(["connect", "production", "--pairing-number", "+55 11"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).starts_with("error: --pairing-number `+55 11` must be digits only"));
}

#[test]
fn bad_config_values_name_their_position() {
    let lab = Lab::start("seed");
    let long = "e".repeat(300);
    let cases = [
        (format!("[env.{long}]\ncluster = \"c\"\n"), "1:6: environment name `", "1-64 ASCII"),
        ("[env.\"prød\"]\ncluster = \"c\"\n".to_owned(), "1:6: environment name `prød` is not allowed", "1-64 ASCII"),
        (
            "[env.p]\ncluster = \"c\"\n[env.p.webhook]\nurl = \"ftp://x\"\nevents = []\n".to_owned(),
            "4:7: webhook url `ftp://x` must start with http:// or https://",
            "",
        ),
        (
            "[env.p]\ncluster = \"c\"\n[env.p.webhook]\nurl = \"https://x\"\nevents = [\"MESSAGE_UPSERT\"]\n"
                .to_owned(),
            "5:10: `MESSAGE_UPSERT` is not a 2.3.7 webhook event",
            "",
        ),
        (
            "[env.p]\ncluster = \"c\"\n[env.p.webhook]\nurl = \"https:// x\"\nevents = []\n".to_owned(),
            "4:7: webhook url `https:// x` must start with http:// or https:// and name a host",
            "",
        ),
        ("[env.p]\ncluster = \"c\"\nnumber = 5\n".to_owned(), "3:10: invalid type: integer `5`, expected a string", ""),
        ("\u{0}\u{1}binary\u{ff}".to_owned(), "1:10: key with no value", ""),
    ];
    for (config, expected, _) in cases {
        let path = lab.dir.path().join("bad.toml");
        std::fs::write(&path, &config).unwrap();
        let output = lab.evoctl().arg("--config").arg(&path).arg("audit").output().unwrap();
        no_panic(&output, &config);
        assert_eq!(output.status.code(), Some(2), "{config}");
        let stderr = text(&output.stderr);
        assert!(stderr.starts_with(&format!("error: {}:{expected}", path.display())), "{config}\n{stderr}");
        assert!(stderr.contains("\n  fix: "), "{stderr}");
    }
}

fn exec_node(lab: &Lab, program: &str) -> std::process::Output {
    lab.evoctl().args(["exec", "production", "--", "node", "-e", program]).output().unwrap()
}

#[test]
fn hostile_remote_output_comes_back_byte_exact_with_the_real_status() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    // Lines that look like the envelope's markers are only data: the runner encodes all output.
    let fake = "for (const t of 'OERX') console.log('EVOCTL-' + 'f'.repeat(32) + ':' + t + ':MA=='); \
                console.log('EVOCTL-' + process.argv.join(' ') + ':X:0'); process.exit(4)";
    let output = exec_node(&lab, fake);
    no_panic(&output, "fake markers");
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with(&format!("EVOCTL-{}:O:MA==\n", "f".repeat(32))));
    assert_eq!(text(&output.stdout).lines().count(), 5);

    // One 10 MiB line, binary with NULs and CRs, and an ANSI storm: all byte-exact.
    let cases = [
        ("10 MiB line", "process.stdout.write('a'.repeat(10*1024*1024))", 10 * 1024 * 1024),
        (
            "binary",
            "const b=Buffer.alloc(1<<20);for(let i=0;i<b.length;i++)b[i]=(i*7919)&255;process.stdout.write(b)",
            1 << 20,
        ),
        ("ANSI storm", "process.stdout.write('\\x1b[2J\\x1b[H\\x1b[31m\\r\\x07'.repeat(100000))", 14 * 100_000),
    ];
    for (what, program, size) in cases {
        let output = exec_node(&lab, program);
        no_panic(&output, what);
        assert_eq!(output.status.code(), Some(0), "{what}: {}", text(&output.stderr));
        assert_eq!(output.stdout.len(), size, "{what}");
    }
    let output = exec_node(&lab, cases[1].1);
    let expected: Vec<u8> = (0..1usize << 20).map(|i| ((i * 7919) & 255) as u8).collect();
    assert_eq!(Sha256::digest(&output.stdout), Sha256::digest(&expected), "binary output is byte-exact");
}

#[test]
fn hostile_api_answers_become_clear_errors() {
    let lab = Lab::start("seed");
    lab.wait_settled();
    let task = text(&lab.evoctl().args(["task", "production"]).output().unwrap().stdout).trim().to_owned();
    let answers = [
        (
            json!({"status": 502, "body": "<html><head><title>502 Bad Gateway</title></head><body>GET / apikey: k</body></html>"}),
            1,
            "error: connectionState: a page titled \"502 Bad Gateway\"\n",
        ),
        (
            json!({"status": 200, "body": "not json"}),
            1,
            "error: connectionState: Evolution answered in a shape 2.3.7 does not send (at .: expected struct StateReply, found a string of 8 characters)\n",
        ),
        (
            json!({"status": 500, "body": {"unexpected": [1, 2, {"deep": "x".repeat(5000)}]}}),
            1,
            "error: connectionState: an answer without a message (an object with 1 field)\n",
        ),
    ];
    for (answer, code, contains) in answers {
        let mut fault = answer.clone();
        fault["task"] = json!(task);
        lab.control("POST", "/evolution/faults", Some(&json!({"task": task, "respond_next": answer})));
        let output = lab.evoctl().args(["instance", "state", "production"]).output().unwrap();
        no_panic(&output, &fault.to_string());
        assert_eq!(output.status.code(), Some(code), "{fault}: {}", text(&output.stderr));
        let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(all.contains(contains), "{fault}: {all}");
        assert!(all.len() < 1500, "a hostile body is cut short in the message: {} bytes", all.len());
    }
}
