//! A linking code is a prompt, not data: `connect` and `instance connect` show each QR (or
//! pairing code) on the terminal whatever stdout and stderr are, replace a rotated QR in place,
//! never draw half a QR on a terminal too small for it (a PNG instead), and say the code as text
//! when there is no terminal at all. Checked on a real pseudo-terminal whose screen is kept by a
//! terminal emulator (vt100), the QR on it read back cell by cell and decoded by zbarimg.

use crate::qr::zbar_decode;
use crate::support::{EVOCTL, Lab, text, wait_until};
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// evoctl on a pseudo-terminal of `rows`×`columns` (its controlling terminal), stdout and stderr
/// on it unless sent to files.
struct Screen {
    parser: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
    child: std::process::Child,
    reader: Option<std::thread::JoinHandle<()>>,
    _pty: Arc<pty_process::blocking::Pty>,
}

/// Where evoctl's stdout and stderr go: the terminal, or a file.
#[derive(Default)]
struct Streams<'a> {
    stdout: Option<&'a Path>,
    stderr: Option<&'a Path>,
}

impl Screen {
    fn start(
        lab: &Lab,
        (rows, columns): (u16, u16),
        args: &[&str],
        streams: Streams<'_>,
        env: &[(&str, &str)],
    ) -> Screen {
        let (pty, pts) = pty_process::blocking::open().unwrap();
        pty.resize(pty_process::Size::new(rows, columns)).unwrap();
        let mut command = pty_process::blocking::Command::new(EVOCTL)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", lab.dir.path())
            .env("TMPDIR", lab.dir.path())
            .envs(lab.env())
            .envs(env.iter().copied())
            .current_dir(lab.dir.path());
        if let Some(path) = streams.stdout {
            command = command.stdout(std::fs::File::create(path).unwrap());
        }
        if let Some(path) = streams.stderr {
            command = command.stderr(std::fs::File::create(path).unwrap());
        }
        let child = command.spawn(pts).unwrap();
        let pty = Arc::new(pty);
        let size = |n: u16| std::num::NonZeroU16::new(n).unwrap();
        let parser = Arc::new(Mutex::new(vt100::Parser::new(size(rows), size(columns), 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let (pty, parser, raw) = (Arc::clone(&pty), Arc::clone(&parser), Arc::clone(&raw));
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                // Ends (EIO) once evoctl, the terminal's last user, has exited.
                while let Ok(n) = (&*pty).read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    parser.lock().unwrap().process(&buffer[..n]);
                    raw.lock().unwrap().extend_from_slice(&buffer[..n]);
                }
            })
        };
        Screen { parser, raw, child, reader: Some(reader), _pty: pty }
    }

    /// The lines rows `from..to` of the screen show: a row the terminal wrapped joined to the
    /// next, trailing blanks trimmed.
    fn lines_in(&self, from: u16, to: u16) -> Vec<String> {
        let parser = self.parser.lock().unwrap();
        let screen = parser.screen();
        let columns = screen.size().1.get();
        let rows: Vec<String> = screen.rows(0, columns).collect();
        let mut lines = vec![String::new()];
        for row in from..to {
            let line = lines.last_mut().unwrap();
            line.push_str(&rows[usize::from(row)]);
            if !screen.row_wrapped(row) {
                *line = line.trim_end().to_owned();
                lines.push(String::new());
            }
        }
        lines.pop();
        lines
    }

    /// The screen's text, line by line (wrapped rows joined).
    fn text(&self) -> String {
        let rows = self.parser.lock().unwrap().screen().size().0.get();
        self.lines_in(0, rows).join("\n")
    }

    /// Everything evoctl wrote to the terminal, cursor movements included.
    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, what: &str, needle: &str) {
        wait_until(Duration::from_secs(30), what, || self.text().contains(needle).then_some(()));
    }

    /// Wait for evoctl to exit and for everything it wrote to be on the screen.
    fn finish(&mut self) -> Option<i32> {
        let status = wait_until(Duration::from_secs(60), "evoctl to end", || self.child.try_wait().unwrap());
        let reader = self.reader.take().unwrap();
        wait_until(Duration::from_secs(10), "the terminal to be read to its end", || {
            reader.is_finished().then_some(())
        });
        reader.join().unwrap();
        status.code()
    }

    /// The screen rows the QR is painted on (its bright white cells).
    fn qr_rows(&self) -> Vec<u16> {
        let parser = self.parser.lock().unwrap();
        let screen = parser.screen();
        let (rows, columns) = (screen.size().0.get(), screen.size().1.get());
        (0..rows)
            .filter(|&row| {
                (0..columns).any(|column| screen.cell(row, column).unwrap().bgcolor() == vt100::Color::Idx(15))
            })
            .collect()
    }

    /// The QR on the screen, decoded by zbarimg from an image of its cells: each cell is two
    /// modules, its glyph saying which half is drawn in the foreground colour; black (colour 0)
    /// is dark, bright white (15) is light, and anything else (an unpainted cell, which a dark
    /// theme shows inverted) fails the test. `None` when nothing is painted.
    fn qr(&self, png: &Path) -> Option<String> {
        let rows = self.qr_rows();
        let (first, last) = (*rows.first()?, *rows.last()?);
        let parser = self.parser.lock().unwrap();
        let screen = parser.screen();
        let columns = screen.size().1.get();
        let painted = |column: u16| {
            (first..=last).any(|row| screen.cell(row, column).unwrap().bgcolor() != vt100::Color::Default)
        };
        let left = (0..columns).find(|&c| painted(c))?;
        let right = (0..columns).rev().find(|&c| painted(c))?;
        const SCALE: u32 = 6;
        let width = u32::from(right - left + 1) * SCALE;
        let height = u32::from(last - first + 1) * 2 * SCALE;
        let mut pixels = vec![255u8; width as usize * height as usize];
        for row in first..=last {
            for column in left..=right {
                let cell = screen.cell(row, column).unwrap();
                let (top, bottom) = match cell.contents() {
                    "█" => (true, true),
                    "▀" => (true, false),
                    "▄" => (false, true),
                    "" | " " => (false, false),
                    other => panic!("{other:?} in the QR at row {row}, column {column}"),
                };
                for (half, foreground) in [(0, top), (1, bottom)] {
                    let colour = if foreground { cell.fgcolor() } else { cell.bgcolor() };
                    let dark = match colour {
                        vt100::Color::Idx(0) => true,
                        vt100::Color::Idx(15) => false,
                        other => panic!("an unpainted QR cell at row {row}, column {column}: {other:?}"),
                    };
                    if dark {
                        let (x0, y0) = (u32::from(column - left) * SCALE, (u32::from(row - first) * 2 + half) * SCALE);
                        for y in y0..y0 + SCALE {
                            for x in x0..x0 + SCALE {
                                pixels[y as usize * width as usize + x as usize] = 0;
                            }
                        }
                    }
                }
            }
        }
        let mut encoder = png::Encoder::new(std::fs::File::create(png).unwrap(), width, height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header().unwrap().write_image_data(&pixels).unwrap();
        Some(zbar_decode(png))
    }
}

