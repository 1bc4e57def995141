//! `evoctl doctor ENV`: layered troubleshooting (see [`crate::runbook::doctor`]). Prints each
//! layer OK / WARN / FAIL / SKIP with its evidence, names the first broken layer and its fix;
//! exit 0 when nothing failed, 1 otherwise.

use super::Context;
use crate::cli::EnvArg;
use crate::error::Result;
use crate::exit;
use crate::output::table;
use crate::runbook::doctor::{self, Diagnosis, Layer, Status};
use serde::Serialize;

/// `--output json` document (schema `evoctl.doctor/v1`).
#[derive(Debug, Serialize)]
struct DoctorReport<'a> {
    schema: &'static str,
    ok: bool,
    /// No task runs and none is meant to.
    parked: bool,
    first_broken: Option<Layer>,
    #[serde(flatten)]
    diagnosis: &'a Diagnosis,
}

pub async fn run(context: &Context, args: &EnvArg) -> Result<u8> {
    let config = context.config()?;
    let env = config.environment(&args.env)?;
    let aws = context.aws(&config).await?;
    let diagnosis = doctor::diagnose(&aws, &config, env).await;
    let first = diagnosis.first_broken();
    let report = DoctorReport {
        schema: "evoctl.doctor/v1",
        ok: first.is_none(),
        parked: diagnosis.parked(),
        first_broken: first.map(|c| c.layer),
        diagnosis: &diagnosis,
    };
    context.printer.data(&report, || render(&diagnosis));
    Ok(if first.is_none() { exit::OK } else { exit::FINDINGS })
}

fn render(diagnosis: &Diagnosis) -> String {
    let label = |status: Status| match status {
        Status::Ok => "OK",
        Status::Warn => "WARN",
        Status::Fail => "FAIL",
        Status::Skip => "SKIP",
    };
    let rows: Vec<Vec<String>> = diagnosis
        .checks
        .iter()
        .map(|c| vec![c.layer.to_string(), label(c.status).to_owned(), c.evidence.clone()])
        .collect();
    let mut out = table(&["LAYER", "STATUS", "EVIDENCE"], &rows);
    for check in diagnosis.checks.iter().filter(|c| c.status == Status::Warn) {
        if let Some(fix) = &check.fix {
            out.push_str(&format!("warn {}: {fix}\n", check.layer));
        }
    }
    match diagnosis.first_broken() {
        Some(check) => out.push_str(&format!(
            "\nfirst broken layer: {} ({})\nfix: {}\n",
            check.layer,
            check.evidence,
            check.fix.as_deref().unwrap_or("-")
        )),
        None => {
            let warnings = diagnosis.checks.iter().filter(|c| c.status == Status::Warn).count();
            match warnings {
                0 if diagnosis.parked() => {
                    out.push_str(&format!("\n{}: parked (no task, as configured); every layer OK\n", diagnosis.env))
                }
                0 => out.push_str(&format!("\n{}: every layer OK\n", diagnosis.env)),
                n => out.push_str(&format!("\n{}: no layer failed ({n} warning(s))\n", diagnosis.env)),
            }
        }
    }
    out
}
