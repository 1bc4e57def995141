//! `evoctl init`: write the commented starter config.

use super::Context;
use crate::cli::InitArgs;
use crate::config::{self, DEFAULT_FILE};
use crate::error::Result;
use crate::exit;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Serialize)]
struct Written {
    schema: &'static str,
    written: PathBuf,
}

pub fn run(context: &Context, args: &InitArgs) -> Result<u8> {
    let path = context.global.config.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
    config::write_starter(&path, args.force)?;
    let report = Written { schema: "evoctl.init/v1", written: path };
    context.printer.data(&report, || {
        format!("wrote {} (staging 0/0, production 1/1); edit it, then run `evoctl status`", report.written.display())
    });
    Ok(exit::OK)
}