const SCAN_CAPTION: &str = "scan with WhatsApp > Linked devices > Link a device";

fn code_of(lab: &Lab) -> String {
    lab.evolution_instance("alinhou-production")["qr"]["code"].as_str().expect("a QR is shown").to_owned()
}

/// The seed lab started with `args`, every task RUNNING with its agent.
fn seed(args: &[&str]) -> Lab {
    let lab = Lab::start_with("seed", args);
    lab.wait_settled();
    lab
}

/// The event line `--output json` writes for code `count` of production's instance (`kind`:
/// `qr` or `pairing_code`; no PNG).
fn code_event(kind: &str, code: &str, count: u64) -> Value {
    json!({"schema": "evoctl.connect.event/v1", "kind": kind, "env": "production",
           "instance": "alinhou-production", "code": code, "count": count, "limit": 30, "png": null})
}

/// The one JSON document a file holds (anything after it fails the parse).
fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The stderr notes of a connect on seed (waiting up to `timeout` seconds), up to its first code.
fn connect_notes(lab: &Lab, timeout: u64) -> String {
    format!(
        "preflight ok: production is the only live environment on its number; task {} (exec agent RUNNING)\n\
         waiting for alinhou-production to be linked (up to {timeout} s)…\n{}created the instance\n",
        lab.first_task_id(),
        crate::connect::BAILEYS_WARNING
    )
}

