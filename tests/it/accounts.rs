//! Environments in two AWS accounts and regions (`two-accounts`, `two-accounts-both-live`):
//! each is read with its own account's credentials, and the guard treats them exactly as two
//! environments of one account. The lab's journal (who signed each call) and task timeline are
//! the oracles.

use crate::support::{Lab, json_stdout, text};
use serde_json::{Value, json};

const STAGING_ACCOUNT: &str = "111111111111";
const PRODUCTION_ACCOUNT: &str = "222222222222";

/// The stage a journal entry's parameters are about (cluster, resource id, parameter, Lambda and
/// log group names all carry it), if exactly one.
fn stage_of(entry: &Value) -> Option<&'static str> {
    let parameters = entry["parameters"].to_string();
    match (parameters.contains("staging"), parameters.contains("production")) {
        (true, false) => Some("staging"),
        (false, true) => Some("production"),
        _ => None,
    }
}

/// The account id in a caller ARN (`arn:aws:sts::ACCOUNT:assumed-role/...`).
fn account_of(entry: &Value) -> &str {
    entry["caller"].as_str().unwrap_or_default().split(':').nth(4).unwrap_or_default()
}

fn overlapping(a: &Value, b: &Value) -> bool {
    let ms = |e: &Value, key: &str| e[key].as_f64().unwrap();
    ms(a, "start_ms") < ms(b, "end_ms") && ms(b, "start_ms") < ms(a, "end_ms")
}

