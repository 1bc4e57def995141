//! `evoctl audit [ENV..]`: the pre-deploy isolation audit. Reads every environment at once, runs
//! the rules catalogue ([`crate::guard::rules`]) and reports the findings as a table, a
//! versioned JSON document (`evoctl.audit/v1`) or GitHub workflow annotations. Exit 0 clean,
//! 1 findings, 5 when AWS could not be read (an audit is never "clean" on a read error).

use super::Context;
use crate::cli::{AuditArgs, AuditFormat};
use crate::error::Result;
use crate::exit;
use crate::guard::{self, rules::Finding};
use crate::output::{OutputFormat, table};
use serde::Serialize;

/// `--format json` document.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub schema: &'static str,
    pub region: String,
    /// The environments audited.
    pub environments: Vec<String>,
    /// The rule ids that ran.
    pub rules: Vec<&'static str>,
    pub clean: bool,
    pub findings: Vec<Finding>,
}

pub async fn run(context: &Context, args: &AuditArgs) -> Result<u8> {
    let format = args.format.unwrap_or(match context.printer.format() {
        OutputFormat::Json => AuditFormat::Json,
        OutputFormat::Table => AuditFormat::Table,
    });
    match audit(context, args).await {
        Ok(report) => {
            match format {
                AuditFormat::Table => context.printer.text(&render_table(&report)),
                AuditFormat::Json => context.printer.json(&report),
                AuditFormat::Github => context.printer.text(&render_github(&report)),
            }
            Ok(if report.clean { exit::OK } else { exit::FINDINGS })
        }
        Err(err) => {
            if format == AuditFormat::Json && context.printer.format() != OutputFormat::Json {
                context.printer.error_json(&err);
            }
            if format == AuditFormat::Github {
                let fix = err.fix().map(|f| format!(" Fix: {f}")).unwrap_or_default();
                context.printer.text(&format!(
                    "::error title={}::{}",
                    escape_property("evoctl audit could not read the account"),
                    escape_data(&format!("{err}.{fix}"))
                ));
            }
            Err(err)
        }
    }
}

async fn audit(context: &Context, args: &AuditArgs) -> Result<AuditReport> {
    let selected = guard::select_rules(&args.rules, &args.skip)?;
    let config = context.config()?;
    let focus = config.select(&args.envs)?;
    let aws = context.aws(&config).await?;
    let facts = guard::collect_all(&aws, &config).await?;
    let findings = guard::evaluate(&config.environments, &facts, &selected, &focus);
    Ok(AuditReport {
        schema: "evoctl.audit/v1",
        region: aws.region().to_owned(),
        environments: focus.iter().map(|e| e.name.clone()).collect(),
        rules: selected.iter().map(|r| r.id).collect(),
        clean: findings.is_empty(),
        findings,
    })
}

fn render_table(report: &AuditReport) -> String {
    let scope = format!("{} rules over {}", report.rules.len(), report.environments.join(", "));
    if report.clean {
        return format!("audit clean: {scope}\n");
    }
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| vec![f.severity.as_str().into(), f.rule.into(), f.envs.join(","), f.evidence.clone()])
        .collect();
    let mut out = table(&["SEVERITY", "RULE", "ENV", "EVIDENCE"], &rows);
    out.push_str("\nfixes:\n");
    for f in &report.findings {
        out.push_str(&format!("  {} ({}): {}\n", f.rule, f.envs.join(","), f.fix));
    }
    out.push_str(&format!("\n{} finding(s): {scope}\n", report.findings.len()));
    out
}

/// GitHub workflow commands: one annotation per finding, a notice when clean.
fn render_github(report: &AuditReport) -> String {
    if report.clean {
        return format!(
            "::notice title=evoctl audit::{}\n",
            escape_data(&format!("clean: {} rules over {}", report.rules.len(), report.environments.join(", ")))
        );
    }
    report
        .findings
        .iter()
        .map(|f| {
            format!(
                "::{} title={}::{}\n",
                f.severity.as_str(),
                escape_property(&format!("evoctl audit {} ({})", f.rule, f.envs.join(", "))),
                escape_data(&format!("{}. Fix: {}", f.evidence, f.fix))
            )
        })
        .collect()
}

/// Escaping for a workflow command's message (`%`, CR, LF).
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escaping for a workflow command's property values (also `:` and `,`).
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn workflow_command_escaping_keeps_annotations_on_one_line() {
        assert_eq!(escape_data("50%\nnext"), "50%25%0Anext");
        assert_eq!(escape_property("a: b, c"), "a%3A b%2C c");
    }

    #[test]
    fn unknown_rule_ids_are_a_usage_error_listing_the_catalogue() {
        let err: Error = guard::select_rules(&["scalng".into()], &[]).unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE);
        assert!(err.fix().unwrap().contains("scaling, live-tasks"));
    }
}