/// What a terminal of 80×24 says instead of QR `count` (35 rows): the PNG to scan.
fn too_big(count: u64, png: &Path) -> String {
    format!(
        "QR {count} of 30 needs a terminal of 69×37 characters and this one is 80×24: not drawn here; scan {} instead, or enlarge the terminal",
        png.display()
    )
}

/// The PNG the screen's last line names instead of QR `count` (`too_big`): a temporary
/// `evoctl-qr-*.png` in the lab's dir (its TMPDIR), mode 0600.
fn png_named_instead(lab: &Lab, screen: &Screen, count: u64) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let text = screen.text();
    let said = text.trim_end().lines().last().unwrap_or_default();
    let png = said
        .split_once("; scan ")
        .and_then(|(_, rest)| rest.rsplit_once(" instead, "))
        .map(|(path, _)| PathBuf::from(path))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(said, too_big(count, &png), "{text}");
    let name = png.file_name().unwrap().to_str().unwrap();
    assert!(
        png.parent() == Some(lab.dir.path()) && name.starts_with("evoctl-qr-") && name.ends_with(".png"),
        "{png:?}"
    );
    assert_eq!(std::fs::metadata(&png).unwrap().permissions().mode() & 0o777, 0o600);
    png
}

fn assert_summary(stdout: &str) {
    let rest = stdout.strip_prefix("linked 5511987654321 to alinhou-production\nenv:      production\ntask:     ");
    assert!(rest.is_some_and(|rest| rest.contains("\nwebhook:  unchanged\ntime:     ")), "{stdout}");
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
}

/// `connect --output json` on a terminal, stdout to a file: the QR (black on white under
/// NO_COLOR too) is on the screen with its event line, the file holds only the document.
#[test]
fn json_output_leaves_the_qr_on_the_screen_and_only_the_document_on_stdout() {
    let lab = seed(&["--auto-scan-after-ms", "3000"]);
    let out = lab.dir.path().join("out.json");
    let mut screen = Screen::start(
        &lab,
        (52, 120),
        &["--output", "json", "connect", "production", "--stable-for", "1s"],
        Streams { stdout: Some(&out), ..Streams::default() },
        &[("NO_COLOR", "1")],
    );
    screen.wait_for("the first QR's caption", &format!("{SCAN_CAPTION} (QR 1 of 30)"));
    let code = code_of(&lab);
    assert_eq!(screen.qr(&lab.dir.path().join("screen.png")).as_deref(), Some(code.as_str()));
    assert_eq!(screen.finish(), Some(0), "{}", screen.text());
    let event = code_event("qr", &code, 1);
    assert!(screen.raw().contains(&format!("{event}\r\n")), "{}", screen.raw());
    let report = json_file(&out);
    assert_eq!(report["schema"], "evoctl.connect/v1");
    assert_eq!(report["state"], "open");
    assert_eq!(report["qr_shown"], 1);
    assert_eq!(lab.evolution_instance("alinhou-production")["scanned_code"], code.as_str());
}

