//! Application Auto Scaling (AWS JSON 1.1, `AnyScaleFrontendService`): scalable targets with
//! the clamping rule (registering a range moves desiredCount into it at once), scheduled
//! actions and scaling policies.

use super::{ActionResult, ApiError, epoch, list, required, text};
use crate::state::{Account, ScalableTarget};
use serde_json::{Value, json};

const DIMENSION: &str = "ecs:service:DesiredCount";

pub fn handle(account: &mut Account, action: &str, params: &Value, now: u64) -> ActionResult {
    match action {
        "DescribeScalableTargets" => describe_scalable_targets(account, params),
        "RegisterScalableTarget" => register_scalable_target(account, params, now),
        "DescribeScheduledActions" => describe_scheduled_actions(account, params),
        "DescribeScalingPolicies" => {
            namespace(params)?;
            Ok(json!({"ScalingPolicies": []}))
        }
        _ => Err(ApiError::client("InvalidAction", format!("The action {action} is not valid for this web service."))),
    }
}

fn namespace(params: &Value) -> Result<(), ApiError> {
    let namespace = required(params, "ServiceNamespace", "ValidationException")?;
    if namespace != "ecs" {
        return Err(ApiError::client(
            "ValidationException",
            format!(
                "1 validation error detected: Value '{namespace}' at 'serviceNamespace' is not supported by the lab (only ecs)"
            ),
        ));
    }
    Ok(())
}

fn target_arn(account: &Account, target: &ScalableTarget) -> String {
    let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(target.resource_id.as_bytes()));
    format!(
        "arn:aws:application-autoscaling:{}:{}:scalable-target/0ec5{}",
        account.region,
        account.account,
        &hex::encode(digest)[..28]
    )
}

fn describe_scalable_targets(account: &Account, params: &Value) -> ActionResult {
    namespace(params)?;
    let ids = list(params, "ResourceIds");
    let dimension = text(params, "ScalableDimension");
    let targets: Vec<Value> = account
        .scalable_targets
        .values()
        .filter(|t| ids.is_empty() || ids.contains(&t.resource_id))
        .filter(|_| dimension.is_none_or(|d| d == DIMENSION))
        .map(|t| {
            json!({
                "ServiceNamespace": "ecs",
                "ResourceId": t.resource_id,
                "ScalableDimension": DIMENSION,
                "MinCapacity": t.min,
                "MaxCapacity": t.max,
                "RoleARN": format!("arn:aws:iam::{}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService", account.account),
                "CreationTime": epoch(t.created_ms),
                "SuspendedState": {
                    "DynamicScalingInSuspended": t.suspended[0],
                    "DynamicScalingOutSuspended": t.suspended[1],
                    "ScheduledScalingSuspended": t.suspended[2],
                },
                "ScalableTargetARN": target_arn(account, t),
            })
        })
        .collect();
    Ok(json!({"ScalableTargets": targets}))
}

fn register_scalable_target(account: &mut Account, params: &Value, now: u64) -> ActionResult {
    namespace(params)?;
    let resource_id = required(params, "ResourceId", "ValidationException")?.to_owned();
    let dimension = required(params, "ScalableDimension", "ValidationException")?;
    if dimension != DIMENSION {
        return Err(ApiError::client("ValidationException", format!("Unsupported scalable dimension {dimension}")));
    }
    let service_exists = resource_id
        .strip_prefix("service/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(cluster, name)| account.service_index(cluster, name).is_some());
    if !service_exists {
        return Err(ApiError::client("ValidationException", format!("ECS service doesn't exist: {resource_id}")));
    }
    let min = params.get("MinCapacity").and_then(Value::as_i64).map(|v| v as i32);
    let max = params.get("MaxCapacity").and_then(Value::as_i64).map(|v| v as i32);
    let existing = account.scalable_targets.get(&resource_id).cloned();
    let (min, max) = match (&existing, min, max) {
        (None, Some(min), Some(max)) => (min, max),
        (None, _, _) => {
            return Err(ApiError::client(
                "ValidationException",
                "MinCapacity and MaxCapacity are required when registering a new scalable target",
            ));
        }
        (Some(current), min, max) => (min.unwrap_or(current.min), max.unwrap_or(current.max)),
    };
    if min < 0 || max < 0 {
        return Err(ApiError::client("ValidationException", "Capacity values must be non-negative"));
    }
    if min > max {
        return Err(ApiError::client(
            "ValidationException",
            "Minimum capacity cannot be greater than maximum capacity",
        ));
    }
    let mut suspended = existing.as_ref().map(|t| t.suspended).unwrap_or([false; 3]);
    if let Some(state) = params.get("SuspendedState") {
        for (slot, key) in
            ["DynamicScalingInSuspended", "DynamicScalingOutSuspended", "ScheduledScalingSuspended"].iter().enumerate()
        {
            if let Some(flag) = state.get(key).and_then(Value::as_bool) {
                suspended[slot] = flag;
            }
        }
    }
    let created_ms = existing.map(|t| t.created_ms).unwrap_or(now);
    let target = ScalableTarget { resource_id: resource_id.clone(), min, max, suspended, created_ms };
    let arn = target_arn(account, &target);
    account.scalable_targets.insert(resource_id.clone(), target);
    account.clamp_desired(&resource_id);
    Ok(json!({"ScalableTargetARN": arn}))
}

fn describe_scheduled_actions(account: &Account, params: &Value) -> ActionResult {
    namespace(params)?;
    let resource = text(params, "ResourceId");
    let names = list(params, "ScheduledActionNames");
    let actions: Vec<Value> = account
        .scheduled_actions
        .iter()
        .filter(|a| resource.is_none_or(|r| r == a.resource_id))
        .filter(|a| names.is_empty() || names.contains(&a.name))
        .map(|a| {
            let mut target_action = json!({});
            if let Some(min) = a.min {
                target_action["MinCapacity"] = json!(min);
            }
            if let Some(max) = a.max {
                target_action["MaxCapacity"] = json!(max);
            }
            json!({
                "ScheduledActionName": a.name,
                "ScheduledActionARN": format!("arn:aws:autoscaling:{}:{}:scheduledAction:lab:resource/ecs/{}:scheduledActionName/{}", account.region, account.account, a.resource_id, a.name),
                "ServiceNamespace": "ecs",
                "Schedule": a.schedule,
                "Timezone": "UTC",
                "ResourceId": a.resource_id,
                "ScalableDimension": DIMENSION,
                "ScalableTargetAction": target_action,
                "CreationTime": epoch(0),
            })
        })
        .collect();
    Ok(json!({"ScheduledActions": actions}))
}
