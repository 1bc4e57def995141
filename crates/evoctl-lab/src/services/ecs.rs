//! Amazon ECS (AWS JSON 1.1, `AmazonEC2ContainerServiceV20141113`): clusters, services, tasks and
//! task definitions, with the response shapes and error codes of the real API.

use super::{ActionResult, ApiError, epoch, list, page, required, text};
use crate::state::{Account, Service, Task};
use serde_json::{Value, json};

pub fn handle(account: &mut Account, action: &str, params: &Value, now: u64) -> ActionResult {
    match action {
        "ListClusters" => Ok(json!({
            "clusterArns": account.clusters.keys().map(|n| account.arn("cluster", n)).collect::<Vec<_>>()
        })),
        "DescribeClusters" => describe_clusters(account, params),
        "ListServices" => list_services(account, params),
        "DescribeServices" => describe_services(account, params),
        "UpdateService" => update_service(account, params, now),
        "ListTasks" => list_tasks(account, params),
        "DescribeTasks" => describe_tasks(account, params),
        "StopTask" => stop_task(account, params, now),
        "DescribeTaskDefinition" => describe_task_definition(account, params),
        _ => Err(ApiError::client("InvalidAction", format!("The action {action} is not valid for this web service."))),
    }
}

fn cluster<'a>(account: &'a Account, params: &Value) -> Result<&'a str, ApiError> {
    let name = Account::cluster_name(text(params, "cluster").unwrap_or("default"));
    account
        .clusters
        .get_key_value(name)
        .map(|(k, _)| k.as_str())
        .ok_or_else(|| ApiError::client("ClusterNotFoundException", "Cluster not found."))
}

fn describe_clusters(account: &Account, params: &Value) -> ActionResult {
    let wanted = list(params, "clusters");
    let wanted = if wanted.is_empty() { vec!["default".to_owned()] } else { wanted };
    let include = list(params, "include");
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for reference in wanted {
        let name = Account::cluster_name(&reference);
        let Some(cluster) = account.clusters.get(name) else {
            failures.push(json!({"arn": account.arn("cluster", name), "reason": "MISSING"}));
            continue;
        };
        let live = |status: &str| {
            account.tasks.iter().filter(|t| t.cluster == cluster.name && t.last_status == status).count()
        };
        let mut entry = json!({
            "clusterArn": account.arn("cluster", &cluster.name),
            "clusterName": cluster.name,
            "status": "ACTIVE",
            "registeredContainerInstancesCount": 0,
            "runningTasksCount": live("RUNNING"),
            "pendingTasksCount": live("PENDING") + live("PROVISIONING"),
            "activeServicesCount": account.services.iter().filter(|s| s.cluster == cluster.name).count(),
            "statistics": [],
            "settings": [{"name": "containerInsights", "value": "disabled"}],
            "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
            "defaultCapacityProviderStrategy": [],
        });
        if include.iter().any(|i| i == "TAGS") {
            entry["tags"] = tags(&cluster.tags);
        }
        if include.iter().any(|i| i == "CONFIGURATIONS") {
            let mut exec = json!({"logging": cluster.exec_logging.clone().unwrap_or_else(|| "DEFAULT".into())});
            if let Some(key) = &cluster.exec_kms_key_id {
                exec["kmsKeyId"] = json!(key);
            }
            entry["configuration"] = json!({"executeCommandConfiguration": exec});
        }
        clusters.push(entry);
    }
    Ok(json!({"clusters": clusters, "failures": failures}))
}

fn list_services(account: &Account, params: &Value) -> ActionResult {
    let cluster = cluster(account, params)?;
    let arns: Vec<String> = account
        .services
        .iter()
        .filter(|s| s.cluster == cluster)
        .map(|s| account.arn("service", &format!("{}/{}", s.cluster, s.name)))
        .collect();
    let (items, next) = page(&arns, text(params, "nextToken"), params.get("maxResults").and_then(Value::as_u64), 10);
    let mut out = json!({"serviceArns": items});
    if let Some(next) = next {
        out["nextToken"] = json!(next);
    }
    Ok(out)
}

