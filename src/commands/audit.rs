//! `evoctl audit [ENV..]`: the pre-deploy isolation audit. Reads every environment at once, runs
//! the rules catalogue ([`crate::guard::rules`]) and reports the findings as a table, a
//! versioned JSON document (`evoctl.audit/v1`) or GitHub workflow annotations. Exit 0 clean,
//! 1 findings, 5 when AWS could not be read (an audit is never "clean" on a read error).

use super::Context;
use crate::cli::{AuditArgs, AuditFormat};
use crate::error::{Error, Result};
use crate::exit;
use crate::guard::{self, rules::Finding, rules::Location};
use crate::output::{OutputFormat, table};
use serde::Serialize;

/// `--format json` document.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub schema: &'static str,
    /// The region of the first environment (each environment's is in `accounts`).
    pub region: String,
    /// The environments audited.
    pub environments: Vec<String>,
    /// Where each environment was read: account id and region.
    pub accounts: Vec<Location>,
    /// The rule ids that ran.
    pub rules: Vec<&'static str>,
    /// False with any finding, and with any environment that could not be read.
    pub clean: bool,
    pub findings: Vec<Finding>,
    /// Environments that could not be read, by credential chain (then exit 5: never clean).
    pub unread: Vec<Unread>,
}

/// Environments one credential chain could not read.
#[derive(Debug, Serialize)]
pub struct Unread {
    pub envs: Vec<String>,
    /// The account id, when the settings name it (a role ARN).
    pub account: Option<String>,
    pub region: String,
    /// How the chain was configured (profile, role, region).
    pub credentials: String,
    pub error: String,
    pub fix: Option<String>,
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
            if !report.unread.is_empty() {
                // The readable environments were reported; the rest is an AWS failure (exit 5).
                let err = unread_error(&report.unread);
                if format == AuditFormat::Json {
                    return Ok(err.exit_code());
                }
                return Err(err);
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
    let fleet = context.aws(&config).await?;
    let results = guard::collect_all(&fleet, &config).await;
    // Nothing read at all: one error, as before there were accounts.
    if results.iter().all(|r| r.is_err()) {
        return Err(results.into_iter().find_map(|r| r.err()).expect("at least one environment"));
    }
    let mut unread: Vec<Unread> = Vec::new();
    let (mut environments, mut facts) = (Vec::new(), Vec::new());
    for (env, result) in config.environments.iter().zip(results) {
        match result {
            Ok(read) => {
                environments.push(env.clone());
                facts.push(read);
            }
            Err(err) => {
                let aws = fleet.of(env);
                let (error, fix) = (err.to_string(), err.fix().map(str::to_owned));
                match unread.iter_mut().find(|u| u.credentials == aws.describe() && u.error == error) {
                    Some(group) => group.envs.push(env.name.clone()),
                    None => unread.push(Unread {
                        envs: vec![env.name.clone()],
                        account: aws.account_hint().map(str::to_owned),
                        region: aws.region().to_owned(),
                        credentials: aws.describe(),
                        error,
                        fix,
                    }),
                }
            }
        }
    }
    let read_focus: Vec<&crate::config::Environment> =
        focus.iter().copied().filter(|e| environments.iter().any(|r| r.name == e.name)).collect();
    let findings = guard::evaluate(&environments, &facts, &selected, &read_focus);
    let accounts = facts
        .iter()
        .map(|f| Location { env: f.env.clone(), account: f.account.clone(), region: f.region.clone() })
        .collect();
    Ok(AuditReport {
        schema: "evoctl.audit/v1",
        region: fleet.of(focus[0]).region().to_owned(),
        environments: focus.iter().map(|e| e.name.clone()).collect(),
        accounts,
        rules: selected.iter().map(|r| r.id).collect(),
        clean: findings.is_empty() && unread.is_empty(),
        findings,
        unread,
    })
}

/// The error for environments that could not be read: each chain's account, environments and
/// failure.
fn unread_error(unread: &[Unread]) -> Error {
    let parts: Vec<String> =
        unread.iter().map(|u| format!("{} in {}: {}", u.envs.join(", "), u.credentials, u.error)).collect();
    let fix = unread.iter().find_map(|u| u.fix.clone()).unwrap_or_else(|| {
        "check that account's credentials (`aws sts get-caller-identity` with the same profile or role)".into()
    });
    Error::Unread {
        message: format!(
            "could not read {} (the other environments were audited; this audit is not clean)",
            parts.join("; ")
        ),
        fix,
    }
}

fn render_table(report: &AuditReport) -> String {
    let scope = format!("{} rules over {}", report.rules.len(), report.environments.join(", "));
    if report.clean {
        return format!("audit clean: {scope}\n");
    }
    // Across accounts or regions each environment is named with where it is.
    let spread = report
        .accounts
        .iter()
        .any(|a| (&a.account, &a.region) != (&report.accounts[0].account, &report.accounts[0].region));
    let envs = |finding: &Finding| -> String {
        if !spread {
            return finding.envs.join(",");
        }
        let named: Vec<String> =
            finding.locations.iter().map(|l| format!("{} ({} {})", l.env, l.account, l.region)).collect();
        named.join(", ")
    };
    let mut out = String::new();
    if !report.findings.is_empty() {
        let rows: Vec<Vec<String>> = report
            .findings
            .iter()
            .map(|f| vec![f.severity.as_str().into(), f.rule.into(), envs(f), f.evidence.clone()])
            .collect();
        out.push_str(&table(&["SEVERITY", "RULE", "ENV", "EVIDENCE"], &rows));
        out.push_str("\nfixes:\n");
        for f in &report.findings {
            out.push_str(&format!("  {} ({}): {}\n", f.rule, f.envs.join(","), f.fix));
        }
        out.push('\n');
    }
    out.push_str(&format!("{} finding(s): {scope}\n", report.findings.len()));
    for unread in &report.unread {
        out.push_str(&format!("not read: {} in {}\n", unread.envs.join(", "), unread.credentials));
    }
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
    let unread = report.unread.iter().map(|u| {
        format!(
            "::error title={}::{}\n",
            escape_property(&format!("evoctl audit could not read {}", u.envs.join(", "))),
            escape_data(&format!("{}: {}", u.credentials, u.error))
        )
    });
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
        .chain(unread)
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
