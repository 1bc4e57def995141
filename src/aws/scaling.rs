//! Application Auto Scaling and desired-count changes: the reads the guard needs (targets,
//! scheduled actions, scaling policies, batched for many services) and the two writes scaling enforcement makes
//! (RegisterScalableTarget, then UpdateService desiredCount).

use super::discovery::{ScalableRange, ServiceRef};
use super::sdk_failure;
use crate::error::{Error, Result};
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use serde::Serialize;
use std::collections::HashMap;

/// A scheduled action on the service's scalable target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledAction {
    pub name: String,
    pub schedule: String,
    pub min_capacity: Option<i32>,
    pub max_capacity: Option<i32>,
}

/// The Application Auto Scaling side of many services, read in a few calls whatever their
/// number: scalable targets 50 resource ids per call, scheduled actions and scaling policies once
/// for the whole `ecs` namespace (every page), all at the same time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScalingIndex {
    targets: HashMap<String, ScalableRange>,
    actions: HashMap<String, Vec<ScheduledAction>>,
    policies: HashMap<String, Vec<String>>,
}

impl ScalingIndex {
    /// The service's scalable target, if it has one.
    pub fn target(&self, service: ServiceRef<'_>) -> Option<ScalableRange> {
        self.targets.get(&service.resource_id()).copied()
    }

    /// The service's scheduled actions.
    pub fn actions(&self, service: ServiceRef<'_>) -> Vec<ScheduledAction> {
        self.actions.get(&service.resource_id()).cloned().unwrap_or_default()
    }

    /// The names of the service's scaling policies.
    pub fn policies(&self, service: ServiceRef<'_>) -> Vec<String> {
        self.policies.get(&service.resource_id()).cloned().unwrap_or_default()
    }
}

/// DescribeScalableTargets accepts at most this many resource ids per call.
const TARGETS_PER_CALL: usize = 50;

/// The scalable target ranges of `services`, by resource id (50 ids per call, concurrently).
pub async fn ranges(
    autoscaling: &aws_sdk_applicationautoscaling::Client,
    services: &[ServiceRef<'_>],
) -> Result<HashMap<String, ScalableRange>> {
    let ids: Vec<String> = services.iter().map(ServiceRef::resource_id).collect();
    let pages = futures::future::try_join_all(ids.chunks(TARGETS_PER_CALL).map(|chunk| async move {
        autoscaling
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .set_resource_ids(Some(chunk.to_vec()))
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from(sdk_failure("DescribeScalableTargets", e)))
    }))
    .await?;
    Ok(pages
        .into_iter()
        .flatten()
        .map(|t: aws_sdk_applicationautoscaling::types::ScalableTarget| {
            (
                t.resource_id().to_owned(),
                ScalableRange { min_capacity: t.min_capacity(), max_capacity: t.max_capacity() },
            )
        })
        .collect())
}

/// Read the targets, scheduled actions and policies of `services`.
pub async fn index(
    autoscaling: &aws_sdk_applicationautoscaling::Client,
    services: &[ServiceRef<'_>],
) -> Result<ScalingIndex> {
    let ids: Vec<String> = services.iter().map(ServiceRef::resource_id).collect();
    let targets = ranges(autoscaling, services);
    let actions = async {
        autoscaling
            .describe_scheduled_actions()
            .service_namespace(ServiceNamespace::Ecs)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from(sdk_failure("DescribeScheduledActions", e)))
    };
    let policies = async {
        autoscaling
            .describe_scaling_policies()
            .service_namespace(ServiceNamespace::Ecs)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::from(sdk_failure("DescribeScalingPolicies", e)))
    };
    let (targets, actions, policies): (_, Vec<_>, Vec<_>) = tokio::try_join!(targets, actions, policies)?;
    let wanted = |id: &str| ids.iter().any(|w| w == id);
    let mut index = ScalingIndex { targets, ..ScalingIndex::default() };
    for action in actions.into_iter().filter(|a| wanted(a.resource_id())) {
        index.actions.entry(action.resource_id().to_owned()).or_default().push(ScheduledAction {
            name: action.scheduled_action_name().to_owned(),
            schedule: action.schedule().to_owned(),
            min_capacity: action.scalable_target_action().and_then(|t| t.min_capacity()),
            max_capacity: action.scalable_target_action().and_then(|t| t.max_capacity()),
        });
    }
    for policy in policies.into_iter().filter(|p| wanted(p.resource_id())) {
        index.policies.entry(policy.resource_id().to_owned()).or_default().push(policy.policy_name().to_owned());
    }
    Ok(index)
}

/// RegisterScalableTarget with the given range. On an active service this alone clamps the
/// desired count into the range.
pub async fn register_target(
    autoscaling: &aws_sdk_applicationautoscaling::Client,
    target: ServiceRef<'_>,
    min: i32,
    max: i32,
) -> Result<()> {
    autoscaling
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(target.resource_id())
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .min_capacity(min)
        .max_capacity(max)
        .send()
        .await
        .map_err(|e| Error::from(sdk_failure("RegisterScalableTarget", e)))?;
    Ok(())
}

/// UpdateService with a new desired count (nothing else changes).
pub async fn set_desired_count(ecs: &aws_sdk_ecs::Client, target: ServiceRef<'_>, desired: i32) -> Result<()> {
    ecs.update_service()
        .cluster(target.cluster)
        .service(target.service)
        .desired_count(desired)
        .send()
        .await
        .map_err(|e| Error::from(sdk_failure("UpdateService", e)))?;
    Ok(())
}