fn describe_services(account: &Account, params: &Value) -> ActionResult {
    let cluster = cluster(account, params)?;
    let include_tags = list(params, "include").iter().any(|i| i == "TAGS");
    let mut services = Vec::new();
    let mut failures = Vec::new();
    for reference in list(params, "services") {
        match account.service_index(cluster, &reference) {
            Some(index) => {
                let mut entry = service_json(account, &account.services[index]);
                if include_tags {
                    entry["tags"] = tags(&account.services[index].tags);
                }
                services.push(entry);
            }
            None => failures.push(json!({
                "arn": account.arn("service", &format!("{cluster}/{}", reference.rsplit('/').next().unwrap_or(&reference))),
                "reason": "MISSING"
            })),
        }
    }
    Ok(json!({"services": services, "failures": failures}))
}

fn service_tasks<'a>(account: &'a Account, service: &'a Service) -> impl Iterator<Item = &'a Task> {
    account
        .tasks
        .iter()
        .filter(move |t| t.cluster == service.cluster && t.service.as_deref() == Some(service.name.as_str()))
}

fn service_json(account: &Account, service: &Service) -> Value {
    let count = |status: &[&str], deployment: Option<&str>| {
        service_tasks(account, service)
            .filter(|t| status.contains(&t.last_status.as_str()))
            .filter(|t| deployment.is_none() || t.deployment_id.as_deref() == deployment)
            .count()
    };
    let pending = ["PROVISIONING", "PENDING", "ACTIVATING"];
    let deployments: Vec<Value> = service
        .deployments
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let primary = i == 0;
            json!({
                "id": d.id,
                "status": if primary { "PRIMARY" } else { "ACTIVE" },
                "taskDefinition": account.arn("task-definition", &d.task_definition),
                "desiredCount": if primary { service.desired_count } else { 0 },
                "pendingCount": count(&pending, Some(&d.id)),
                "runningCount": count(&["RUNNING"], Some(&d.id)),
                "failedTasks": 0,
                "createdAt": epoch(d.created_ms),
                "updatedAt": epoch(d.created_ms),
                "launchType": "FARGATE",
                "platformVersion": service.platform_version,
                "platformFamily": "Linux",
                "rolloutState": if primary && service.deployments.len() == 1 { "COMPLETED" } else { "IN_PROGRESS" },
            })
        })
        .collect();
    json!({
        "serviceArn": account.arn("service", &format!("{}/{}", service.cluster, service.name)),
        "serviceName": service.name,
        "clusterArn": account.arn("cluster", &service.cluster),
        "status": "ACTIVE",
        "desiredCount": service.desired_count,
        "runningCount": count(&["RUNNING"], None),
        "pendingCount": count(&pending, None),
        "launchType": "FARGATE",
        "platformVersion": service.platform_version,
        "platformFamily": "Linux",
        "taskDefinition": account.arn("task-definition", &service.task_definition),
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": service.circuit_breaker, "rollback": service.circuit_breaker},
            "maximumPercent": service.maximum_percent,
            "minimumHealthyPercent": service.minimum_healthy_percent,
        },
        "deployments": deployments,
        "events": service
            .events
            .iter()
            .map(|e| json!({"id": e.id, "createdAt": epoch(e.created_ms), "message": e.message}))
            .collect::<Vec<_>>(),
        "createdAt": epoch(service.created_ms),
        "placementConstraints": [],
        "placementStrategy": [],
        "schedulingStrategy": "REPLICA",
        "deploymentController": {"type": "ECS"},
        "enableECSManagedTags": true,
        "propagateTags": "SERVICE",
        "enableExecuteCommand": service.enable_execute_command,
        "availabilityZoneRebalancing": service.az_rebalancing,
    })
}