/// `connect > out.txt 2> err.txt` in a terminal: the QR is drawn on the controlling terminal;
/// the files hold the summary and the notes, no QR rows.
#[test]
fn redirected_output_still_shows_the_qr_on_the_controlling_terminal() {
    let lab = seed(&["--auto-scan-after-ms", "3000"]);
    let (out, err) = (lab.dir.path().join("out.txt"), lab.dir.path().join("err.txt"));
    let mut screen = Screen::start(
        &lab,
        (50, 120),
        &["connect", "production", "--stable-for", "1s"],
        Streams { stdout: Some(&out), stderr: Some(&err) },
        &[],
    );
    screen.wait_for("the first QR's caption", &format!("{SCAN_CAPTION} (QR 1 of 30)"));
    let code = code_of(&lab);
    assert_eq!(screen.qr(&lab.dir.path().join("screen.png")).as_deref(), Some(code.as_str()));
    assert_eq!(screen.finish(), Some(0), "{}", std::fs::read_to_string(&err).unwrap());
    assert_summary(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(std::fs::read_to_string(&err).unwrap(), connect_notes(&lab, 600));
    assert_eq!(screen.text().trim_end().lines().last(), Some(format!("{SCAN_CAPTION} (QR 1 of 30)").as_str()));
}

/// A rotated QR takes the place of the last one: the same rows, one caption, the new code; the
/// lines written below it meanwhile (the event lines of `--output json`) are kept above it.
#[test]
fn a_rotated_qr_replaces_the_last_one_in_place() {
    let lab = seed(&["--qr-rotate-ms", "2000", "--auto-scan-after-ms", "3000"]);
    let out = lab.dir.path().join("out.txt");
    let mut screen = Screen::start(
        &lab,
        (50, 120),
        &["connect", "production", "--stable-for", "1s"],
        Streams { stdout: Some(&out), ..Streams::default() },
        &[],
    );
    screen.wait_for("the first QR's caption", &format!("{SCAN_CAPTION} (QR 1 of 30)"));
    let first_rows = screen.qr_rows();
    assert_eq!(first_rows.len(), 35, "{}", screen.text());
    assert_eq!(screen.finish(), Some(0), "{}", screen.text());
    let row = lab.evolution_instance("alinhou-production");
    let second = row["issued_codes"][1].as_str().expect("a second QR").to_owned();
    assert_eq!(row["scanned_code"], second.as_str());
    assert_eq!(screen.qr_rows(), first_rows, "the second QR is drawn where the first was");
    assert_eq!(screen.qr(&lab.dir.path().join("screen.png")), Some(second));
    let text = screen.text();
    assert_eq!(text.matches(SCAN_CAPTION).count(), 1, "{text}");
    assert!(text.contains(&format!("{SCAN_CAPTION} (QR 2 of 30)")), "{text}");
    assert_summary(&std::fs::read_to_string(&out).unwrap());

    // With --output json the second event line comes below the first QR; it is written again
    // above the second.
    let lab = seed(&["--qr-rotate-ms", "2000", "--auto-scan-after-ms", "3000"]);
    let out = lab.dir.path().join("out.json");
    let mut screen = Screen::start(
        &lab,
        (52, 120),
        &["--output", "json", "connect", "production", "--stable-for", "1s"],
        Streams { stdout: Some(&out), ..Streams::default() },
        &[],
    );
    assert_eq!(screen.finish(), Some(0), "{}", screen.text());
    let codes = lab.evolution_instance("alinhou-production")["issued_codes"].clone();
    let event = |n: usize| code_event("qr", codes[n - 1].as_str().expect("an issued code"), n as u64).to_string();
    let qr_rows = screen.qr_rows();
    let (top, bottom) = (qr_rows[0], *qr_rows.last().unwrap());
    let above = screen.lines_in(0, top).join("\n");
    assert_eq!(above, format!("{}{}\n{}", connect_notes(&lab, 600), event(1), event(2)), "{}", screen.text());
    assert_eq!(screen.lines_in(bottom + 1, bottom + 2), [format!("{SCAN_CAPTION} (QR 2 of 30)")]);
    assert_eq!(screen.qr(&lab.dir.path().join("screen.png")), codes[1].as_str().map(str::to_owned));
    assert_eq!(json_file(&out)["qr_shown"], 2);
}

/// The pairing flow shows the pairing code on the terminal and speaks of codes, not QRs, to the
/// end (its timeout and fix).
#[test]
fn the_pairing_flow_shows_the_code_and_speaks_of_codes() {
    let lab = seed(&[]);
    let out = lab.dir.path().join("out.txt");
    let mut screen = Screen::start(
        &lab,
        (50, 120),
        &["connect", "production", "--pairing-number", "5511987654321", "--timeout", "4s"],
        Streams { stdout: Some(&out), ..Streams::default() },
        &[],
    );
    screen.wait_for("the pairing code", "pairing code: ");
    let pairing = lab.evolution_instance("alinhou-production")["qr"]["pairingCode"].as_str().unwrap().to_owned();
    assert_eq!(screen.finish(), Some(7), "{}", screen.text());
    let text = screen.text();
    let expected = format!(
        "{}pairing code: {pairing}  (WhatsApp > Linked devices > Link with phone number instead; pairing code 1 of 30)\n\
         error: alinhou-production was not linked within 4 s (1 pairing code(s) shown); it is left waiting for its pairing code to be entered\n  \
         fix: run `evoctl connect production --pairing-number 5511987654321` again and enter the new code",
        connect_notes(&lab, 4)
    );
    assert_eq!(text.trim_end(), expected, "{text}");
    assert!(screen.qr_rows().is_empty() && !screen.raw().contains('▀'), "a QR was drawn: {text}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
}

/// At 80×24 a QR (35 rows) does not fit: nothing of it is drawn; the screen says the size it
/// needs and names a PNG (a temporary file, mode 0600) that decodes to the code; with `--png`
/// that file is named instead and no temporary file is made.
#[test]
fn a_qr_too_big_for_the_terminal_is_not_drawn_but_written_to_a_png() {
    let lab = seed(&["--auto-scan-after-ms", "3000"]);
    let out = lab.dir.path().join("out.txt");
    let mut screen = Screen::start(
        &lab,
        (24, 80),
        &["connect", "production", "--stable-for", "1s"],
        Streams { stdout: Some(&out), ..Streams::default() },
        &[],
    );
    assert_eq!(screen.finish(), Some(0), "{}", screen.text());
    let raw = screen.raw();
    assert!(!raw.contains('▀') && !raw.contains('▄') && !raw.contains('█'), "a QR was drawn: {raw}");
    assert!(screen.qr_rows().is_empty());
    let png = png_named_instead(&lab, &screen, 1);
    let scanned = lab.evolution_instance("alinhou-production")["scanned_code"].as_str().unwrap().to_owned();
    assert_eq!(zbar_decode(&png), scanned);
    assert_summary(&std::fs::read_to_string(&out).unwrap());

    let lab = seed(&["--auto-scan-after-ms", "3000"]);
    let given = lab.dir.path().join("given.png");
    let mut screen = Screen::start(
        &lab,
        (24, 80),
        &["connect", "production", "--stable-for", "1s", "--png", given.to_str().unwrap()],
        Streams { stdout: Some(&out), ..Streams::default() },
        &[],
    );
    assert_eq!(screen.finish(), Some(0), "{}", screen.text());
    let text = screen.text();
    assert!(text.contains(&format!("\n{}\n", too_big(1, &given))), "{text}");
    assert!(!screen.raw().contains('▀'));
    let made: Vec<_> = std::fs::read_dir(lab.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("evoctl-qr-"))
        .collect();
    assert_eq!(made, Vec::<String>::new());
    let scanned = lab.evolution_instance("alinhou-production")["scanned_code"].as_str().unwrap().to_owned();
    assert_eq!(zbar_decode(&given), scanned);
}

/// No terminal at all (a session of its own, pipes): the code is said on stderr as text with
/// the hint, and with `--output json` as its event line too; stdout holds only the document.
#[test]
fn with_no_terminal_the_code_is_text_on_stderr() {
    let lab = seed(&["--auto-scan-after-ms", "2000"]);
    let output =
        lab.evoctl().args(["--output", "json", "connect", "production", "--stable-for", "1s"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let code = lab.evolution_instance("alinhou-production")["scanned_code"].as_str().unwrap().to_owned();
    let event = code_event("qr", &code, 1);
    assert_eq!(
        text(&output.stderr),
        format!(
            "{}{event}\nQR 1 of 30: no terminal to draw it on; pass --png FILE for an image to scan, or draw it with `evoctl qr CODE`. Its code: {code}\n",
            connect_notes(&lab, 600)
        )
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report["schema"].as_str(), report["qr_shown"].as_u64()), (Some("evoctl.connect/v1"), Some(1)));

    // The pairing variant: the pairing code as text, the event of kind pairing_code.
    let lab = seed(&[]);
    let output = lab
        .evoctl()
        .args(["--output", "json", "connect", "production", "--pairing-number", "5511987654321", "--timeout", "3s"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", text(&output.stderr));
    let pairing = lab.evolution_instance("alinhou-production")["qr"]["pairingCode"].as_str().unwrap().to_owned();
    let event = code_event("pairing_code", &pairing, 1);
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{}{event}\npairing code: {pairing}  (WhatsApp > Linked devices > Link with phone number instead; pairing code 1 of 30)\n\
             error: alinhou-production was not linked within 3 s (1 pairing code(s) shown)",
            connect_notes(&lab, 3)
        )),
        "{stderr}"
    );
    assert_eq!(serde_json::from_slice::<Value>(&output.stdout).unwrap()["schema"], "evoctl.error/v1");
}

/// `instance connect` shows its code the same way: on the terminal with stdout in a file (which
/// stays empty), as text and an event line without one.
#[test]
fn instance_connect_shows_its_code_the_same_way() {
    let lab = seed(&[]);
    let created = lab.evoctl().args(["instance", "create", "production"]).output().unwrap();
    assert_eq!(created.status.code(), Some(0), "{}", text(&created.stderr));
    let out = lab.dir.path().join("out.txt");
    let mut screen = Screen::start(
        &lab,
        (50, 120),
        &["instance", "connect", "production"],
        Streams { stdout: Some(&out), ..Streams::default() },
        &[],
    );
    assert_eq!(screen.finish(), Some(0), "{}", screen.text());
    let code = code_of(&lab);
    assert_eq!(screen.qr(&lab.dir.path().join("screen.png")), Some(code.clone()));
    assert_eq!(screen.text().trim_end().lines().last(), Some(format!("{SCAN_CAPTION} (QR 1 of 30)").as_str()));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");

    let mut screen = Screen::start(
        &lab,
        (24, 80),
        &["instance", "connect", "production"],
        Streams { stdout: Some(&out), ..Streams::default() },
        &[],
    );
    assert_eq!(screen.finish(), Some(0), "{}", screen.text());
    assert!(!screen.raw().contains('▀'), "a QR was drawn at 80×24: {}", screen.raw());
    let count = lab.evolution_instance("alinhou-production")["qr"]["count"].as_u64().expect("a QR count");
    let png = png_named_instead(&lab, &screen, count);
    assert_eq!(screen.text().trim_end(), too_big(count, &png), "the screen holds only that line");
    assert_eq!(zbar_decode(&png), code_of(&lab));

    let output = lab.evoctl().args(["--output", "json", "instance", "connect", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let code = report["code"].as_str().unwrap();
    let count = report["count"].as_u64().unwrap();
    let event = code_event("qr", code, count);
    assert_eq!(
        text(&output.stderr),
        format!(
            "{event}\nQR {count} of 30: no terminal to draw it on; pass --png FILE for an image to scan, or draw it with `evoctl qr CODE`. Its code: {code}\n"
        )
    );
}
