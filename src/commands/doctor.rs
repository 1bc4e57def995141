//! `evoctl doctor ENV [--probe]`: layered troubleshooting (see [`crate::runbook::doctor`]).
//! Each layer's row (OK / WARN / FAIL / SKIP with its evidence) is printed the moment the layer
//! is checked, FAIL in red and WARN in yellow on a terminal; when every layer is done the
//! verdict comes first (`doctor: FAIL at webhook-delivery`), then the fix and the warnings.
//! With `--output json` one document at the end. Exit 0 when nothing failed, 1 otherwise.

use super::Context;
use crate::cli::DoctorArgs;
use crate::error::Result;
use crate::exit;
use crate::output::{OutputFormat, Style};
use crate::runbook::doctor::{self, Check, Diagnosis, Layer, Options, Status};
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

/// The LAYER column's width: the longest layer name and two spaces.
const LAYER_WIDTH: usize = "webhook-delivery".len() + 2;
/// The STATUS column's width: its header and two spaces.
const STATUS_WIDTH: usize = "STATUS".len() + 2;

pub async fn run(context: &Context, args: &DoctorArgs) -> Result<u8> {
    let config = context.config()?;
    let env = config.environment(&args.env)?;
    let aws = context.aws(&config).await?;
    let printer = &context.printer;
    let table = printer.format() == OutputFormat::Table;
    if table {
        printer.styled(&[vec![(Style::Plain, format!("{:LAYER_WIDTH$}{:STATUS_WIDTH$}EVIDENCE", "LAYER", "STATUS"))]]);
    }
    let mut show = |check: &Check| {
        if table {
            printer.styled(&[row(check)]);
        }
    };
    let options = Options { probe: args.probe };
    let diagnosis = doctor::diagnose(&aws, &config, env, &options, &mut show).await;
    let first = diagnosis.first_broken();
    if table {
        printer.styled(&verdict(&diagnosis));
    } else {
        let report = DoctorReport {
            schema: "evoctl.doctor/v1",
            ok: first.is_none(),
            parked: diagnosis.parked(),
            first_broken: first.map(|c| c.layer),
            diagnosis: &diagnosis,
        };
        printer.json(&report);
    }
    Ok(if first.is_none() { exit::OK } else { exit::FINDINGS })
}

/// A status as the report shows it, with its colour.
fn status(status: Status) -> (Style, &'static str) {
    match status {
        Status::Ok => (Style::Plain, "OK"),
        Status::Warn => (Style::Notice, "WARN"),
        Status::Fail => (Style::Alert, "FAIL"),
        Status::Skip => (Style::Plain, "SKIP"),
    }
}

/// One layer's row, in the table's fixed columns.
fn row(check: &Check) -> Vec<(Style, String)> {
    let (style, word) = status(check.status);
    vec![
        (Style::Plain, format!("{:LAYER_WIDTH$}", check.layer.name())),
        (style, word.to_owned()),
        (Style::Plain, format!("{:pad$}{}", "", check.evidence, pad = STATUS_WIDTH - word.len())),
    ]
}

/// After the rows: the verdict line, then the first broken layer's fix, then each warning's.
fn verdict(diagnosis: &Diagnosis) -> Vec<Vec<(Style, String)>> {
    let warnings: Vec<&Check> = diagnosis.checks.iter().filter(|c| c.status == Status::Warn).collect();
    let mut lines = vec![Vec::new()];
    match diagnosis.first_broken() {
        Some(check) => {
            lines.push(vec![
                (Style::Plain, "doctor: ".into()),
                (Style::Alert, "FAIL".into()),
                (Style::Plain, format!(" at {}", check.layer)),
            ]);
            lines.push(vec![(Style::Plain, format!("fix: {}", check.fix.as_deref().unwrap_or("-")))]);
        }
        None if warnings.is_empty() && diagnosis.parked() => {
            lines.push(vec![(Style::Plain, "doctor: OK (parked: no task, as configured)".into())])
        }
        None if warnings.is_empty() => lines.push(vec![(Style::Plain, "doctor: OK".into())]),
        None => lines.push(vec![
            (Style::Plain, "doctor: OK, ".into()),
            (Style::Notice, format!("{} warning(s)", warnings.len())),
        ]),
    }
    // A warning without a fix (a recovery) has nothing to run.
    for check in warnings {
        if let Some(fix) = &check.fix {
            lines.push(vec![(Style::Notice, "warn".into()), (Style::Plain, format!(" {}: {fix}", check.layer))]);
        }
    }
    lines
}