#[test]
fn each_environment_is_read_with_its_own_accounts_credentials_concurrently() {
    let lab = Lab::start("two-accounts");
    lab.control("POST", "/faults", Some(&json!({"latency_ms": 150})));
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["--output", "json", "status"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let status = json_stdout(&output);
    let wheres: Vec<(&str, &str, &str)> = status["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["env"].as_str().unwrap(), e["account"].as_str().unwrap(), e["region"].as_str().unwrap()))
        .collect();
    assert_eq!(wheres, [("staging", STAGING_ACCOUNT, "us-east-1"), ("production", PRODUCTION_ACCOUNT, "sa-east-1")]);

    let journal = lab.journal();
    // One AssumeRole per account, signed by the lab's user in its own account.
    let assumed: Vec<&Value> = journal.iter().filter(|e| e["action"] == "AssumeRole").collect();
    let mut roles: Vec<&str> = assumed.iter().map(|e| e["parameters"]["RoleArn"].as_str().unwrap()).collect();
    roles.sort();
    assert_eq!(
        roles,
        ["arn:aws:iam::111111111111:role/EvoctlOperator", "arn:aws:iam::222222222222:role/EvoctlOperator"]
    );
    assert!(assumed.iter().all(|e| e["caller"] == "arn:aws:iam::999999999999:user/evoctl-lab"), "{assumed:?}");
    // Every other call is about one environment and signed in that environment's account.
    for entry in journal.iter().filter(|e| e["action"] != "AssumeRole") {
        let wanted = match stage_of(entry) {
            Some("staging") => STAGING_ACCOUNT,
            Some(_) => PRODUCTION_ACCOUNT,
            None => panic!("a call about no single environment: {entry}"),
        };
        assert_eq!(account_of(entry), wanted, "{entry}");
        assert_eq!(entry["status"], 200, "{entry}");
    }
    // The two accounts are read at the same time.
    let describe = |stage: &str| {
        journal
            .iter()
            .find(|e| e["action"] == "DescribeServices" && stage_of(e) == Some(stage))
            .unwrap_or_else(|| panic!("DescribeServices for {stage}"))
    };
    assert!(overlapping(describe("staging"), describe("production")), "{journal:?}");

    // The table says where each row is when they are in different places.
    let output = lab.evoctl().args(["status"]).output().unwrap();
    let table = text(&output.stdout);
    assert!(table.starts_with("ENV         ACCOUNT       REGION     CLUSTER"), "{table}");
    assert!(
        table.contains("\nproduction  222222222222  sa-east-1  alinhou-production  EvolutionService  1"),
        "{table}"
    );
}

#[test]
fn both_live_across_accounts_is_found_refused_and_enforced_staging_first() {
    let lab = Lab::start("two-accounts-both-live");
    lab.wait_settled();
    let output = lab.evoctl().args(["audit", "--format", "json", "--rule", "one-live-env"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(findings[0]["rule"], "one-live-env");
    assert_eq!(findings[0]["envs"], json!(["staging", "production"]));
    assert_eq!(
        findings[0]["locations"],
        json!([
            {"env": "staging", "account": STAGING_ACCOUNT, "region": "us-east-1"},
            {"env": "production", "account": PRODUCTION_ACCOUNT, "region": "sa-east-1"}
        ])
    );
    let output = lab.evoctl().args(["audit", "--rule", "one-live-env"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stdout).contains(
            "error     one-live-env  staging (111111111111 us-east-1), production (222222222222 sa-east-1)  staging (1 live task(s)) and production (1 live task(s)) are live together on number `shared`\n"
        ),
        "{}",
        text(&output.stdout)
    );

    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["connect", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).starts_with(
            "error: refused before touching Evolution: staging has 1 live task(s) (desired 1) on the number production uses\n"
        ),
        "{}",
        text(&output.stderr)
    );
    assert!(!lab.journal().iter().any(|e| e["action"] == "ExecuteCommand"), "no Evolution call before the preflight");

    let before = lab.timeline().len();
    let output = lab.evoctl().args(["enforce", "--apply"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "applied and verified: staging 0/0 desired 0\n");
    // The timeline: staging's task (in its account) went to STOPPED; production's never moved.
    let changes: Vec<(String, String)> = lab.timeline()[before..]
        .iter()
        .map(|e| (e["account"].as_str().unwrap().to_owned(), e["last_status"].as_str().unwrap().to_owned()))
        .collect();
    let staging = |status: &str| (STAGING_ACCOUNT.to_owned(), status.to_owned());
    assert_eq!(changes, [staging("DEACTIVATING"), staging("STOPPING"), staging("DEPROVISIONING"), staging("STOPPED")]);
    let journal = lab.journal();
    let writes: Vec<(&str, &str)> = journal
        .iter()
        .filter(|e| matches!(e["action"].as_str(), Some("RegisterScalableTarget" | "UpdateService")))
        .map(|e| (e["action"].as_str().unwrap(), account_of(e)))
        .collect();
    assert_eq!(writes, [("RegisterScalableTarget", STAGING_ACCOUNT), ("UpdateService", STAGING_ACCOUNT)]);

    let output = lab.evoctl().args(["audit"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert_eq!(text(&output.stdout), "audit clean: 23 rules over staging, production\n");
}

#[test]
fn a_revoked_account_is_named_and_the_other_account_is_still_read() {
    let lab = Lab::start("two-accounts");
    lab.control("POST", &format!("/accounts/{STAGING_ACCOUNT}/revoke"), None);
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["audit"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "0 finding(s): 23 rules over staging, production\nnot read: staging in account 111111111111 (profile alinhou-staging, us-east-1)\n"
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(
            "error: could not read staging in account 111111111111 (profile alinhou-staging, us-east-1): "
        ) && stderr.contains(
            "CredentialsNotLoaded: could not get credentials: AccessDenied: User: arn:aws:iam::999999999999:user/evoctl-lab is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::111111111111:role/EvoctlOperator (the other environments were audited; this audit is not clean)\n"
        ),
        "{stderr}"
    );
    // Production was read in full, in its own account.
    let journal = lab.journal();
    for action in ["DescribeServices", "DescribeTaskDefinition", "FilterLogEvents", "DescribeTasks", "GetParameter"] {
        let calls: Vec<&Value> = journal.iter().filter(|e| e["action"] == action).collect();
        assert_eq!(calls.len(), 1, "{action}: {calls:?}");
        assert_eq!((account_of(calls[0]), &calls[0]["status"]), (PRODUCTION_ACCOUNT, &json!(200)), "{action}");
    }
    // Staging got no further than AssumeRole (refused: the SDK asks again for a later call, so
    // once or more); nothing was signed in its account.
    let refused: Vec<&Value> = journal.iter().filter(|e| e["action"] == "AssumeRole" && e["status"] != 200).collect();
    assert!(!refused.is_empty(), "{journal:?}");
    for entry in &refused {
        assert_eq!(
            (&entry["parameters"]["RoleArn"], &entry["error"]),
            (&json!("arn:aws:iam::111111111111:role/EvoctlOperator"), &json!("AccessDenied"))
        );
    }
    assert!(!journal.iter().any(|e| account_of(e) == STAGING_ACCOUNT), "{journal:?}");

    let output = lab.evoctl().args(["audit", "--format", "json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5));
    let report = json_stdout(&output);
    assert_eq!(report["clean"], false);
    assert_eq!(
        report["accounts"],
        json!([{"env": "production", "account": PRODUCTION_ACCOUNT, "region": "sa-east-1"}])
    );
    assert_eq!(report["unread"][0]["envs"], json!(["staging"]));
    assert_eq!(report["unread"][0]["account"], STAGING_ACCOUNT);
}

#[test]
fn the_aws_cli_uses_the_labs_profiles_for_both_accounts() {
    let lab = Lab::start("two-accounts");
    let run = |args: &[&str]| {
        let output = crate::awscli::aws(&lab).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "aws {args:?}: {}", text(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let me = run(&["--profile", "alinhou-production", "--region", "sa-east-1", "sts", "get-caller-identity"]);
    assert_eq!(me["Account"], PRODUCTION_ACCOUNT);
    let services = run(&["--profile", "alinhou-staging", "ecs", "list-services", "--cluster", "alinhou-staging"]);
    assert_eq!(
        services["serviceArns"],
        json!(["arn:aws:ecs:us-east-1:111111111111:service/alinhou-staging/EvolutionService"])
    );
    // Production's resources are in its own account and region only.
    let elsewhere = run(&["--profile", "alinhou-production", "--region", "us-east-1", "ecs", "list-clusters"]);
    assert_eq!(elsewhere["clusterArns"], json!([]));
    // The signer of every call, in order: the user assumes production's role, which reads; the
    // user assumes staging's (its profile names the session), which reads; the CLI's cached
    // production session reads again.
    let journal = lab.journal();
    let signed: Vec<(&str, &str)> =
        journal.iter().map(|e| (e["action"].as_str().unwrap(), e["caller"].as_str().unwrap())).collect();
    let user = "arn:aws:iam::999999999999:user/evoctl-lab";
    let production = "arn:aws:sts::222222222222:assumed-role/EvoctlOperator/";
    assert_eq!(signed.len(), 5, "{signed:?}");
    assert_eq!(signed[0], ("AssumeRole", user));
    assert!(signed[1].0 == "GetCallerIdentity" && signed[1].1.starts_with(production), "{signed:?}");
    assert_eq!(signed[2], ("AssumeRole", user));
    assert_eq!(signed[3], ("ListServices", "arn:aws:sts::111111111111:assumed-role/EvoctlOperator/evoctl-staging"));
    assert_eq!(signed[4], ("ListClusters", signed[1].1), "the cached production session, the same one");
}

#[test]
fn a_named_profile_supplies_the_credentials_and_a_role_goes_on_top_of_it() {
    let lab = Lab::start("seed");
    let (key, secret) =
        (lab.ready["access_key_id"].as_str().unwrap(), lab.ready["secret_access_key"].as_str().unwrap());
    // credential_process, as an SSO helper or a vault would be: the lab's user's keys.
    let helper = lab.dir.path().join("creds.sh");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\nprintf '%s' '{{\"Version\": 1, \"AccessKeyId\": \"{key}\", \"SecretAccessKey\": \"{secret}\"}}'\n"),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let aws_config = lab.dir.path().join("aws-config");
    std::fs::write(&aws_config, format!("[profile proc]\ncredential_process = {}\n", helper.display())).unwrap();
    // Production assumes the seed's operator role on top of that profile; staging uses it as is.
    let config = std::fs::read_to_string(lab.config_path()).unwrap().replace(
        "[env.production]\n",
        "[env.production]\naws = { role_arn = \"arn:aws:iam::123456789012:role/EvoctlOperator\", external_id = \"alinhou-ops\" }\n",
    );
    let config_path = lab.dir.path().join("roles.toml");
    std::fs::write(&config_path, config).unwrap();
    lab.control("DELETE", "/journal", None);
    // Keys left in the environment are not the named profile's: they must not be used.
    let output = lab
        .evoctl()
        .env("AWS_CONFIG_FILE", &aws_config)
        .env("AWS_ACCESS_KEY_ID", "AKIASTALEKEY00000000")
        .env("AWS_SECRET_ACCESS_KEY", "stale")
        .args(["--profile", "proc", "--config"])
        .arg(&config_path)
        .args(["status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let journal = lab.journal();
    for entry in &journal {
        let want = match (entry["action"].as_str(), stage_of(entry)) {
            (Some("AssumeRole"), _) | (_, Some("staging")) => "arn:aws:iam::123456789012:user/evoctl-lab",
            _ => "arn:aws:sts::123456789012:assumed-role/EvoctlOperator/evoctl",
        };
        assert_eq!(entry["caller"], want, "{entry}");
        assert_eq!(entry["status"], 200, "{entry}");
    }
    assert_eq!(journal.iter().filter(|e| e["action"] == "AssumeRole").count(), 1, "{journal:?}");
}

/// The keys the secrets scenarios keep in SSM: an audit must never print them.
const PARAMETER_KEYS: &[&str] = &["lab-staging-ssm-api-key-0c6e2a91d4", "lab-production-ssm-api-key-5b8f31e7a2"];

/// A bare parameter name in a task definition is the parameter of the task's own account and
/// region: one name in two accounts is two secrets, shared only when their values are. Each
/// account's parameter is read by its own role, by full ARN.
#[test]
fn one_parameter_name_in_two_accounts_is_shared_only_when_the_values_are() {
    let lab = Lab::start("two-accounts-secrets");
    lab.wait_settled();
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().arg("audit").output().unwrap();
    assert_eq!(text(&output.stdout), "audit clean: 23 rules over staging, production\n");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let mut reads: Vec<(String, String, u64)> = lab
        .journal()
        .iter()
        .filter(|e| e["action"] == "GetParameter" && e["parameters"]["Name"].as_str().unwrap().contains("api-key"))
        .map(|e| {
            (
                account_of(e).to_owned(),
                e["parameters"]["Name"].as_str().unwrap().to_owned(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    reads.sort();
    assert_eq!(
        reads,
        [
            (
                STAGING_ACCOUNT.to_owned(),
                "arn:aws:ssm:us-east-1:111111111111:parameter/alinhou/evolution-api-key".to_owned(),
                200
            ),
            (
                PRODUCTION_ACCOUNT.to_owned(),
                "arn:aws:ssm:sa-east-1:222222222222:parameter/alinhou/evolution-api-key".to_owned(),
                200
            ),
        ]
    );

    let lab = Lab::start("two-accounts-shared-key");
    lab.wait_settled();
    let output = lab.evoctl().args(["audit", "--format", "json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report = json_stdout(&output);
    assert_eq!(
        report["findings"],
        json!([{
            "rule": "shared-api-key",
            "severity": "error",
            "envs": ["staging", "production"],
            "locations": [
                {"env": "staging", "account": STAGING_ACCOUNT, "region": "us-east-1"},
                {"env": "production", "account": PRODUCTION_ACCOUNT, "region": "sa-east-1"},
            ],
            "evidence": "staging and production use the same AUTHENTICATION_API_KEY (compared by SHA-256 of the values, read from arn:aws:ssm:us-east-1:111111111111:parameter/alinhou/evolution-api-key and arn:aws:ssm:sa-east-1:222222222222:parameter/alinhou/evolution-api-key)",
            "fix": "give each environment its own AUTHENTICATION_API_KEY: with one key, staging tooling can drive production",
        }]),
        "{report:#}"
    );
    for key in PARAMETER_KEYS {
        assert!(!report.to_string().contains(key), "the audit printed a parameter's value");
        assert!(!text(&output.stderr).contains(key), "the audit printed a parameter's value");
    }
}

/// As the ECS agent does, the lab gives the running task the parameter's value: the exec'd
/// process sees it (checked by its SHA-256, so the test prints no key) and the task's Evolution
/// accepts the key evoctl reads there.
#[test]
fn the_task_gets_the_value_of_the_parameter_its_definition_names() {
    use sha2::{Digest, Sha256};
    let lab = Lab::start("two-accounts-secrets");
    lab.wait_settled();
    let program = "process.stdout.write(require('crypto').createHash('sha256').update(process.env.AUTHENTICATION_API_KEY).digest('hex'))";
    let output = lab.evoctl().args(["exec", "production", "--", "node", "-e", program]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), hex::encode(Sha256::digest(PARAMETER_KEYS[1])));
    let output = lab.evoctl().args(["instance", "list", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

/// A DPoP key as `aws login` keeps one in its token cache (a P-256 key made for these tests).
const DPOP_KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKA/QKo+Sp8/qGKurzsj3QwziyQhF7YDBwS6gb8rqRnwoAoGCCqGSM49\nAwEHoUQDQgAE0eSkdXSA8mIl9PSj5/j1OrW0l5d0dXXT2yQ+YBNqf1dL2JfM9kl+\n0ieSTqwi2y0A1237R18/cxPy+f6NvzeKDA==\n-----END EC PRIVATE KEY-----\n";

/// What `aws login --profile signin` leaves behind: `login_session` in the profile of
/// ~/.aws/config, and the session's token in ~/.aws/login/cache/SHA256(login_session).json
/// (its access key `access_key_id`, expiring at `expires_at`). Returns the cache file.
fn write_aws_login(home: &std::path::Path, login: &Value, access_key_id: &str, expires_at: &str) -> std::path::PathBuf {
    use sha2::Digest;
    let session = login["login_session"].as_str().unwrap();
    std::fs::create_dir_all(home.join(".aws/login/cache")).unwrap();
    std::fs::write(
        home.join(".aws/config"),
        format!("[profile signin]\nlogin_session = {session}\nregion = us-east-1\n"),
    )
    .unwrap();
    let token = json!({
        "accessToken": {
            "accessKeyId": access_key_id,
            "secretAccessKey": login["secret_access_key"],
            "sessionToken": login["session_token"],
            "accountId": login["account_id"],
            "expiresAt": expires_at,
        },
        "tokenType": "aws_sigv4",
        "refreshToken": login["refresh_token"],
        "idToken": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJldm9jdGwtbGFiIn0.c2lnbmF0dXJl",
        "clientId": login["client_id"],
        "dpopKey": DPOP_KEY,
    });
    let path = home.join(format!(".aws/login/cache/{}.json", hex::encode(sha2::Sha256::digest(session))));
    std::fs::write(&path, token.to_string()).unwrap();
    path
}

/// A profile `aws login` wrote supplies `status`'s credentials: an expired session token is
/// refreshed once through AWS Sign-In (CreateOAuth2Token with a DPoP proof), the refreshed one
/// is written back to the cache and signs every call; the next run uses it without a refresh.
#[test]
fn a_profile_from_aws_login_is_refreshed_through_sign_in_and_signs_status() {
    let lab = Lab::start("seed");
    let login = lab.control("POST", "/login", None);
    let user = "arn:aws:iam::123456789012:user/evoctl-lab";
    assert_eq!(login["login_session"], user);
    // Keys the lab does not know: a call signed with them would be refused, so a status that
    // works was signed with the refreshed ones.
    let cache = write_aws_login(lab.dir.path(), &login, "ASIAEXPIREDLOGIN0000", "2026-01-01T00:00:00Z");
    lab.control("DELETE", "/journal", None);
    let status = || {
        lab.evoctl()
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .args(["--profile", "signin", "status"])
            .output()
            .unwrap()
    };
    let output = status();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let journal = lab.journal();
    let refreshes: Vec<&Value> = journal.iter().filter(|e| e["action"] == "CreateOAuth2Token").collect();
    assert_eq!(refreshes.len(), 1, "{journal:?}");
    assert_eq!(
        refreshes[0]["parameters"],
        json!({"clientId": "arn:aws:signin:::devtools/same-device", "grantType": "refresh_token"})
    );
    assert_eq!(journal[0]["action"], "CreateOAuth2Token", "the refresh comes before any call: {journal:?}");
    for entry in &journal {
        assert_eq!((&entry["caller"], &entry["status"]), (&json!(user), &json!(200)), "{entry}");
    }
    assert!(journal.iter().any(|e| e["action"] == "DescribeServices"), "{journal:?}");
    // The cache holds the refreshed session: new keys, a rotated refresh token.
    let cached: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert_ne!(cached["accessToken"]["accessKeyId"], "ASIAEXPIREDLOGIN0000");
    assert!(cached["accessToken"]["accessKeyId"].as_str().unwrap().starts_with("ASIA"), "{cached}");
    assert_ne!(cached["refreshToken"], login["refresh_token"]);
    assert_eq!(cached["dpopKey"], DPOP_KEY);

    // Fifteen minutes left: used as it is.
    lab.control("DELETE", "/journal", None);
    let output = status();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let journal = lab.journal();
    assert!(journal.iter().any(|e| e["action"] == "DescribeServices"), "{journal:?}");
    assert!(journal.iter().all(|e| e["action"] != "CreateOAuth2Token" && e["caller"] == user), "{journal:?}");
}

/// A console session that has ended (Sign-In refuses its refresh token) says to sign in again.
#[test]
fn an_ended_aws_login_session_says_to_sign_in_again() {
    let lab = Lab::start("seed");
    let mut login = lab.control("POST", "/login", None);
    login["refresh_token"] = json!("lab-login-refresh-ended");
    write_aws_login(lab.dir.path(), &login, "ASIAEXPIREDLOGIN0000", "2026-01-01T00:00:00Z");
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["--profile", "signin", "status"]).output().unwrap();
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let (_action, said) = stderr.split_once(" failed: ").expect("an AWS call failed");
    assert_eq!(
        said,
        "LoginSessionEnded: could not get credentials: CredentialsError: an error occurred while loading credentials: failed to refresh cached Login token: Your session has expired. Please reauthenticate.: AccessDeniedException: The session has expired; sign in again\n  fix: the console session `aws login` opened has ended or cannot be refreshed: sign in again with `aws login` (the same profile), then retry\n"
    );
    // Only refreshes, each refused: no call went out with the expired keys.
    let journal = lab.journal();
    assert!(!journal.is_empty(), "no refresh was tried");
    assert!(journal.iter().all(|e| e["action"] == "CreateOAuth2Token" && e["status"] == 400), "{journal:?}");
}
