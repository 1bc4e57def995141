//! Application Auto Scaling and desired-count changes: the reads the guard needs (scheduled
//! actions, scaling policies) and the two writes scaling enforcement makes
//! (RegisterScalableTarget, then UpdateService desiredCount).

use super::discovery::ServiceRef;
use super::sdk_failure;
use crate::error::{Error, Result};
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use serde::Serialize;

/// A scheduled action on the service's scalable target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledAction {
    pub name: String,
    pub schedule: String,
    pub min_capacity: Option<i32>,
    pub max_capacity: Option<i32>,
}

/// Every scheduled action of the service's desired count.
pub async fn scheduled_actions(
    autoscaling: &aws_sdk_applicationautoscaling::Client,
    target: ServiceRef<'_>,
) -> Result<Vec<ScheduledAction>> {
    let actions: Vec<_> = autoscaling
        .describe_scheduled_actions()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(target.resource_id())
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::from(sdk_failure("DescribeScheduledActions", e)))?;
    Ok(actions
        .iter()
        .map(|a| ScheduledAction {
            name: a.scheduled_action_name().to_owned(),
            schedule: a.schedule().to_owned(),
            min_capacity: a.scalable_target_action().and_then(|t| t.min_capacity()),
            max_capacity: a.scalable_target_action().and_then(|t| t.max_capacity()),
        })
        .collect())
}

/// The names of the scaling policies on the service's desired count.
pub async fn scaling_policies(
    autoscaling: &aws_sdk_applicationautoscaling::Client,
    target: ServiceRef<'_>,
) -> Result<Vec<String>> {
    let policies: Vec<_> = autoscaling
        .describe_scaling_policies()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(target.resource_id())
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::from(sdk_failure("DescribeScalingPolicies", e)))?;
    Ok(policies.iter().map(|p| p.policy_name().to_owned()).collect())
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