fn update_service(account: &mut Account, params: &Value, now: u64) -> ActionResult {
    let cluster = cluster(account, params)?.to_owned();
    let name = required(params, "service", "InvalidParameterException")?;
    let index = account
        .service_index(&cluster, name)
        .ok_or_else(|| ApiError::client("ServiceNotFoundException", "Service not found."))?;
    if let Some(desired) = params.get("desiredCount") {
        let desired = desired.as_i64().filter(|d| *d >= 0).ok_or_else(|| {
            ApiError::client("InvalidParameterException", "desiredCount must be a non-negative integer.")
        })?;
        account.services[index].desired_count = desired as i32;
    }
    if let Some(config) = params.get("deploymentConfiguration") {
        let service = &mut account.services[index];
        if let Some(max) = config.get("maximumPercent").and_then(Value::as_i64) {
            service.maximum_percent = max as i32;
        }
        if let Some(min) = config.get("minimumHealthyPercent").and_then(Value::as_i64) {
            service.minimum_healthy_percent = min as i32;
        }
        if service.maximum_percent < 100 && service.minimum_healthy_percent >= service.maximum_percent {
            return Err(ApiError::client(
                "InvalidParameterException",
                "minimumHealthyPercent must be less than maximumPercent.",
            ));
        }
    }
    if let Some(enabled) = params.get("enableExecuteCommand").and_then(Value::as_bool) {
        account.services[index].enable_execute_command = enabled;
    }
    if let Some(rebalancing) = text(params, "availabilityZoneRebalancing") {
        account.services[index].az_rebalancing = rebalancing.to_owned();
    }
    let mut redeploy = params.get("forceNewDeployment").and_then(Value::as_bool).unwrap_or(false);
    if let Some(reference) = text(params, "taskDefinition") {
        let key = account
            .find_task_definition(reference)
            .map(|d| d.key())
            .ok_or_else(|| ApiError::client("ClientException", "TaskDefinition not found."))?;
        if key != account.services[index].task_definition {
            account.services[index].task_definition = key;
            redeploy = true;
        }
    }
    if redeploy {
        account.new_deployment(index, now);
    }
    Ok(json!({"service": service_json(account, &account.services[index])}))
}

fn list_tasks(account: &Account, params: &Value) -> ActionResult {
    let cluster = cluster(account, params)?;
    let service = text(params, "serviceName");
    if service.is_some_and(|name| account.service_index(cluster, name).is_none()) {
        return Err(ApiError::client("ServiceNotFoundException", "Service not found."));
    }
    let desired = text(params, "desiredStatus").unwrap_or("RUNNING");
    let family = text(params, "family");
    let started_by = text(params, "startedBy");
    let arns: Vec<String> = account
        .tasks
        .iter()
        .filter(|t| t.cluster == cluster && t.desired_status == desired)
        .filter(|t| service.is_none_or(|s| t.service.as_deref() == Some(s.rsplit('/').next().unwrap_or(s))))
        .filter(|t| family.is_none_or(|f| t.task_definition.split(':').next() == Some(f)))
        .filter(|t| started_by.is_none_or(|s| t.deployment_id.as_deref() == Some(s)))
        .map(|t| account.arn("task", &format!("{}/{}", t.cluster, t.id)))
        .collect();
    let (items, next) = page(&arns, text(params, "nextToken"), params.get("maxResults").and_then(Value::as_u64), 100);
    let mut out = json!({"taskArns": items});
    if let Some(next) = next {
        out["nextToken"] = json!(next);
    }
    Ok(out)
}

