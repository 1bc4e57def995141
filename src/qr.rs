//! QR codes: rendering a WhatsApp pairing `code` for a terminal (half blocks with a quiet zone,
//! painted black on white by the printer so it scans on dark and light themes), to PNG and SVG
//! files, and finding the `code` in pasted `aws ecs execute-command` output.
//!
//! Files are written through a temporary file created exclusively (`O_EXCL`, mode 0600) in the
//! target's directory and renamed over the target: a viewer open on the file never reads half an
//! image, and no name planted beside the target (a symlink at `F.partial`, say) is ever followed.

use crate::error::{Error, Result};
use crate::exec::noise;
use crate::output::Drawing;
use qrcode::QrCode;
use qrcode::render::{svg, unicode};
use std::path::Path;

/// Encode `text`, or a usage error naming the problem.
fn encode(text: &str) -> Result<QrCode> {
    if text.trim().is_empty() {
        return Err(Error::usage("the QR text is empty", "pass the `code` string, or - to read it from stdin"));
    }
    QrCode::new(text.as_bytes()).map_err(|e| {
        Error::usage(
            format!("cannot encode {} characters as a QR code: {e}", text.chars().count()),
            "pass the `code` value only (about 240 characters), not the base64 image",
        )
    })
}

/// The QR as text: two modules per character cell, with a 4-module quiet zone.
pub fn to_terminal(text: &str) -> Result<Drawing> {
    let code = encode(text)?;
    let art = code
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Dark)
        .light_color(unicode::Dense1x2::Light)
        .quiet_zone(true)
        .build();
    Ok(Drawing::new(art.lines().map(str::to_owned).collect()))
}

/// Write the QR as a PNG (at least 400 px, quiet zone included): 8-bit grayscale.
pub fn write_png(text: &str, path: &Path) -> Result<()> {
    let code = encode(text)?;
    let image = code.render::<Gray>().quiet_zone(true).min_dimensions(400, 400).build();
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, image.width, image.height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(&image.pixels))
        .map_err(|e| Error::Io { path: path.to_path_buf(), source: std::io::Error::other(e.to_string()) })?;
    write_whole(path, &bytes)
}

/// A grayscale pixel for qrcode's renderer (its `Pixel` and `Canvas` extension points), so the PNG
/// needs only the `png` encoder.
#[derive(Clone, Copy)]
struct Gray(u8);

/// The rendered QR: one byte per pixel, row by row.
struct GrayImage {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl qrcode::render::Pixel for Gray {
    type Image = GrayImage;
    type Canvas = GrayCanvas;

    fn default_color(color: qrcode::Color) -> Self {
        Gray(color.select(0, 255))
    }
}

struct GrayCanvas {
    image: GrayImage,
    dark: u8,
}

impl qrcode::render::Canvas for GrayCanvas {
    type Pixel = Gray;
    type Image = GrayImage;

    fn new(width: u32, height: u32, dark: Gray, light: Gray) -> Self {
        let pixels = vec![light.0; width as usize * height as usize];
        GrayCanvas { image: GrayImage { width, height, pixels }, dark: dark.0 }
    }

    fn draw_dark_pixel(&mut self, x: u32, y: u32) {
        let index = y as usize * self.image.width as usize + x as usize;
        self.image.pixels[index] = self.dark;
    }

    fn into_image(self) -> GrayImage {
        self.image
    }
}

/// Write the QR as an SVG document.
pub fn write_svg(text: &str, path: &Path) -> Result<()> {
    let code = encode(text)?;
    let document = code
        .render::<svg::Color<'_>>()
        .quiet_zone(true)
        .min_dimensions(400, 400)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    write_whole(path, document.as_bytes())
}

/// `bytes` as the new content of `path`: written to a fresh temporary file in the same directory
/// (created exclusively, mode 0600, removed if anything fails), then renamed over `path`.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut file =
        tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".partial").tempfile_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut file, bytes).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Find the QR `code` in pasted output: a plugin transcript (banners, CRLF, doubled CR from a
/// terminal), a JSON body (`"code":"…"`), or a `code: …` line. The last one found wins (the
/// newest QR when several were polled).
pub fn extract_code(pasted: &[u8]) -> Option<String> {
    let stripped = noise::strip(pasted);
    let body = if stripped.session_id.is_some() { stripped.payload } else { pasted.to_vec() };
    let text = String::from_utf8_lossy(&body).replace('\r', "");
    let json = regex::Regex::new(r#""code"\s*:\s*"([^"\\]+)""#).expect("valid regex");
    if let Some(found) = json.captures_iter(&text).last() {
        return Some(found[1].to_owned());
    }
    let line = regex::Regex::new(r#"(?m)^\s*code\s*[:=]\s*(?:'([^']+)'|"([^"]+)"|([^\s'"}]+))"#).expect("valid regex");
    let found = line.captures_iter(&text).last()?;
    found.iter().skip(1).flatten().next().map(|m| m.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str =
        "2@y8eK+bjtEjUWy9/FOM=,I6gVLHrDJs2uAGfzGgs=,d4TkWSVzm+Z5VD5v3RVhfPqxCo=,kR4Vk6V5uu/DQsD7tg4jxg1X8ZXPsj0=";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/plugin-transcripts/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn the_code_is_found_in_every_transcript_carrying_a_qr() {
        for name in [
            "aws-cli-1.45-normal.out",
            "plugin-normal.out",
            "plugin-stdin-devnull-complete.out",
            "plugin-on-terminal.out",
            "payload-small.bin",
        ] {
            assert_eq!(extract_code(&fixture(name)).as_deref(), Some(CODE), "{name}");
        }
        assert_eq!(extract_code(&fixture("plugin-installed-banner.out")), None);
        assert_eq!(extract_code(&fixture("plugin-channel-closed-error.out")), None);
    }

    #[test]
    fn code_lines_and_doubled_crs_are_understood() {
        assert_eq!(extract_code(b"  code: '2@abc=,def='\r\r\n").as_deref(), Some("2@abc=,def="));
        assert_eq!(extract_code(b"code=2@xyz\n").as_deref(), Some("2@xyz"));
        assert_eq!(extract_code(b"{\"count\":0}").as_deref(), None);
        let two = br#"{"code":"2@old"} then {"code":"2@new"}"#;
        assert_eq!(extract_code(two).as_deref(), Some("2@new"));
    }

    #[test]
    fn terminal_rendering_has_a_quiet_zone_and_half_blocks() {
        let drawing = to_terminal("hello").unwrap();
        let lines = drawing.lines();
        // 21 modules + 2 x 4 quiet zone = 29 columns; rows are halved (rounded up).
        assert!(lines.iter().all(|l| l.chars().count() == 29), "{lines:?}");
        assert_eq!(lines.len(), 15);
        assert!(lines[0].chars().all(|c| c == ' '), "quiet zone on top");
        let all = lines.concat();
        assert!(all.contains('█') && all.contains('▀') && all.contains('▄'));
    }

    #[test]
    fn a_file_is_replaced_whole_and_no_planted_name_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("qr.png");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("qr.png.partial")).unwrap();
        write_png("hello", &target).unwrap();
        write_png("hello again", &target).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert!(std::fs::read(&target).unwrap().starts_with(b"\x89PNG"));
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 3, "no temporary file is left behind: {left:?}");
    }

    #[test]
    fn empty_and_oversized_texts_are_usage_errors() {
        assert_eq!(to_terminal(" ").unwrap_err().exit_code(), crate::exit::USAGE);
        assert_eq!(to_terminal(&"x".repeat(5000)).unwrap_err().exit_code(), crate::exit::USAGE);
    }
}
