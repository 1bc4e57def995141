//! `evoctl qr [CODE|-] [--png FILE] [--svg FILE] [--from-output]`: show a WhatsApp QR `code` in
//! the terminal and/or write it to image files; `--from-output` digs the code out of pasted
//! `aws ecs execute-command` output.

use super::Context;
use crate::cli::QrArgs;
use crate::error::{Error, Result};
use crate::exit;
use crate::output::OutputFormat;
use crate::qr;
use serde::Serialize;
use std::io::Read;
use std::path::PathBuf;

#[derive(Serialize)]
struct QrReport {
    schema: &'static str,
    code: String,
    png: Option<PathBuf>,
    svg: Option<PathBuf>,
}

pub fn run(context: &Context, args: &QrArgs) -> Result<u8> {
    let input = match args.code.as_deref() {
        Some("-") | None => {
            let mut buffer = Vec::new();
            std::io::stdin().read_to_end(&mut buffer).map_err(|source| Error::Io { path: "<stdin>".into(), source })?;
            buffer
        }
        Some(text) => text.as_bytes().to_vec(),
    };
    let code = if args.from_output {
        qr::extract_code(&input).ok_or_else(|| {
            Error::not_found(
                "no QR `code` found in the pasted output",
                "paste the whole output of the connect call; a body with only {\"count\":0} has no QR yet, poll again",
            )
        })?
    } else {
        String::from_utf8_lossy(&input).trim().to_owned()
    };
    if let Some(path) = &args.png {
        qr::write_png(&code, path)?;
    }
    if let Some(path) = &args.svg {
        qr::write_svg(&code, path)?;
    }
    let drawing = qr::to_terminal(&code)?;
    let report = QrReport { schema: "evoctl.qr/v1", code, png: args.png.clone(), svg: args.svg.clone() };
    if context.printer.format() == OutputFormat::Json {
        context.printer.json(&report);
    } else {
        context.printer.drawing(&drawing, "");
        for path in [&report.png, &report.svg].into_iter().flatten() {
            context.printer.note(&format!("wrote {}", path.display()));
        }
    }
    Ok(exit::OK)
}