fn describe_tasks(account: &Account, params: &Value) -> ActionResult {
    let cluster = cluster(account, params)?;
    let wanted = list(params, "tasks");
    if wanted.is_empty() {
        return Err(ApiError::client("InvalidParameterException", "Tasks cannot be empty."));
    }
    if wanted.len() > 100 {
        return Err(ApiError::client("InvalidParameterException", "Tasks cannot contain more than 100 elements."));
    }
    let include_tags = list(params, "include").iter().any(|i| i == "TAGS");
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for reference in wanted {
        let id = reference.rsplit('/').next().unwrap_or(&reference);
        match account.tasks.iter().find(|t| t.cluster == cluster && t.id == id) {
            Some(task) => {
                let mut entry = task_json(account, task);
                if include_tags {
                    entry["tags"] = json!([]);
                }
                tasks.push(entry);
            }
            None => failures.push(json!({"arn": reference, "reason": "MISSING"})),
        }
    }
    Ok(json!({"tasks": tasks, "failures": failures}))
}

/// StopTask: the task (by id or ARN, in the cluster) is asked to stop with the caller's reason
/// (at most 255 characters), which DescribeTasks then shows as `stoppedReason` with `stopCode`
/// `UserInitiated`. A task already stopping or stopped is answered as it is.
fn stop_task(account: &mut Account, params: &Value, now: u64) -> ActionResult {
    let cluster = cluster(account, params)?.to_owned();
    let reference = required(params, "task", "InvalidParameterException")?;
    let reason = text(params, "reason").unwrap_or("");
    if reason.chars().count() > MAX_STOP_REASON {
        return Err(ApiError::client(
            "InvalidParameterException",
            format!("Reason's length must be at most {MAX_STOP_REASON} characters."),
        ));
    }
    let id = reference.rsplit('/').next().unwrap_or(reference);
    let index = account
        .tasks
        .iter()
        .position(|t| t.cluster == cluster && t.id == id)
        .ok_or_else(|| ApiError::client("InvalidParameterException", "The referenced task was not found."))?;
    account.stop_task_by_user(index, reason, now);
    Ok(json!({"task": task_json(account, &account.tasks[index])}))
}

/// The longest `reason` StopTask takes.
const MAX_STOP_REASON: usize = 255;

/// The DescribeTasks shape of one task.
pub fn task_json(account: &Account, task: &Task) -> Value {
    let task_arn = account.arn("task", &format!("{}/{}", task.cluster, task.id));
    let containers: Vec<Value> = task
        .containers
        .iter()
        .map(|c| {
            let mut container = json!({
                "containerArn": account.arn("container", &format!("{}/{}/{}", task.cluster, task.id, c.container_id)),
                "taskArn": task_arn,
                "name": c.name,
                "image": c.image,
                "runtimeId": c.runtime_id,
                "lastStatus": task.last_status,
                "networkBindings": [],
                "networkInterfaces": [{"attachmentId": c.container_id, "privateIpv4Address": "10.0.1.23"}],
                "healthStatus": "UNKNOWN",
                "cpu": "0",
            });
            if let Some(status) = &c.agent_status {
                let mut agent = json!({"name": "ExecuteCommandAgent", "lastStatus": status});
                if let Some(started) = c.agent_started_ms {
                    agent["lastStartedAt"] = epoch(started);
                }
                container["managedAgents"] = json!([agent]);
            }
            container
        })
        .collect();
    let mut out = json!({
        "taskArn": task_arn,
        "clusterArn": account.arn("cluster", &task.cluster),
        "taskDefinitionArn": account.arn("task-definition", &task.task_definition),
        "group": task.group,
        "lastStatus": task.last_status,
        "desiredStatus": task.desired_status,
        "launchType": "FARGATE",
        "capacityProviderName": "FARGATE",
        "platformVersion": task.platform_version,
        "platformFamily": "Linux",
        "enableExecuteCommand": task.enable_execute_command,
        "createdAt": epoch(task.created_ms),
        "connectivity": "CONNECTED",
        "availabilityZone": format!("{}a", account.region),
        "cpu": "1024",
        "memory": "2048",
        "version": 3,
        "healthStatus": "UNKNOWN",
        "attachments": [],
        "containers": containers,
        "overrides": {"containerOverrides": [{"name": task.containers.first().map(|c| c.name.clone()).unwrap_or_default()}]},
    });
    if let Some(deployment) = &task.deployment_id {
        out["startedBy"] = json!(deployment);
    }
    if let Some(started) = task.started_ms {
        out["startedAt"] = epoch(started);
        out["pullStartedAt"] = epoch(started.saturating_sub(15_000));
        out["pullStoppedAt"] = epoch(started.saturating_sub(5_000));
    }
    if let Some(stopping) = task.stopping_ms {
        out["stoppingAt"] = epoch(stopping);
    }
    if let Some(code) = &task.stop_code {
        out["stopCode"] = json!(code);
    }
    if let Some(stopped) = task.stopped_ms {
        out["stoppedAt"] = epoch(stopped);
        out["executionStoppedAt"] = epoch(stopped);
    }
    if let Some(reason) = &task.stopped_reason {
        out["stoppedReason"] = json!(reason);
    }
    out
}

