//! Identity policies the lab enforces: `POST /_lab/identity-policy` with an IAM policy document
//! makes every AWS call the lab answers pass through [`Policy::decide`] first, as IAM would for a
//! caller whose only identity-based policy is that document. What the policy does not allow is
//! answered with AccessDenied in the protocol's shape and IAM's words (`User: ARN is not
//! authorized to perform: ecs:ListTasks on resource: ... because no identity-based policy allows
//! the ecs:ListTasks action`).
//!
//! The evaluator is the lab's own: `Effect` Allow/Deny, `Action`/`NotAction` and
//! `Resource`/`NotResource` as a string or a list, `*` and `?` wildcards, actions matched without
//! regard to case, an explicit Deny winning over any Allow. Conditions are not modelled: a
//! statement with a `Condition` is refused when the document is posted, so a test never passes
//! on a condition the lab ignored. STS GetCallerIdentity is never denied (IAM does not gate it).

use serde_json::Value;

/// A parsed identity policy.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone)]
struct Statement {
    allow: bool,
    actions: Patterns,
    resources: Patterns,
}

/// A statement's `Action` (or `Resource`) patterns, or its `NotAction` (`NotResource`) ones.
#[derive(Debug, Clone)]
struct Patterns {
    negated: bool,
    list: Vec<String>,
}

/// What IAM decides for one action on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No statement allows it.
    ImplicitDeny,
    /// A Deny statement matches.
    ExplicitDeny,
}

impl Policy {
    /// Parse a policy document (`Version` 2012-10-17, `Statement` an object or a list).
    pub fn parse(document: &Value) -> Result<Policy, String> {
        let version = document.get("Version").and_then(Value::as_str);
        if version != Some("2012-10-17") {
            return Err(format!(
                "Version must be \"2012-10-17\", not {}",
                document.get("Version").unwrap_or(&Value::Null)
            ));
        }
        let statements = match document.get("Statement") {
            Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => return Err("Statement must be an object or a list of objects".into()),
        };
        let statements =
            statements.into_iter().enumerate().map(|(i, s)| statement(s).map_err(|e| format!("Statement {i}: {e}")));
        Ok(Policy { statements: statements.collect::<Result<_, _>>()? })
    }

    /// Whether `action` (`service:Name`) is allowed on every one of `resources`; the first
    /// resource it is not allowed on comes with the decision.
    pub fn decide<'a>(&self, action: &str, resources: &'a [String]) -> (Decision, Option<&'a str>) {
        for resource in resources {
            let decision = self.decide_one(action, resource);
            if decision != Decision::Allow {
                return (decision, Some(resource.as_str()));
            }
        }
        (Decision::Allow, None)
    }

    fn decide_one(&self, action: &str, resource: &str) -> Decision {
        let applies = |s: &Statement| s.actions.matches(action, true) && s.resources.matches(resource, false);
        if self.statements.iter().any(|s| !s.allow && applies(s)) {
            Decision::ExplicitDeny
        } else if self.statements.iter().any(|s| s.allow && applies(s)) {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

/// IAM's words for a refusal.
pub fn denial_message(caller: &str, action: &str, resource: &str, decision: Decision) -> String {
    let why = match decision {
        Decision::ExplicitDeny => "with an explicit deny in an identity-based policy".to_owned(),
        _ => format!("because no identity-based policy allows the {action} action"),
    };
    format!("User: {caller} is not authorized to perform: {action} on resource: {resource} {why}")
}

fn statement(value: &Value) -> Result<Statement, String> {
    let allow = match value.get("Effect").and_then(Value::as_str) {
        Some("Allow") => true,
        Some("Deny") => false,
        _ => return Err("Effect must be Allow or Deny".into()),
    };
    if value.get("Condition").is_some() {
        return Err("Condition is not modelled by the lab".into());
    }
    let actions = patterns(value, "Action", "NotAction")?;
    let resources = patterns(value, "Resource", "NotResource")?;
    Ok(Statement { allow, actions, resources })
}

fn patterns(value: &Value, plain: &str, negated: &str) -> Result<Patterns, String> {
    let (negated, found) = match (value.get(plain), value.get(negated)) {
        (Some(found), None) => (false, found),
        (None, Some(found)) => (true, found),
        _ => return Err(format!("exactly one of {plain} and {negated} is needed")),
    };
    let list = match found {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| format!("{plain} entries must be strings")))
            .collect::<Result<_, _>>()?,
        _ => return Err(format!("{plain} must be a string or a list of strings")),
    };
    Ok(Patterns { negated, list })
}

