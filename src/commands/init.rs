//! `evoctl init`: write the commented starter config, or with `--discover` one describing the
//! Evolution API services found in the given profiles, each in its own region unless regions are
//! given (read-only: nothing in AWS changes; an existing file is kept unless `--force`;
//! `--dry-run` prints instead). What the found set breaks (no production environment, two that
//! would be live together) is a warning on stderr and in the written file's header.

use super::Context;
use crate::aws::Aws;
use crate::aws::credentials::{self, NamedBy};
use crate::cli::InitArgs;
use crate::config::{self, Config, DEFAULT_FILE};
use crate::error::{Error, Result};
use crate::exit;
use crate::runbook::discover::{self, Found};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Serialize)]
struct Written {
    schema: &'static str,
    written: PathBuf,
}

/// `init --discover`'s JSON document.
#[derive(Serialize)]
struct Discovered<'a> {
    schema: &'static str,
    /// Null with --dry-run.
    written: Option<&'a Path>,
    environments: &'a [Found],
    notes: &'a [String],
    /// What the found set breaks (also in the config's header).
    warnings: &'a [String],
    config: &'a str,
}

pub async fn run(context: &Context, args: &InitArgs) -> Result<u8> {
    let path = context.global.config.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
    if args.discover {
        return discover(context, args, &path).await;
    }
    config::write_starter(&path, args.force)?;
    let report = Written { schema: "evoctl.init/v1", written: path };
    context.printer.data(&report, || {
        format!("wrote {} (staging 0/0, production 1/1); edit it, then run `evoctl status`", report.written.display())
    });
    Ok(exit::OK)
}

async fn discover(context: &Context, args: &InitArgs, path: &Path) -> Result<u8> {
    // Refused before any AWS call: never a partial or replaced file by accident.
    if !args.dry_run && path.exists() && !args.force {
        return Err(Error::usage(
            format!("{} already exists; not overwriting it", path.display()),
            "pass --force to replace it, --dry-run to print the discovered config, or --config to write elsewhere",
        ));
    }
    let (profiles, named_by): (Vec<Option<String>>, _) = match args.discover_profiles.is_empty() {
        true => (vec![context.global.profile.clone()], NamedBy::Flag("--profile")),
        false => (args.discover_profiles.iter().cloned().map(Some).collect(), NamedBy::Flag("--discover-profile")),
    };
    let named: Vec<(String, NamedBy)> =
        profiles.iter().flatten().map(|name| (name.clone(), named_by.clone())).collect();
    credentials::check_profiles(&named).await?;
    let places = discover::places(&profiles, &named_by, &args.discover_regions, context.global.region.as_deref()).await;
    for note in &places.notes {
        context.printer.note(note);
    }
    let loaded = futures::future::try_join_all(places.chains.iter().map(Aws::load)).await?;
    context.printer.note(&format!("looking for Evolution API services in {} place(s)…", loaded.len()));
    let scans = futures::future::join_all(loaded.iter().map(discover::scan)).await;
    let (mut found, mut notes, mut sources) = (Vec::<Found>::new(), places.notes, Vec::new());
    let shown = notes.len();
    for (aws, scan) in loaded.iter().zip(scans) {
        let scan = scan.map_err(|err| match err {
            Error::Aws { action, code, message, fix } => {
                Error::Aws { action: format!("{action} (in {})", aws.describe()), code, message, fix }
            }
            other => other,
        })?;
        sources.push(aws.describe());
        notes.extend(scan.notes);
        for service in scan.found {
            let same = |f: &Found| {
                (&f.account, &f.region, &f.cluster, &f.service)
                    == (&service.account, &service.region, &service.cluster, &service.service)
            };
            if !found.iter().any(same) {
                found.push(service);
            }
        }
    }
    for note in &notes[shown..] {
        context.printer.note(note);
    }
    if found.is_empty() {
        return Err(Error::not_found(
            format!("no Evolution API service found in: {}", sources.join("; ")),
            "look elsewhere with --discover-profile NAME and --discover-region REGION (repeatable), or write the file by hand: `evoctl init`",
        ));
    }
    discover::name_all(&mut found);
    let warnings = discover::warnings(&found);
    for warning in &warnings {
        context.printer.warn(warning);
    }
    let places: Vec<(&Option<String>, &String)> = found.iter().map(|f| (&f.profile, &f.region)).collect();
    let per_env_aws = places.iter().any(|p| *p != places[0]);
    let text = discover::render(&found, &sources, &warnings, per_env_aws);
    // What is written must load as it is.
    Config::parse(path, &text).map_err(|err| Error::Usage {
        message: format!("the discovered config does not load ({err}); nothing was written"),
        fix: Some("report this with the output of `evoctl init --discover --dry-run`".into()),
    })?;
    let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
    if args.dry_run {
        let report = Discovered {
            schema: "evoctl.init/v1",
            written: None,
            environments: &found,
            notes: &notes,
            warnings: &warnings,
            config: &text,
        };
        context.printer.data(&report, || text.clone());
        return Ok(exit::OK);
    }
    write_atomically(path, &text)?;
    let report = Discovered {
        schema: "evoctl.init/v1",
        written: Some(path),
        environments: &found,
        notes: &notes,
        warnings: &warnings,
        config: &text,
    };
    context.printer.data(&report, || {
        format!(
            "wrote {} with {} environment(s): {}; review its TODO lines, then run `evoctl status` and `evoctl audit`\n",
            path.display(),
            found.len(),
            names.join(", ")
        )
    });
    Ok(exit::OK)
}

/// Write via a temporary file beside it and rename: readers never see half a file.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let temporary = path.with_extension("toml.partial");
    std::fs::write(&temporary, text).map_err(|source| Error::Io { path: temporary.clone(), source })?;
    std::fs::rename(&temporary, path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}