fn describe_task_definition(account: &Account, params: &Value) -> ActionResult {
    let reference = required(params, "taskDefinition", "ClientException")?;
    let def = account
        .find_task_definition(reference)
        .ok_or_else(|| ApiError::client("ClientException", "Unable to describe task definition."))?;
    let environment: Vec<Value> = def.environment.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    let secrets: Vec<Value> = def.secrets.iter().map(|(k, v)| json!({"name": k, "valueFrom": v})).collect();
    let mut container = json!({
        "name": def.container,
        "image": def.image,
        "essential": true,
        "cpu": 0,
        "environment": environment,
        "secrets": secrets,
        "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
        "mountPoints": def.mount_points.iter().map(|(path, volume)| json!({"sourceVolume": volume, "containerPath": path, "readOnly": false})).collect::<Vec<_>>(),
        "volumesFrom": [],
        "linuxParameters": {"initProcessEnabled": def.init_process_enabled},
        "readonlyRootFilesystem": def.readonly_root_filesystem,
        "pseudoTerminal": true,
    });
    if def.log_driver != "awslogs" {
        container["logConfiguration"] = json!({"logDriver": def.log_driver, "options": {}});
    } else if let Some(group) = &def.log_group {
        let mut options = json!({"awslogs-group": group, "awslogs-region": account.region});
        if let Some(prefix) = &def.log_stream_prefix {
            options["awslogs-stream-prefix"] = json!(prefix);
        }
        container["logConfiguration"] = json!({"logDriver": "awslogs", "options": options});
    }
    Ok(json!({
        "taskDefinition": {
            "taskDefinitionArn": account.arn("task-definition", &def.key()),
            "family": def.family,
            "revision": def.revision,
            "status": "ACTIVE",
            "containerDefinitions": [container],
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "compatibilities": ["EC2", "FARGATE"],
            "cpu": def.cpu,
            "memory": def.memory,
            "taskRoleArn": format!("arn:aws:iam::{}:role/{}-TaskRole", account.account, def.family),
            "executionRoleArn": format!("arn:aws:iam::{}:role/{}-ExecutionRole", account.account, def.family),
            "volumes": def.volumes.iter().map(|(name, efs)| match efs {
                Some(fs) => json!({"name": name, "efsVolumeConfiguration": {"fileSystemId": fs, "rootDirectory": "/", "transitEncryption": "ENABLED"}}),
                None => json!({"name": name, "host": {}}),
            }).collect::<Vec<_>>(),
            "placementConstraints": [],
        },
        "tags": [],
    }))
}

fn tags(tags: &indexmap::IndexMap<String, String>) -> Value {
    json!(tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>())
}

