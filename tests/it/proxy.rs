//! evoctl behind a proxy and a private CA, with both halves (AWS calls and the data-channel
//! websocket) going the same way and trusting the same roots: the lab serves HTTPS/WSS under a
//! CA of its own, its stream URLs name `localhost` (the real streamUrl is another host than the
//! ECS endpoint), and a real proxy (tinyproxy) logs every CONNECT, so its log tells the AWS
//! endpoint (`127.0.0.1:PORT`) from the data channel (`localhost:PORT`).

use crate::support::text;
use crate::tls::{Proxy, TlsLab};

fn lab() -> TlsLab {
    let lab = TlsLab::start_with("seed", &["--stream-host", "localhost"]);
    lab.lab.wait_settled();
    lab
}

#[test]
fn status_and_exec_trust_the_lab_through_aws_ca_bundle_and_fail_clearly_without() {
    let lab = lab();
    let output = lab.lab.evoctl().args(["status", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    // ExecuteCommand and the websocket trust the same CA: the session works end to end.
    let output =
        lab.lab.evoctl().args(["exec", "production", "--", "node", "-e", "console.log('over wss')"]).output().unwrap();
    assert_eq!(
        (output.status.code(), text(&output.stdout)),
        (Some(0), "over wss\n".into()),
        "{}",
        text(&output.stderr)
    );

    for args in [&["status", "production"][..], &["exec", "production", "--", "true"][..]] {
        let output =
            lab.lab.evoctl().env_remove("AWS_CA_BUNDLE").env("AWS_MAX_ATTEMPTS", "1").args(args).output().unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(if args[0] == "exec" { 125 } else { 5 }), "{args:?}: {stderr}");
        assert!(stderr.contains("failed: UntrustedCertificate: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains("  fix: the endpoint's TLS certificate is not trusted: if a proxy or a private CA signs it, point AWS_CA_BUNDLE (or the profile's ca_bundle) at that CA's PEM file\n"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn both_halves_go_through_the_proxy_and_around_it_with_no_proxy() {
    let lab = lab();
    let proxy = Proxy::start();
    let host_port = lab.host_port();
    let port = host_port.rsplit(':').next().unwrap().to_owned();
    let output = lab
        .lab
        .evoctl()
        .env("HTTPS_PROXY", proxy.url())
        .args(["exec", "production", "--", "node", "-e", "console.log('proxied')"])
        .output()
        .unwrap();
    assert_eq!((output.status.code(), text(&output.stdout)), (Some(0), "proxied\n".into()), "{}", text(&output.stderr));
    let connects = proxy.connects();
    assert!(connects.contains(&host_port), "the AWS endpoint went through the proxy: {connects:?}");
    assert!(connects.contains(&format!("localhost:{port}")), "the data channel went through the proxy: {connects:?}");

    // Proxy credentials in the URL work and never show.
    let with_credentials = proxy.url().replacen("http://", "http://ops:s3cret-proxy-pass@", 1);
    let output =
        lab.lab.evoctl().env("HTTPS_PROXY", &with_credentials).args(["-vvv", "status", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(!text(&output.stderr).contains("s3cret-proxy-pass") && !text(&output.stdout).contains("s3cret-proxy-pass"));

    let before = proxy.connects().len();
    let output = lab
        .lab
        .evoctl()
        .env("HTTPS_PROXY", proxy.url())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .args(["exec", "production", "--", "node", "-e", "console.log('direct')"])
        .output()
        .unwrap();
    assert_eq!((output.status.code(), text(&output.stdout)), (Some(0), "direct\n".into()), "{}", text(&output.stderr));
    assert_eq!(proxy.connects().len(), before, "NO_PROXY covers the lab: no CONNECT");
}
