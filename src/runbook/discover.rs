//! `evoctl init --discover`: find the ECS services that run Evolution API in the given
//! profiles and regions and describe them as `evoctl.toml` environments. Read-only.
//!
//! Per credential chain: ListClusters, ListServices and DescribeServices (with tags),
//! DescribeClusters (tags), DescribeTaskDefinition, DescribeScalableTargets, and Lambda's
//! ListFunctions/ListTags for the app function of each stage. A service runs Evolution when a
//! container's image is `*evolution-api*`, or the container is named like the `[service]`
//! default, or it carries Evolution's own variables. Environments are named after SST's
//! `sst:stage` tag (service, then cluster), else the cluster. The instance name comes from the
//! app Lambda of the same stage, else from Evolution itself when it reports exactly one
//! (fetchInstances, a read, over one exec session); what cannot be decided is left as a
//! commented `# TODO`, never guessed.
//!
//! Where each profile is read ([`places`]): in every `--discover-region`, else in `--region`
//! (an explicit choice for this command, as `aws --region` overrides a profile's region), else
//! in the profile's own `region` from the AWS config file (resolved as the SDK resolves it,
//! following `source_profile`), else in `AWS_REGION` / `AWS_DEFAULT_REGION`. The AWS CLI ranks
//! those two variables above a profile's `region`; discovery does not, because it is asked to
//! look in several accounts at once and one shell-wide region would hide every account
//! configured elsewhere (each written environment then names its region, so nothing later
//! depends on the variable). When the variable and a profile's region differ, a note says which
//! was used. Without a named profile the SDK's own order applies.
//!
//! What was found is checked before it is written ([`warnings`]): no environment named like
//! production, or two environments that would be live together on the one number the file gives
//! them all, is a warning on stderr and in the file's header.

use crate::aws::credentials::{NamedBy, ProfileNamedBy};
use crate::aws::discovery::{ScalableRange, ServiceRef};
use crate::aws::{Aws, AwsSettings, scaling, sdk_failure};
use crate::env_vars::EnvVars;
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;

/// The container name SST gives the component by default (and evoctl's `[service]` default).
const DEFAULT_CONTAINER: &str = "EvolutionService";
/// Variables only an Evolution API container has.
const EVOLUTION_VARS: &[&str] =
    &["AUTHENTICATION_API_KEY", "CONFIG_SESSION_PHONE_CLIENT", "DATABASE_CONNECTION_CLIENT_NAME"];
/// SST's stage tag.
const STAGE_TAG: &str = "sst:stage";

/// One Evolution service found.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The environment name it gets.
    pub name: String,
    pub stage: Option<String>,
    pub account: String,
    pub region: String,
    /// The profile it was found with (None: the default chain).
    pub profile: Option<String>,
    pub cluster: String,
    pub service: String,
    pub container: String,
    pub image: String,
    /// From the app Lambda tagged with the same stage (its EVOLUTION_INSTANCE_NAME), else the one
    /// instance Evolution itself reports.
    pub instance: Option<String>,
    pub lambda: Option<String>,
    /// Where `instance` came from, or why there is none (for the config's comment).
    pub instance_note: String,
    pub scaling: Option<ScalableRange>,
    /// The service's desiredCount now.
    pub desired_count: i32,
    pub protected: bool,
}

/// Everything one chain holds: its Evolution services, and notes on what it had not.
pub struct Scan {
    pub found: Vec<Found>,
    pub notes: Vec<String>,
}