/// ExecuteCommand: checks the task can take a session, records the grant, and returns a stream
/// URL on the lab's own gateway with a fresh token.
pub fn execute_command(
    account: &mut Account,
    params: &Value,
    agent_not_connected: bool,
    exec_disabled: bool,
) -> ActionResult {
    let cluster = cluster(account, params)?.to_owned();
    let reference = required(params, "task", "InvalidParameterException")?;
    let command = required(params, "command", "InvalidParameterException")?.to_owned();
    if params.get("interactive").and_then(Value::as_bool) != Some(true) {
        return Err(ApiError::client("InvalidParameterException", "Interactive is the only mode supported currently."));
    }
    let id = reference.rsplit('/').next().unwrap_or(reference);
    let task = account
        .tasks
        .iter()
        .find(|t| t.cluster == cluster && t.id == id)
        .ok_or_else(|| ApiError::client("InvalidParameterException", "The specified task is not found."))?
        .clone();
    let container = match text(params, "container") {
        Some(name) => task.containers.iter().find(|c| c.name == name),
        None if task.containers.len() == 1 => task.containers.first(),
        None => {
            return Err(ApiError::client(
                "InvalidParameterException",
                "The container name must be specified when the task has more than one container.",
            ));
        }
    }
    .ok_or_else(|| ApiError::client("InvalidParameterException", "The specified container is not found."))?;
    if exec_disabled || !task.enable_execute_command {
        return Err(ApiError::client(
            "InvalidParameterException",
            "The execute command failed because execute command was not enabled when the task was run or the execute command agent isn't running. Wait and try again or run a new task with execute command enabled and try again.",
        ));
    }
    if task.last_status != "RUNNING" {
        return Err(ApiError::client(
            "InvalidParameterException",
            format!("The task is in {} state.", task.last_status),
        ));
    }
    if agent_not_connected || container.agent_status.as_deref() != Some("RUNNING") {
        return Err(ApiError::client(
            "TargetNotConnectedException",
            "The execute command failed due to an internal error. Try again later.",
        ));
    }
    let environment = account
        .task_definitions
        .get(&task.task_definition)
        .map(|d| account.container_environment(d))
        .unwrap_or_default();
    let session_id = format!("ecs-execute-command-{}", &account.next_id()[..17]);
    let token = format!("{}{}", account.next_id(), account.next_id());
    let grant = crate::state::ExecGrant {
        session_id: session_id.clone(),
        token: token.clone(),
        task_id: task.id.clone(),
        command,
        environment,
        target_id: format!("ecs:{}_{}_{}", task.cluster, task.id, container.runtime_id),
        kms_key_id: account.clusters.get(&task.cluster).and_then(|c| c.exec_kms_key_id.clone()),
        port: None,
    };
    account.exec_sessions.insert(session_id.clone(), grant);
    account.issued_tokens.push(token.clone());
    let stream_url = stream_url(account, &session_id);
    let container_arn = account.arn("container", &format!("{}/{}/{}", task.cluster, task.id, container.container_id));
    Ok(json!({
        "clusterArn": account.arn("cluster", &task.cluster),
        "containerArn": container_arn,
        "containerName": container.name,
        "interactive": true,
        "session": {"sessionId": session_id, "streamUrl": stream_url, "tokenValue": token},
        "taskArn": account.arn("task", &format!("{}/{}", task.cluster, task.id)),
    }))
}

/// The websocket URL of a session on the lab's gateway.
pub fn stream_url(account: &Account, session_id: &str) -> String {
    // The data channel follows the endpoint's scheme: wss:// when the lab serves TLS.
    let (scheme, host) = match account.endpoint.split_once("://") {
        Some(("https", host)) => ("wss", host),
        Some((_, host)) => ("ws", host),
        None => ("ws", account.endpoint.as_str()),
    };
    let host = match (&account.stream_host, host.rsplit_once(':')) {
        (Some(name), Some((_, port))) => format!("{name}:{port}"),
        _ => host.to_owned(),
    };
    format!("{scheme}://{host}/v1/data-channel/{session_id}?role=publish_subscribe&cell-number=AAEAAQ")
}