impl Patterns {
    fn matches(&self, text: &str, ignore_case: bool) -> bool {
        self.list.iter().any(|p| wildcard(p, text, ignore_case)) != self.negated
    }
}

/// `*` matches any run of characters, `?` any one.
fn wildcard(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let fold = |s: &str| if ignore_case { s.to_ascii_lowercase() } else { s.to_owned() };
    let (p, t): (Vec<char>, Vec<char>) = (fold(pattern).chars().collect(), fold(text).chars().collect());
    // Iterative glob match with backtracking to the last `*`.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The resources IAM authorises `service:action` against for these parameters, in the caller's
/// `account` and `region` (ARNs where the action has a resource type, `*` where it has none).
pub fn resources_of(service: &str, action: &str, params: &Value, account: &str, region: &str) -> Vec<String> {
    let text = |key: &str| params.get(key).and_then(Value::as_str).unwrap_or_default();
    let first = |key: &str| {
        params.get(key).and_then(Value::as_array).and_then(|l| l.first()).and_then(Value::as_str).unwrap_or_default()
    };
    let ecs = |kind: &str, rest: &str| format!("arn:aws:ecs:{region}:{account}:{kind}/{rest}");
    // A cluster given by name or ARN, as its name.
    let cluster = || {
        let c = params.get("cluster").and_then(Value::as_str).unwrap_or("default");
        c.rsplit(['/']).next().unwrap_or(c).to_owned()
    };
    // A task or service given by id/name or ARN.
    let in_cluster = |kind: &str, id: &str| {
        if id.starts_with("arn:") { id.to_owned() } else { ecs(kind, &format!("{}/{id}", cluster())) }
    };
    let resource = match (service, action) {
        ("ecs", "DescribeClusters") => ecs("cluster", first("clusters").rsplit('/').next().unwrap_or_default()),
        ("ecs", "DescribeServices") => in_cluster("service", first("services")),
        ("ecs", "UpdateService") => in_cluster("service", text("service")),
        ("ecs", "DescribeTasks") => in_cluster("task", first("tasks")),
        ("ecs", "StopTask" | "ExecuteCommand") => in_cluster("task", text("task")),
        ("ssm", "GetParameter") => {
            let name = text("Name");
            match name {
                arn if arn.starts_with("arn:") => arn.to_owned(),
                path if path.starts_with('/') => format!("arn:aws:ssm:{region}:{account}:parameter{path}"),
                plain => format!("arn:aws:ssm:{region}:{account}:parameter/{plain}"),
            }
        }
        ("ssm", "StartSession") => {
            // The target (an ECS task `ecs:CLUSTER_TASK_RUNTIME`) and the session document.
            let target = text("Target");
            let task = target
                .strip_prefix("ecs:")
                .and_then(|rest| rest.split_once('_'))
                .and_then(|(cluster, rest)| {
                    rest.split_once('_').map(|(task, _)| ecs("task", &format!("{cluster}/{task}")))
                })
                .unwrap_or_else(|| format!("arn:aws:ssm:{region}:{account}:managed-instance/{target}"));
            let document = params.get("DocumentName").and_then(Value::as_str).unwrap_or("SSM-SessionManagerRunShell");
            return vec![task, format!("arn:aws:ssm:{region}::document/{document}")];
        }
        ("ssm", "TerminateSession" | "ResumeSession") => {
            format!("arn:aws:ssm:{region}:{account}:session/{}", text("SessionId"))
        }
        ("logs", "FilterLogEvents") => format!("arn:aws:logs:{region}:{account}:log-group:{}:*", text("logGroupName")),
        ("kms", _) if text("KeyId").starts_with("arn:") => text("KeyId").to_owned(),
        ("kms", _) => format!("arn:aws:kms:{region}:{account}:key/{}", text("KeyId")),
        ("lambda", "GetFunctionConfiguration") => {
            format!("arn:aws:lambda:{region}:{account}:function:{}", text("FunctionName"))
        }
        ("lambda", "ListTags") => text("Resource").to_owned(),
        ("sts", "AssumeRole") => text("RoleArn").to_owned(),
        _ => "*".to_owned(),
    };
    vec![resource]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(document: Value) -> Policy {
        Policy::parse(&document).expect("a valid policy")
    }

    #[test]
    fn actions_match_without_case_and_with_wildcards() {
        let p = policy(
            json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": ["ECS:list*", "ssm:Get?arameter"], "Resource": "*"}}),
        );
        let any = ["*".to_owned()];
        assert_eq!(p.decide("ecs:ListTasks", &any).0, Decision::Allow);
        assert_eq!(p.decide("ssm:GetParameter", &any).0, Decision::Allow);
        assert_eq!(p.decide("ssm:GetParameters", &any).0, Decision::ImplicitDeny);
        assert_eq!(p.decide("ecs:DescribeTasks", &any), (Decision::ImplicitDeny, Some("*")));
    }

    #[test]
    fn a_deny_wins_and_not_action_inverts() {
        let p = policy(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "ecs:StopTask", "Resource": "arn:aws:ecs:*:*:task/prod/*"}
        ]}));
        let prod = ["arn:aws:ecs:us-east-1:1:task/prod/abc".to_owned()];
        let staging = ["arn:aws:ecs:us-east-1:1:task/staging/abc".to_owned()];
        assert_eq!(p.decide("ecs:StopTask", &prod).0, Decision::ExplicitDeny);
        assert_eq!(p.decide("ecs:StopTask", &staging).0, Decision::Allow);
        assert_eq!(p.decide("iam:CreateUser", &staging).0, Decision::ImplicitDeny);
    }

    #[test]
    fn resources_are_matched_with_case_and_every_one_must_be_allowed() {
        let p = policy(json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:StartSession",
            "Resource": ["arn:aws:ecs:*:*:task/*", "arn:aws:ssm:*::document/AWS-StartPortForwardingSession"]}}));
        let resources = resources_of(
            "ssm",
            "StartSession",
            &json!({"Target": "ecs:c_t_r", "DocumentName": "AWS-StartPortForwardingSessionToRemoteHost"}),
            "1",
            "r",
        );
        let (decision, resource) = p.decide("ssm:StartSession", &resources);
        assert_eq!(decision, Decision::ImplicitDeny);
        assert_eq!(resource, Some("arn:aws:ssm:r::document/AWS-StartPortForwardingSessionToRemoteHost"));
        assert!(!wildcard("arn:aws:ecs:*:*:TASK/*", "arn:aws:ecs:r:1:task/c/t", false));
    }

    #[test]
    fn malformed_documents_are_refused() {
        for bad in [
            json!({"Statement": []}),
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]}),
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}),
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {}}]}),
        ] {
            assert!(Policy::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_denial_names_the_action_and_why() {
        assert_eq!(
            denial_message("arn:aws:iam::1:user/u", "ecs:ListTasks", "*", Decision::ImplicitDeny),
            "User: arn:aws:iam::1:user/u is not authorized to perform: ecs:ListTasks on resource: * because no identity-based policy allows the ecs:ListTasks action"
        );
        assert_eq!(
            denial_message("arn:aws:iam::1:user/u", "ecs:ListTasks", "*", Decision::ExplicitDeny),
            "User: arn:aws:iam::1:user/u is not authorized to perform: ecs:ListTasks on resource: * with an explicit deny in an identity-based policy"
        );
    }
}
