//! The AWS CLI (botocore, a client nobody here wrote) must parse every lab action, and must get
//! AWS's signature error with a wrong secret. CI installs the CLI; a missing one fails the test.

use crate::support::{Lab, clean_command, text};
use assert_cmd::Command;
use serde_json::Value;

/// `aws` configured for the lab through the standard environment variables only.
pub fn aws(lab: &Lab) -> Command {
    let mut command = clean_command("aws", lab.dir.path());
    command.envs(lab.env()).env("AWS_DEFAULT_OUTPUT", "json").env("AWS_PAGER", "");
    command
}

fn run(lab: &Lab, args: &[&str]) -> Value {
    let output = aws(lab).args(args).output().expect("the AWS CLI must be installed (pip install awscli)");
    assert_eq!(output.status.code(), Some(0), "aws {args:?}: {}", text(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("aws {args:?} printed non-JSON ({e}): {}", text(&output.stdout)))
}

#[test]
fn the_aws_cli_parses_every_lab_action() {
    let lab = Lab::start("seed");
    let prod = ["--cluster", "alinhou-production"];

    let out = run(&lab, &["ecs", "list-clusters"]);
    assert_eq!(out["clusterArns"].as_array().unwrap().len(), 2);
    let out = run(
        &lab,
        &[
            "ecs",
            "describe-clusters",
            "--clusters",
            "alinhou-production",
            "nope",
            "--include",
            "TAGS",
            "CONFIGURATIONS",
        ],
    );
    assert_eq!(out["clusters"][0]["clusterName"], "alinhou-production");
    assert_eq!(out["clusters"][0]["tags"][1]["value"], "production");
    assert_eq!(out["failures"][0]["reason"], "MISSING");
    let out = run(&lab, &["ecs", "list-services", "--cluster", "alinhou-production"]);
    assert_eq!(out["serviceArns"][0], "arn:aws:ecs:us-east-1:123456789012:service/alinhou-production/EvolutionService");
    let out = run(&lab, &[&["ecs", "describe-services", "--services", "EvolutionService"][..], &prod[..]].concat());
    assert_eq!(out["services"][0]["desiredCount"], 1);
    assert_eq!(out["services"][0]["deploymentConfiguration"]["maximumPercent"], 100);
    assert_eq!(out["services"][0]["deployments"][0]["status"], "PRIMARY");
    let out = run(
        &lab,
        &[&["ecs", "list-tasks", "--service-name", "EvolutionService", "--desired-status", "RUNNING"][..], &prod[..]]
            .concat(),
    );
    let task = out["taskArns"][0].as_str().unwrap().to_owned();
    let out = run(&lab, &[&["ecs", "describe-tasks", "--tasks", &task][..], &prod[..]].concat());
    assert_eq!(out["tasks"][0]["group"], "service:EvolutionService");
    assert_eq!(out["tasks"][0]["containers"][0]["managedAgents"][0]["lastStatus"], "RUNNING");
    assert!(
        out["tasks"][0]["containers"][0]["runtimeId"].as_str().unwrap().starts_with(task.rsplit('/').next().unwrap())
    );
    let out =
        run(&lab, &["ecs", "describe-task-definition", "--task-definition", "alinhou-production-EvolutionService"]);
    assert_eq!(out["taskDefinition"]["revision"], 31);
    assert_eq!(out["taskDefinition"]["containerDefinitions"][0]["name"], "EvolutionService");
    let out = run(
        &lab,
        &[&["ecs", "update-service", "--service", "EvolutionService", "--desired-count", "1"][..], &prod[..]].concat(),
    );
    assert_eq!(out["service"]["desiredCount"], 1);

    let ns = ["--service-namespace", "ecs"];
    let out = run(&lab, &[&["application-autoscaling", "describe-scalable-targets"][..], &ns[..]].concat());
    assert_eq!(out["ScalableTargets"].as_array().unwrap().len(), 2);
    assert_eq!(out["ScalableTargets"][1]["MinCapacity"], 1);
    let out = run(
        &lab,
        &[
            &[
                "application-autoscaling",
                "register-scalable-target",
                "--resource-id",
                "service/alinhou-production/EvolutionService",
            ][..],
            &["--scalable-dimension", "ecs:service:DesiredCount", "--min-capacity", "1", "--max-capacity", "1"][..],
            &ns[..],
        ]
        .concat(),
    );
    assert!(out["ScalableTargetARN"].as_str().unwrap().starts_with("arn:aws:application-autoscaling:"));
    let out = run(&lab, &[&["application-autoscaling", "describe-scheduled-actions"][..], &ns[..]].concat());
    assert_eq!(out["ScheduledActions"], serde_json::json!([]));
    let out = run(&lab, &[&["application-autoscaling", "describe-scaling-policies"][..], &ns[..]].concat());
    assert_eq!(out["ScalingPolicies"], serde_json::json!([]));

    let out = run(
        &lab,
        &["ssm", "get-parameter", "--name", "/alinhou/production/evolution-webhook-secret", "--with-decryption"],
    );
    assert_eq!(out["Parameter"]["Type"], "SecureString");
    assert_eq!(out["Parameter"]["Value"], "lab-production-webhook-secret-77c1e0");
    let group = "/sst/cluster/alinhou-production-Cluster/EvolutionService/EvolutionService";
    let out = run(
        &lab,
        &["logs", "filter-log-events", "--log-group-name", group, "--filter-pattern", "\"Browser: Evo PRODUCTION\""],
    );
    assert_eq!(out["events"].as_array().unwrap().len(), 1);
    let out = run(&lab, &["sts", "get-caller-identity"]);
    assert_eq!(out["Account"], "123456789012");
    let out = run(&lab, &["lambda", "get-function-configuration", "--function-name", "alinhou-production-Api"]);
    assert_eq!(out["Environment"]["Variables"]["WHATSAPP_MOCK"], "false");
    let out = run(&lab, &["lambda", "list-functions", "--max-items", "1"]);
    assert_eq!(out["Functions"][0]["Environment"]["Variables"]["EVOLUTION_INSTANCE_NAME"], "alinhou-staging");
    assert!(out["NextToken"].is_string(), "the CLI pages on NextMarker: {out}");
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:alinhou-production-Api";
    let out = run(&lab, &["lambda", "list-tags", "--resource", arn]);
    assert_eq!(out["Tags"]["sst:stage"], "production");
    let reason = ["--reason", "an extra task on one number"];
    let out = run(&lab, &[&["ecs", "stop-task", "--task", &task][..], &prod[..], &reason[..]].concat());
    assert_eq!(
        (&out["task"]["desiredStatus"], &out["task"]["stopCode"], &out["task"]["stoppedReason"]),
        (
            &serde_json::json!("STOPPED"),
            &serde_json::json!("UserInitiated"),
            &serde_json::json!("an extra task on one number")
        )
    );

    // Every action above is in the journal, signed and answered 200.
    let journal = lab.journal();
    let mut actions: Vec<&str> = journal.iter().map(|e| e["action"].as_str().unwrap()).collect();
    actions.sort();
    actions.dedup();
    assert_eq!(
        actions,
        [
            "DescribeClusters",
            "DescribeScalableTargets",
            "DescribeScalingPolicies",
            "DescribeScheduledActions",
            "DescribeServices",
            "DescribeTaskDefinition",
            "DescribeTasks",
            "FilterLogEvents",
            "GetCallerIdentity",
            "GetFunctionConfiguration",
            "GetParameter",
            "ListClusters",
            "ListFunctions",
            "ListServices",
            "ListTags",
            "ListTasks",
            "RegisterScalableTarget",
            "StopTask",
            "UpdateService",
        ]
    );
    assert!(journal.iter().all(|e| e["status"] == 200), "{journal:?}");
}

/// Task definition `secrets` as DescribeTaskDefinition returns them, and a parameter read by its
/// full ARN (as the ECS agent and the audit read a secret), or refused.
#[test]
fn the_aws_cli_reads_container_secrets_and_parameters_by_arn() {
    let lab = Lab::start("two-accounts-secrets");
    let production = ["--profile", "alinhou-production", "--region", "sa-east-1"];
    let out = run(
        &lab,
        &[
            &production[..],
            &["ecs", "describe-task-definition", "--task-definition", "alinhou-production-EvolutionService"],
        ]
        .concat(),
    );
    let container = &out["taskDefinition"]["containerDefinitions"][0];
    assert_eq!(
        container["secrets"],
        serde_json::json!([{"name": "AUTHENTICATION_API_KEY", "valueFrom": "/alinhou/evolution-api-key"}])
    );
    let names: Vec<&str> =
        container["environment"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(!names.contains(&"AUTHENTICATION_API_KEY"), "a name is in environment or secrets, never both");
    let arn = "arn:aws:ssm:sa-east-1:222222222222:parameter/alinhou/evolution-api-key";
    let out = run(&lab, &[&production[..], &["ssm", "get-parameter", "--name", arn]].concat());
    assert_eq!(out["Parameter"]["Name"], "/alinhou/evolution-api-key");
    assert_eq!(out["Parameter"]["ARN"], arn);
    assert_eq!(out["Parameter"]["Type"], "SecureString");
    // Another account's ARN is not this account's parameter.
    let elsewhere = "arn:aws:ssm:us-east-1:111111111111:parameter/alinhou/evolution-api-key";
    let output = aws(&lab).args(production).args(["ssm", "get-parameter", "--name", elsewhere]).output().unwrap();
    assert!(text(&output.stderr).contains("(ParameterNotFound)"), "{}", text(&output.stderr));

    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("denied.toml");
    std::fs::write(
        &scenario,
        "extends = \"seed\"\ndescription = \"denied\"\n[parameters.\"/denied\"]\nvalue = \"v\"\nread_denied = true\n",
    )
    .unwrap();
    let lab = Lab::start(scenario.to_str().unwrap());
    let output = aws(&lab).args(["ssm", "get-parameter", "--name", "/denied"]).output().unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(
        text(&output.stderr).contains(
            "(AccessDeniedException) when calling the GetParameter operation: User: arn:aws:iam::123456789012:user/evoctl-lab is not authorized to perform: ssm:GetParameter on resource: arn:aws:ssm:us-east-1:123456789012:parameter/denied"
        ),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn the_aws_cli_gets_aws_errors_from_the_lab() {
    let lab = Lab::start("seed");
    let cases: &[(&[&str], &str)] = &[
        (&["ecs", "describe-services", "--cluster", "nope", "--services", "x"], "ClusterNotFoundException"),
        (&["ssm", "get-parameter", "--name", "/missing"], "ParameterNotFound"),
        (
            &["ecs", "stop-task", "--cluster", "alinhou-production", "--task", "0123456789abcdef"],
            "InvalidParameterException",
        ),
        (&["lambda", "get-function-configuration", "--function-name", "missing"], "ResourceNotFoundException"),
        (
            &[
                "application-autoscaling",
                "register-scalable-target",
                "--service-namespace",
                "ecs",
                "--resource-id",
                "service/alinhou-production/EvolutionService",
                "--scalable-dimension",
                "ecs:service:DesiredCount",
                "--min-capacity",
                "2",
                "--max-capacity",
                "1",
            ],
            "ValidationException",
        ),
    ];
    for (args, code) in cases {
        let output = aws(&lab).args(*args).output().unwrap();
        assert_ne!(output.status.code(), Some(0), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(&format!("({code})")), "{args:?}: {stderr}");
    }
    for (args, code) in [
        (&["ecs", "list-clusters"][..], "InvalidSignatureException"),
        (&["sts", "get-caller-identity"][..], "SignatureDoesNotMatch"),
        (
            &["lambda", "get-function-configuration", "--function-name", "alinhou-production-Api"][..],
            "InvalidSignatureException",
        ),
    ] {
        let output = aws(&lab).env("AWS_SECRET_ACCESS_KEY", "not-the-lab-secret").args(args).output().unwrap();
        assert_ne!(output.status.code(), Some(0));
        let stderr = text(&output.stderr);
        assert!(stderr.contains(&format!("({code})")), "{args:?}: {stderr}");
    }
}

#[test]
fn the_aws_cli_assumes_a_lab_role_and_its_calls_are_signed_as_that_session() {
    let lab = Lab::start("seed");
    let config = lab.dir.path().join("aws-config");
    let role = "arn:aws:iam::123456789012:role/EvoctlOperator";
    std::fs::write(
        &config,
        format!(
            "[profile ops]\nrole_arn = {role}\nexternal_id = alinhou-ops\nrole_session_name = evoctl-test\n\
             credential_source = Environment\n\n[profile wrong-id]\nrole_arn = {role}\nexternal_id = nope\n\
             credential_source = Environment\n\n[profile no-external-id]\nrole_arn = {role}\n\
             credential_source = Environment\n\n[profile no-such-role]\n\
             role_arn = arn:aws:iam::123456789012:role/Missing\ncredential_source = Environment\n"
        ),
    )
    .unwrap();
    let with_profile = |profile: &str, args: &[&str]| {
        let output =
            aws(&lab).env("AWS_CONFIG_FILE", &config).args(["--profile", profile]).args(args).output().unwrap();
        (output.status.code(), text(&output.stdout), text(&output.stderr))
    };
    lab.control("DELETE", "/journal", None);
    let (code, stdout, stderr) = with_profile("ops", &["sts", "get-caller-identity"]);
    assert_eq!(code, Some(0), "{stderr}");
    let identity: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(identity["Arn"], "arn:aws:sts::123456789012:assumed-role/EvoctlOperator/evoctl-test");
    assert_eq!(identity["Account"], "123456789012");
    let (code, stdout, stderr) = with_profile("ops", &["ecs", "list-clusters"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["clusterArns"].as_array().unwrap().len(), 2);

    // The journal: every AssumeRole signed by the lab's user, every other call by the assumed
    // role's session (none by the user's own keys).
    let calls: Vec<(String, String)> = lab
        .journal()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["caller"].as_str().unwrap_or("-").to_owned()))
        .collect();
    let (user, session) = (
        "arn:aws:iam::123456789012:user/evoctl-lab",
        "arn:aws:sts::123456789012:assumed-role/EvoctlOperator/evoctl-test",
    );
    assert_eq!(calls[0].0, "AssumeRole", "{calls:?}");
    for (action, caller) in &calls {
        assert_eq!(caller, if action == "AssumeRole" { user } else { session }, "{action}: {calls:?}");
    }
    let actions: Vec<&str> = calls.iter().map(|(a, _)| a.as_str()).filter(|a| *a != "AssumeRole").collect();
    assert_eq!(actions, ["GetCallerIdentity", "ListClusters"]);

    // A wrong or missing ExternalId and an unknown role: AccessDenied, as AWS answers them.
    for profile in ["wrong-id", "no-external-id", "no-such-role"] {
        let (code, _, stderr) = with_profile(profile, &["sts", "get-caller-identity"]);
        assert_ne!(code, Some(0), "{profile}");
        assert!(
            stderr.contains("(AccessDenied)")
                && stderr.contains(
                    "is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/"
                ),
            "{profile}: {stderr}"
        );
    }

    // Temporary credentials need their session token.
    let issued = run(
        &lab,
        &["sts", "assume-role", "--role-arn", role, "--role-session-name", "temporary", "--external-id", "alinhou-ops"],
    );
    let credentials = &issued["Credentials"];
    assert!(credentials["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    let temporary = |token: &str| {
        let output = aws(&lab)
            .env("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"].as_str().unwrap())
            .env("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"].as_str().unwrap())
            .env("AWS_SESSION_TOKEN", token)
            .args(["sts", "get-caller-identity"])
            .output()
            .unwrap();
        (output.status.code(), text(&output.stderr))
    };
    assert_eq!(temporary(credentials["SessionToken"].as_str().unwrap()).0, Some(0));
    let (code, stderr) = temporary("not-the-token");
    assert_ne!(code, Some(0));
    assert!(stderr.contains("(InvalidClientTokenId)"), "{stderr}");
}