/// Look for Evolution services with one chain.
pub async fn scan(aws: &Aws) -> Result<Scan> {
    let ecs = aws.ecs();
    let where_ = aws.describe();
    let clusters: Vec<String> = ecs
        .list_clusters()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::from(sdk_failure("ListClusters", e)))?;
    let mut notes = Vec::new();
    if clusters.is_empty() {
        notes.push(format!("no ECS cluster in {where_}"));
        return Ok(Scan { found: Vec::new(), notes });
    }
    // Independent reads at once: the clusters' tags and services, then every service's task
    // definition beside the app functions.
    let (cluster_tags, per_cluster) = tokio::try_join!(
        cluster_tags(&ecs, &clusters),
        futures::future::try_join_all(clusters.iter().map(|arn| services_of(&ecs, arn))),
    )?;
    let services: Vec<(&String, ServiceFound)> = clusters
        .iter()
        .zip(per_cluster)
        .flat_map(|(arn, services)| services.into_iter().map(move |s| (arn, s)))
        .collect();
    let (definitions, apps) = tokio::try_join!(
        futures::future::try_join_all(services.iter().map(|(_, s)| evolution_container(&ecs, &s.task_definition))),
        app_functions(aws),
    )?;
    let mut found = Vec::new();
    for ((cluster_arn, service), container) in services.into_iter().zip(definitions) {
        let Some((container, image)) = container else { continue };
        let cluster = short(cluster_arn).to_owned();
        let stage = service.tags.get(STAGE_TAG).or_else(|| cluster_tags.get(cluster_arn)?.get(STAGE_TAG)).cloned();
        found.push(Found {
            name: String::new(),
            protected: is_production(stage.as_deref().unwrap_or(&cluster)),
            stage,
            account: account_of(&service.arn).unwrap_or_else(|| aws.account_hint().unwrap_or_default().to_owned()),
            region: aws.region().to_owned(),
            profile: aws.profile().map(str::to_owned),
            cluster,
            service: service.name,
            container,
            image,
            instance: None,
            lambda: None,
            instance_note: String::new(),
            scaling: None,
            desired_count: service.desired_count,
        });
    }
    if found.is_empty() {
        notes.push(format!("no Evolution API service in {} cluster(s) of {where_}", clusters.len()));
        return Ok(Scan { found, notes });
    }
    let refs: Vec<ServiceRef<'_>> =
        found.iter().map(|f| ServiceRef { cluster: &f.cluster, service: &f.service }).collect();
    let autoscaling = aws.autoscaling();
    let ranges = scaling::ranges(&autoscaling, &refs).await?;
    let ranges: Vec<Option<ScalableRange>> = refs.iter().map(|r| ranges.get(&r.resource_id()).copied()).collect();
    for (found, range) in found.iter_mut().zip(ranges) {
        found.scaling = range;
        if let Some((lambda, instance)) = found.stage.as_ref().and_then(|stage| apps.get(stage)) {
            found.lambda = Some(lambda.clone());
            found.instance = Some(instance.clone());
            found.instance_note = format!("EVOLUTION_INSTANCE_NAME of the app Lambda {lambda}");
        }
    }
    // No app Lambda says: ask Evolution itself (fetchInstances, a read, over one exec session).
    let asked = futures::future::join_all(
        found
            .iter()
            .map(|f| async move { if f.instance.is_some() { None } else { Some(reported_instance(aws, f).await) } }),
    )
    .await;
    for (found, answer) in found.iter_mut().zip(asked) {
        match answer {
            Some(Ok(name)) => {
                found.instance_note = "the one instance Evolution reports".into();
                found.instance = Some(name);
            }
            Some(Err(why)) => found.instance_note = why,
            None => {}
        }
    }
    Ok(Scan { found, notes })
}

struct ServiceFound {
    arn: String,
    name: String,
    task_definition: String,
    desired_count: i32,
    tags: HashMap<String, String>,
}

async fn services_of(ecs: &aws_sdk_ecs::Client, cluster: &str) -> Result<Vec<ServiceFound>> {
    let arns: Vec<String> = ecs
        .list_services()
        .cluster(cluster)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::from(sdk_failure("ListServices", e)))?;
    let pages = futures::future::try_join_all(arns.chunks(10).map(|chunk| async move {
        ecs.describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .include(aws_sdk_ecs::types::ServiceField::Tags)
            .send()
            .await
            .map_err(|e| Error::from(sdk_failure("DescribeServices", e)))
    }))
    .await?;
    Ok(pages
        .iter()
        .flat_map(|page| page.services())
        .filter(|s| s.status() == Some("ACTIVE"))
        .map(|s| ServiceFound {
            arn: s.service_arn().unwrap_or_default().to_owned(),
            name: s.service_name().unwrap_or_default().to_owned(),
            task_definition: s.task_definition().unwrap_or_default().to_owned(),
            desired_count: s.desired_count(),
            tags: tag_map(s.tags()),
        })
        .collect())
}

async fn cluster_tags(
    ecs: &aws_sdk_ecs::Client,
    clusters: &[String],
) -> Result<HashMap<String, HashMap<String, String>>> {
    let pages = futures::future::try_join_all(clusters.chunks(100).map(|chunk| async move {
        ecs.describe_clusters()
            .set_clusters(Some(chunk.to_vec()))
            .include(aws_sdk_ecs::types::ClusterField::Tags)
            .send()
            .await
            .map_err(|e| Error::from(sdk_failure("DescribeClusters", e)))
    }))
    .await?;
    Ok(pages
        .iter()
        .flat_map(|page| page.clusters())
        .map(|c| (c.cluster_arn().unwrap_or_default().to_owned(), tag_map(c.tags())))
        .collect())
}

