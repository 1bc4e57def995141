//! ECS Exec readiness: a protected environment can be reached with `evoctl exec` (the service
//! flag, a running ExecuteCommandAgent in every task, platform version 1.4.0 or later).

use super::{Found, Subject, one};

/// `major.minor.patch` at least 1.4.0; `LATEST` counts as new enough.
pub fn platform_ok(version: &str) -> bool {
    if version.eq_ignore_ascii_case("LATEST") {
        return true;
    }
    let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    parts.as_slice() >= [1, 4, 0].as_slice()
}

pub(super) fn exec_readiness(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects.iter().filter(|s| s.env.protected) {
        let mut issues = Vec::new();
        if !s.facts.service.enable_execute_command {
            issues.push("enableExecuteCommand is off on the service".to_owned());
        }
        for task in &s.facts.tasks {
            if !task.enable_execute_command {
                issues.push(format!("task {} was started without ECS Exec", task.id));
                continue;
            }
            match task.exec_agent(&s.env.container) {
                Some("RUNNING") => {}
                Some(status) => issues.push(format!("ExecuteCommandAgent of task {} is {status}", task.id)),
                None => issues.push(format!("task {} has no ExecuteCommandAgent", task.id)),
            }
            if let Some(version) = task.platform_version.as_deref().filter(|v| !platform_ok(v)) {
                issues.push(format!("task {} runs platform version {version} (ECS Exec needs 1.4.0+)", task.id));
            }
        }
        if !issues.is_empty() {
            found.push(one(
                s.env,
                issues.join("; "),
                format!(
                    "`aws ecs update-service --cluster {} --service {} --enable-execute-command --force-new-deployment` (a new task gets a fresh agent); if the agent still stops, check the task role's ssmmessages permissions",
                    s.env.cluster, s.env.service
                ),
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_versions_below_1_4_0_are_not_exec_ready() {
        assert!(platform_ok("1.4.0"));
        assert!(platform_ok("LATEST"));
        assert!(platform_ok("1.10.0"));
        assert!(!platform_ok("1.3.0"));
    }
}
