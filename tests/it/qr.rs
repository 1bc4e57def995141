//! `evoctl qr`: what it draws and writes must decode, with a real QR decoder (zbarimg), to
//! exactly the code; `--from-output` must find the code in real plugin transcripts.

use crate::support::{EVOCTL, clean_command, json_stdout, text};

const CODE: &str =
    "2@y8eK+bjtEjUWy9/FOM=,I6gVLHrDJs2uAGfzGgs=,d4TkWSVzm+Z5VD5v3RVhfPqxCo=,kR4Vk6V5uu/DQsD7tg4jxg1X8ZXPsj0=";

/// Decode an image with zbarimg (Debian's zbar-tools; `scripts/test` installs it).
pub fn zbar_decode(path: &std::path::Path) -> String {
    let output = std::process::Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(path)
        .output()
        .expect("zbarimg must be installed (apt-get install zbar-tools)");
    assert_eq!(output.status.code(), Some(0), "zbarimg could not decode {}", path.display());
    text(&output.stdout).trim_end_matches('\n').to_owned()
}

/// Render an SVG to PNG with a real SVG renderer, rsvg-convert (Debian's librsvg2-bin;
/// `scripts/test` installs it), so what is checked is what a viewer would draw.
fn rsvg_render(svg: &std::path::Path, png: &std::path::Path) {
    let output = std::process::Command::new("rsvg-convert")
        .args(["--format", "png", "--background-color", "white", "--output"])
        .arg(png)
        .arg(svg)
        .output()
        .expect("rsvg-convert must be installed (apt-get install librsvg2-bin)");
    assert_eq!(
        output.status.code(),
        Some(0),
        "rsvg-convert could not render {}: {}",
        svg.display(),
        text(&output.stderr)
    );
}

fn transcript(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/plugin-transcripts/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn png_and_svg_decode_to_exactly_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        clean_command(EVOCTL, dir.path()).args(["qr", CODE, "--png", "qr.png", "--svg", "qr.svg"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(zbar_decode(&dir.path().join("qr.png")), CODE);
    let svg = std::fs::read_to_string(dir.path().join("qr.svg")).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
    rsvg_render(&dir.path().join("qr.svg"), &dir.path().join("svg.png"));
    assert_eq!(zbar_decode(&dir.path().join("svg.png")), CODE, "the SVG, as rsvg-convert draws it");
    let art = text(&output.stdout);
    assert!(art.contains('▀') && art.contains('▄') && art.contains('█'));
    assert!(!art.contains('\x1b'), "no colour codes when stdout is not a terminal");
    assert_eq!(text(&output.stderr), "wrote qr.png\nwrote qr.svg\n");
}

#[test]
fn from_output_finds_the_code_in_real_transcripts_and_terminal_pastes() {
    let dir = tempfile::tempdir().unwrap();
    for name in
        ["aws-cli-1.45-normal.out", "plugin-normal.out", "plugin-stdin-devnull-complete.out", "plugin-on-terminal.out"]
    {
        let output = clean_command(EVOCTL, dir.path())
            .args(["--output", "json", "qr", "--from-output", "-", "--png", "from.png"])
            .write_stdin(transcript(name))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{name}: {}", text(&output.stderr));
        assert_eq!(json_stdout(&output)["code"], CODE, "{name}");
        assert_eq!(zbar_decode(&dir.path().join("from.png")), CODE, "{name}");
    }
    let output = clean_command(EVOCTL, dir.path())
        .args(["qr", "--from-output"])
        .write_stdin(transcript("plugin-channel-closed-error.out"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(
        text(&output.stderr).starts_with("error: no QR `code` found in the pasted output"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn bad_qr_input_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = clean_command(EVOCTL, dir.path()).args(["qr", ""]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: the QR text is empty\n  fix: pass the `code` string, or - to read it from stdin\n"
    );
}