fn tag_map(tags: &[aws_sdk_ecs::types::Tag]) -> HashMap<String, String> {
    tags.iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))).collect()
}

/// The task definition's Evolution container (name, image), if it has one.
async fn evolution_container(ecs: &aws_sdk_ecs::Client, definition: &str) -> Result<Option<(String, String)>> {
    if definition.is_empty() {
        return Ok(None);
    }
    let out = ecs
        .describe_task_definition()
        .task_definition(definition)
        .send()
        .await
        .map_err(|e| Error::from(sdk_failure("DescribeTaskDefinition", e)))?;
    let containers = out.task_definition().map(|d| d.container_definitions()).unwrap_or_default();
    let is_evolution = |c: &&aws_sdk_ecs::types::ContainerDefinition| {
        c.image().is_some_and(|image| image.contains("evolution-api"))
            || c.name() == Some(DEFAULT_CONTAINER)
            || c.environment().iter().filter(|v| v.name().is_some_and(|n| EVOLUTION_VARS.contains(&n))).count() >= 2
    };
    Ok(containers
        .iter()
        .find(is_evolution)
        .map(|c| (c.name().unwrap_or_default().to_owned(), c.image().unwrap_or_default().to_owned())))
}

/// The app functions by stage: (function name, its EVOLUTION_INSTANCE_NAME), for functions
/// that set the variable and carry an `sst:stage` tag.
async fn app_functions(aws: &Aws) -> Result<HashMap<String, (String, String)>> {
    let lambda = aws.lambda();
    let functions: Vec<aws_sdk_lambda::types::FunctionConfiguration> = lambda
        .list_functions()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::from(sdk_failure("ListFunctions", e)))?;
    let candidates: Vec<(String, String, String)> = functions
        .iter()
        .filter_map(|f| {
            let instance = f.environment()?.variables()?.get("EVOLUTION_INSTANCE_NAME")?.clone();
            Some((f.function_name()?.to_owned(), f.function_arn()?.to_owned(), instance))
        })
        .collect();
    let tags =
        futures::future::try_join_all(
            candidates.iter().map(|(_, arn, _)| {
                let lambda = lambda.clone();
                async move {
                    lambda.list_tags().resource(arn).send().await.map_err(|e| Error::from(sdk_failure("ListTags", e)))
                }
            }),
        )
        .await?;
    Ok(candidates
        .into_iter()
        .zip(tags)
        .filter_map(|((name, _, instance), tags)| Some((tags.tags()?.get(STAGE_TAG)?.clone(), (name, instance))))
        .collect())
}

/// The one instance the service's Evolution reports, or why there is none to take.
async fn reported_instance(aws: &Aws, found: &Found) -> std::result::Result<String, String> {
    let env = crate::config::Environment {
        name: found.cluster.clone(),
        cluster: found.cluster.clone(),
        service: found.service.clone(),
        container: found.container.clone(),
        instance: String::new(),
        scaling: None,
        protected: false,
        number: crate::config::SHARED_NUMBER.into(),
        webhook: None,
        app: None,
        aws: Default::default(),
    };
    let no_lambda = format!(
        "no app Lambda tagged {STAGE_TAG} = {} sets EVOLUTION_INSTANCE_NAME",
        found.stage.as_deref().unwrap_or("(no stage tag)")
    );
    let target = crate::exec::target::resolve_any(&aws.ecs(), &env)
        .await
        .map_err(|e| format!("{no_lambda}, and Evolution could not be asked ({e})"))?;
    let driver = crate::evolution::Driver {
        aws,
        target: &target,
        options: crate::exec::run::RunOptions::new(std::time::Duration::from_secs(60)),
    };
    let instances = driver
        .fetch_instances(None)
        .await
        .map_err(|e| format!("{no_lambda}, and Evolution could not be asked ({e})"))?;
    match instances.as_slice() {
        [one] => Ok(one.name.clone()),
        [] => Err(format!("{no_lambda}, and Evolution reports no instance yet")),
        many => Err(format!(
            "{no_lambda}, and Evolution reports {} instances ({})",
            many.len(),
            many.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// A stage named like production is protected.
fn is_production(stage: &str) -> bool {
    let stage = stage.to_ascii_lowercase();
    stage.contains("prod") || stage == "live"
}

fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn account_of(arn: &str) -> Option<String> {
    arn.split(':').nth(4).filter(|a| a.len() == 12).map(str::to_owned)
}

/// The credential chains discovery reads, and notes on the regions chosen.
pub struct Places {
    pub chains: Vec<AwsSettings>,
    pub notes: Vec<String>,
}

/// Each profile (`None`: the default chain; the others named by `named_by`) with the region(s) it
/// is read in; see the module documentation for the order.
pub async fn places(
    profiles: &[Option<String>],
    named_by: &NamedBy,
    discover_regions: &[String],
    region_flag: Option<&str>,
) -> Places {
    let chosen: Vec<String> = match discover_regions.is_empty() {
        false => discover_regions.to_vec(),
        true => region_flag.map(str::to_owned).into_iter().collect(),
    };
    let environment = [EnvVars::AWS_REGION, EnvVars::AWS_DEFAULT_REGION]
        .into_iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()).map(|value| (var, value)));
    let (mut chains, mut notes) = (Vec::new(), Vec::new());
    for profile in profiles {
        let chain = |region: Option<String>| AwsSettings {
            profile: profile.clone(),
            profile_named_by: ProfileNamedBy(Some(named_by.clone())),
            region,
            ..AwsSettings::default()
        };
        if !chosen.is_empty() {
            chains.extend(chosen.iter().map(|region| chain(Some(region.clone()))));
            continue;
        }
        let own = match profile {
            Some(name) => profile_region(name).await,
            None => None,
        };
        if let (Some(name), Some(own), Some((var, value))) = (profile, &own, &environment)
            && own != value
        {
            notes.push(format!(
                "profile {name}: looking in {own}, its own region ({var}={value} is for profiles without one; --discover-region chooses)"
            ));
        }
        chains.push(chain(own));
    }
    Places { chains, notes }
}

/// A profile's own region from the AWS config file, as the SDK resolves it (a profile without one
/// takes its `source_profile`'s).
async fn profile_region(profile: &str) -> Option<String> {
    use aws_config::meta::region::ProvideRegion;
    let provider = aws_config::profile::ProfileFileRegionProvider::builder().profile_name(profile).build();
    ProvideRegion::region(&provider).await.map(|region| region.to_string())
}

/// What is wrong with the set of environments found, as one line each: no environment named like
/// production (nothing would be protected), and environments that would be live together on the
/// one number the written file gives them all (the audit's `one-live-env` would fail).
pub fn warnings(found: &[Found]) -> Vec<String> {
    let mut warnings = Vec::new();
    if !found.iter().any(|f| f.protected) {
        warnings.push(format!(
            "no production environment found: none of {} is named like production (a stage or cluster with `prod`, or `live`), so none is marked protected; if one of them serves the live number, set `protected = true` on it, or look in its account with --discover-profile",
            names(found.iter())
        ));
    }
    let always_on: Vec<&Found> = found.iter().filter(|f| f.scaling.is_some_and(|r| r.min_capacity > 0)).collect();
    let running: Vec<&Found> = found.iter().filter(|f| f.desired_count > 0).collect();
    for (group, how) in [(always_on, "have scaling min > 0"), (running, "have desiredCount > 0 now")] {
        if group.len() > 1 {
            warnings.push(format!(
                "{} {how}: on one WhatsApp number they would be live together (the audit's one-live-env fails); scale all but one to 0, or give environments on different numbers their own `number`",
                names(group.into_iter())
            ));
        }
    }
    warnings
}

fn names<'a>(found: impl Iterator<Item = &'a Found>) -> String {
    found.map(|f| f.name.as_str()).collect::<Vec<_>>().join(" and ")
}

/// Give each service its environment name: the stage (else the cluster), made a valid name;
/// a name taken twice gets its account (then region) appended.
pub fn name_all(found: &mut [Found]) {
    let base = |f: &Found| -> String {
        let raw = f.stage.clone().unwrap_or_else(|| f.cluster.clone());
        let cleaned: String = raw
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
            .take(40)
            .collect();
        if cleaned.is_empty() { "env".into() } else { cleaned }
    };
    let names: Vec<String> = found.iter().map(base).collect();
    for (index, f) in found.iter_mut().enumerate() {
        let clashes = names.iter().filter(|n| **n == names[index]).count() > 1;
        f.name = if clashes { format!("{}-{}-{}", names[index], f.account, f.region) } else { names[index].clone() };
    }
}

/// The commented `evoctl.toml` for what was found, `warnings` in its header. `per_env_aws`: write
/// each environment's profile and region (several were scanned); otherwise `region` goes under
/// `[aws]`.
pub fn render(found: &[Found], sources: &[String], warnings: &[String], per_env_aws: bool) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut out = String::new();
    out.push_str("# evoctl.toml written by `evoctl init --discover` from what AWS holds now:\n");
    for source in sources {
        out.push_str(&format!("#   {source}\n"));
    }
    for warning in warnings {
        out.push_str(&format!("# WARNING: {warning}\n"));
    }
    out.push_str(
        "# Review it. WhatsApp allows ONE live connection per number: every environment that shares a\n\
         # number with production must stay at 0 tasks (scaling 0/0), production at exactly 1 (1/1).\n",
    );
    if !per_env_aws && let Some(first) = found.first() {
        out.push_str(&format!("\n[aws]\nregion = {}\n", quote(&first.region)));
        if let Some(profile) = &first.profile {
            out.push_str(&format!("profile = {}\n", quote(profile)));
        }
    }
    for f in found {
        out.push_str(&format!("\n[env.{}]\n", f.name));
        let stage = f.stage.as_deref().map(|s| format!(", {STAGE_TAG} = {s}")).unwrap_or_default();
        out.push_str(&format!("# {} in account {} ({}{stage}), image {}\n", f.service, f.account, f.region, f.image));
        out.push_str(&format!("cluster = {}\n", quote(&f.cluster)));
        out.push_str(&format!("service = {}\n", quote(&f.service)));
        out.push_str(&format!("container = {}\n", quote(&f.container)));
        match &f.instance {
            Some(instance) => out.push_str(&format!("instance = {}  # {}\n", quote(instance), f.instance_note)),
            None => out.push_str(&format!(
                "# TODO instance: {}; set the Evolution instance name (default: {})\n",
                if f.instance_note.is_empty() { "not found" } else { &f.instance_note },
                f.name
            )),
        }
        match f.scaling {
            Some(range) => out.push_str(&format!(
                "scaling = {{ min = {}, max = {} }}  # the scalable target now: check it is what this environment should have\n",
                range.min_capacity.max(0),
                range.max_capacity.max(0)
            )),
            None => out.push_str(
                "# TODO scaling: the service has no scalable target; say what it must be, e.g. scaling = { min = 0, max = 0 }\n",
            ),
        }
        if f.protected {
            out.push_str("protected = true  # named like production: destructive commands need --yes\n");
        }
        if per_env_aws {
            let mut keys = Vec::new();
            if let Some(profile) = &f.profile {
                keys.push(format!("profile = {}", quote(profile)));
            }
            keys.push(format!("region = {}", quote(&f.region)));
            out.push_str(&format!("aws = {{ {} }}\n", keys.join(", ")));
        }
        if let Some(lambda) = &f.lambda {
            out.push_str(&format!(
                "# [env.{}.app]\n# lambda = {}\n# expect = {{ EVOLUTION_INSTANCE_NAME = {} }}\n",
                f.name,
                quote(lambda),
                quote(f.instance.as_deref().unwrap_or_default())
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(stage: Option<&str>, cluster: &str, account: &str) -> Found {
        Found {
            name: String::new(),
            stage: stage.map(str::to_owned),
            account: account.into(),
            region: "us-east-1".into(),
            profile: None,
            cluster: cluster.into(),
            service: "EvolutionService".into(),
            container: "EvolutionService".into(),
            image: "evoapicloud/evolution-api:v2.3.7".into(),
            instance: None,
            lambda: None,
            instance_note: "no app Lambda tagged sst:stage = staging sets EVOLUTION_INSTANCE_NAME".into(),
            scaling: None,
            desired_count: 0,
            protected: false,
        }
    }

    #[test]
    fn names_come_from_the_stage_and_clashes_get_the_account() {
        let mut all = [
            found(Some("staging"), "a", "111111111111"),
            found(None, "my cluster", "111111111111"),
            found(Some("dev"), "b", "111111111111"),
            found(Some("dev"), "c", "222222222222"),
        ];
        name_all(&mut all);
        let names: Vec<&str> = all.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["staging", "my-cluster", "dev-111111111111-us-east-1", "dev-222222222222-us-east-1"]);
        assert!(is_production("production") && is_production("Prod-eu") && !is_production("staging"));
    }

    #[test]
    fn what_cannot_be_decided_is_a_todo_and_the_text_is_a_valid_config() {
        let mut all = [found(Some("staging"), "alinhou-staging", "111111111111")];
        name_all(&mut all);
        let text = render(&all, &["the default credential chain, us-east-1".into()], &[], false);
        assert!(
            text.contains("\n# TODO instance: no app Lambda tagged sst:stage = staging sets EVOLUTION_INSTANCE_NAME"),
            "{text}"
        );
        assert!(text.contains("\n# TODO scaling: the service has no scalable target"), "{text}");
        let config = crate::config::Config::parse(std::path::Path::new("x.toml"), &text).unwrap();
        assert_eq!(config.environment("staging").unwrap().instance, "staging");
    }
}
