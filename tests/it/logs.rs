//! `evoctl logs`: the container's awslogs group, with the lab's own log groups
//! (`GET /_lab/logs`) as the oracle.

use crate::support::{Lab, text, wait_until};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PRODUCTION_GROUP: &str = "/sst/cluster/alinhou-production-Cluster/EvolutionService/EvolutionService";

/// The lab's events of the production group that contain every one of `needles`.
fn lab_events(lab: &Lab, needles: &[&str]) -> Vec<Value> {
    let events = lab.control("GET", "/logs", None);
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["group"] == PRODUCTION_GROUP)
        .filter(|e| needles.iter().all(|n| e["message"].as_str().unwrap().contains(n)))
        .cloned()
        .collect()
}

/// A lab on the seed with `tables` added (a scenario file written in `dir`).
fn seed_with(dir: &std::path::Path, description: &str, tables: &str) -> Lab {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, format!("extends = \"seed\"\ndescription = \"{description}\"\n{tables}")).unwrap();
    Lab::start(path.to_str().unwrap())
}

/// `--output json` lines, each parsed.
fn json_lines(output: &std::process::Output) -> Vec<Value> {
    text(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// How evoctl prints an event's time (RFC 3339 UTC, milliseconds).
fn stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms % 1000
    )
}

/// The line evoctl prints for a one-line lab event.
fn printed(event: &Value) -> String {
    let task = event["stream"].as_str().unwrap().rsplit('/').next().unwrap();
    format!("{} {task} {}", stamp(event["timestamp_ms"].as_u64().unwrap()), event["message"].as_str().unwrap())
}

#[test]
fn kind_conflict_prints_exactly_the_conflict_lines_with_their_task_ids() {
    let lab = Lab::start("conflict-loop");
    let conflict = ["stream errored out", "conflict", "replaced"];
    wait_until(Duration::from_secs(30), "conflict lines from both production tasks", || {
        let streams: BTreeSet<String> =
            lab_events(&lab, &conflict).iter().map(|e| e["stream"].as_str().unwrap().to_owned()).collect();
        (streams.len() == 2 && lab_events(&lab, &conflict).len() >= 4).then_some(())
    });
    let before: Vec<String> = lab_events(&lab, &conflict).iter().map(printed).collect();
    let output = lab.evoctl().args(["logs", "production", "--since", "5m", "--kind", "conflict"]).output().unwrap();
    let after: Vec<String> = lab_events(&lab, &conflict).iter().map(printed).collect();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // Every conflict line the lab held before the read, in order, and nothing that is not one.
    assert_eq!(&lines[..before.len()], &before[..], "{stdout}");
    assert!(after.starts_with(&lines.iter().map(|l| l.to_string()).collect::<Vec<_>>()), "{stdout}");
    let tasks: BTreeSet<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    let running: BTreeSet<String> = lab.control("GET", "/state", None)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["clusterArn"].as_str().unwrap().ends_with(":cluster/alinhou-production"))
        .map(|t| t["taskArn"].as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(tasks.iter().map(|t| t.to_string()).collect::<BTreeSet<_>>(), running, "{stdout}");

    // --output json: one evoctl.log/v1 object per line, each a conflict with its task.
    let output = lab
        .evoctl()
        .args(["--output", "json", "logs", "production", "--since", "5m", "--kind", "conflict"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let records = json_lines(&output);
    assert!(records.len() >= before.len(), "{records:?}");
    for record in &records {
        assert_eq!(record["schema"], "evoctl.log/v1");
        assert_eq!(record["kind"], "conflict");
        assert_eq!(record["level"], "ERROR");
        assert!(running.contains(record["task"].as_str().unwrap()), "{record}");
        assert!(record["stream"].as_str().unwrap().ends_with(record["task"].as_str().unwrap()));
        assert!(record["message"].as_str().unwrap().contains("\"msg\":\"stream errored out\""), "{record}");
    }
    // Without --kind the other lines are there too (the Browser / CONNECTED lines of the reconnects).
    let output = lab.evoctl().args(["logs", "production", "--since", "5m"]).output().unwrap();
    let all = text(&output.stdout);
    assert!(all.lines().count() > records.len(), "{all}");
    assert!(all.contains("Browser: Evo PRODUCTION"), "{all}");
}

/// `evoctl ARGS` running, its stdout lines (each with when it arrived) and its stderr lines read
/// as they come.
fn follow(lab: &Lab, args: &[&str]) -> (Child, mpsc::Receiver<(Instant, String)>, mpsc::Receiver<String>) {
    let mut child = lab.evoctl_process().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (lines_in, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_in.send((Instant::now(), line));
        }
    });
    let (notes_in, notes) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = notes_in.send(line);
        }
    });
    (child, lines, notes)
}

#[test]
fn follow_shows_a_new_webhook_failure_within_three_seconds_and_ctrl_c_exits_130() {
    let lab = Lab::start("seed");
    lab.link_production();
    lab.control("POST", "/receiver", Some(&json!({"status": 401})));
    let (mut child, lines, notes) =
        follow(&lab, &["--output", "json", "logs", "production", "--since", "1m", "--follow", "--kind", "webhook"]);
    let following = notes.recv_timeout(Duration::from_secs(30)).expect("a note that it follows");
    assert_eq!(
        following,
        format!("following {PRODUCTION_GROUP} (streams EvolutionService/EvolutionService/*) (Ctrl-C to stop)")
    );

    // A message arrives; the receiver answers 401; the stand-in logs the failure.
    lab.control("POST", "/phone/message", Some(&json!({"instance": "alinhou-production", "text": "oi"})));
    let (seen_at, line) = lines.recv_timeout(Duration::from_secs(10)).expect("the failure is shown");
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["kind"], "webhook", "{record}");
    assert_eq!(record["webhook"], json!({"outcome": "not-retryable", "status": 401}), "{record}");
    assert!(record["message"].as_str().unwrap().contains("Erro não recuperável (401)"), "{record}");
    // Within 3 s of the stand-in writing it (the lab's timestamp of that event).
    let written = lab_events(&lab, &["Erro não recuperável (401)"]);
    let written_ms = written.first().expect("the lab holds the line")["timestamp_ms"].as_u64().unwrap();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let shown_ms = now_ms - seen_at.elapsed().as_millis() as u64;
    assert!(shown_ms.saturating_sub(written_ms) <= 3000, "shown {} ms after it was written", shown_ms - written_ms);
    assert_eq!(record["timestamp_ms"].as_u64(), Some(written_ms));

    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // The rest of stderr, to its end (the reader ends when evoctl's stderr closes).
    let rest: Vec<String> = std::iter::from_fn(|| notes.recv_timeout(Duration::from_secs(10)).ok()).collect();
    assert_eq!(rest, ["interrupted (Ctrl-C)"], "no stack trace, no error");
}

#[test]
fn a_container_that_does_not_log_to_awslogs_is_named_with_its_driver() {
    let dir = tempfile::tempdir().unwrap();
    let lab = seed_with(
        dir.path(),
        "production logs through firelens",
        "[task_definitions.alinhou-production-EvolutionService]\nlog_driver = \"awsfirelens\"\n",
    );
    let output = lab.evoctl().args(["logs", "production"]).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        text(&output.stderr),
        "error: container EvolutionService of arn:aws:ecs:us-east-1:123456789012:task-definition/alinhou-production-EvolutionService:31 logs through the awsfirelens driver, not awslogs: its lines are not in CloudWatch Logs where evoctl reads them\n  fix: read them where awsfirelens sends them, or switch the container to the awslogs driver (SST's default)\n"
    );
}

#[test]
fn a_busy_log_is_read_page_by_page_bounded_by_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let lab = seed_with(
        dir.path(),
        "a busy production log",
        &format!(
            "[log_groups.\"{PRODUCTION_GROUP}\"]\ngenerate = {{ streams = 3, lines = 4000, age_seconds = 1200 }}\n"
        ),
    );
    let busy = lab_events(&lab, &["busy line "]);
    assert_eq!(busy.len(), 12_000);
    let mut expected: Vec<&Value> = busy.iter().collect();
    expected.sort_by_key(|e| e["timestamp_ms"].as_u64().unwrap());

    lab.control("DELETE", "/journal", None);
    let output = lab
        .evoctl()
        .args(["--output", "json", "logs", "production", "--since", "30m", "--limit", "20000", "--grep", "busy line"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    let shown = json_lines(&output);
    let shown_text: Vec<&str> = shown.iter().map(|r| r["message"].as_str().unwrap()).collect();
    let expected_text: Vec<&str> = expected.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(shown_text, expected_text, "every event once, oldest first");
    let pages = lab.journal().iter().filter(|e| e["action"] == "FilterLogEvents").count();
    // About 3.2 MB of events at 1 MB a page.
    assert_eq!(pages, 4);

    // Throttling in the middle of the pages is retried by the SDK: the same events, once each.
    lab.control("DELETE", "/journal", None);
    lab.control("POST", "/faults", Some(&json!({"throttle_burst": 2, "actions": ["FilterLogEvents"]})));
    let output = lab
        .evoctl()
        .args(["--output", "json", "logs", "production", "--since", "30m", "--limit", "20000", "--grep", "busy line"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let again = json_lines(&output);
    assert_eq!(again.iter().map(|r| r["message"].as_str().unwrap()).collect::<Vec<_>>(), expected_text);
    let journal = lab.journal();
    crate::support::assert_every_throttle_retried(&journal);
    let calls = journal.iter().filter(|e| e["action"] == "FilterLogEvents").count();
    assert_eq!(calls, 4 + 2, "four pages and two throttled answers");
    lab.control("POST", "/faults", Some(&json!({})));

    // The default limit stops at 10 000 events and says so.
    let output = lab.evoctl().args(["logs", "production", "--since", "30m"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).lines().count(), 10_000);
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("warning: the window holds more than 10000 events: shown up to ")
            && stderr.ends_with("; narrow --since or raise --limit\n"),
        "{stderr}"
    );

    // --grep picks records by a regular expression; a bad one is a usage error.
    let output =
        lab.evoctl().args(["logs", "production", "--since", "30m", "--grep", "busy line 4242 of"]).output().unwrap();
    assert_eq!(text(&output.stdout).lines().count(), 1, "{}", text(&output.stdout));
    let output = lab.evoctl().args(["logs", "production", "--grep", "busy ("]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("`busy (` is not a regular expression"), "{}", text(&output.stderr));
}

/// The group staging and production share in the `shared-log-group` scenario.
const SHARED_GROUP: &str = "/ecs/alinhou/EvolutionService";
/// The earlier staging task whose conflict lines the scenario holds.
const STAGING_TASK: &str = "5a7c0e3d9b1f42c68e2d7a4b6c8f0e13";
/// An earlier production task with one line in the scenario.
const OLD_PRODUCTION_TASK: &str = "0c4d2b8e6a1f49d3b5e7c9a2f4d6b8e1";

/// The lab's live task ids in a cluster (its own state, not evoctl's reading of it).
fn task_ids(lab: &Lab, cluster: &str) -> BTreeSet<String> {
    lab.control("GET", "/state", None)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["clusterArn"].as_str().unwrap().ends_with(&format!(":cluster/{cluster}")))
        .map(|t| t["taskArn"].as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        .collect()
}

/// The lab's events of `group` written for task `task` (the last part of the stream name).
fn events_of_task(lab: &Lab, group: &str, task: &str) -> Vec<Value> {
    let events = lab.control("GET", "/logs", None);
    let mut events: Vec<Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["group"] == group && e["stream"].as_str().unwrap().rsplit('/').next() == Some(task))
        .cloned()
        .collect();
    events.sort_by_key(|e| e["timestamp_ms"].as_u64().unwrap());
    events
}

#[test]
fn in_a_shared_group_each_environment_reads_only_its_own_streams() {
    let lab = Lab::start("shared-log-group");
    lab.wait_settled();
    let staging_conflicts: Vec<String> = events_of_task(&lab, SHARED_GROUP, STAGING_TASK)
        .iter()
        .filter(|e| e["message"].as_str().unwrap().contains("stream errored out"))
        .map(printed)
        .collect();
    assert_eq!(staging_conflicts.len(), 4);

    // Staging's conflict lines are staging's, exactly.
    let output = lab.evoctl().args(["logs", "staging", "--since", "30m", "--kind", "conflict"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{}\n", staging_conflicts.join("\n")));

    // Production has none, and says where it looked.
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["logs", "production", "--since", "30m", "--kind", "conflict"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        format!("no conflict lines in {SHARED_GROUP} (streams production/EvolutionService/*) in the last 30m\n")
    );
    let reads: Vec<Value> =
        lab.journal().iter().filter(|e| e["action"] == "FilterLogEvents").map(|e| e["parameters"].clone()).collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0]["logGroupName"], SHARED_GROUP);
    assert_eq!(reads[0]["logStreamNamePrefix"], "production/EvolutionService/");
    assert_eq!(reads[0].get("logStreamNames"), None);

    // Everything production shows is production's: the earlier task's line and the live
    // task's own lines, none of staging's.
    let output = lab.evoctl().args(["logs", "production", "--since", "1h"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let old = events_of_task(&lab, SHARED_GROUP, OLD_PRODUCTION_TASK);
    assert_eq!(stdout.lines().next(), Some(printed(&old[0]).as_str()), "{stdout}");
    let mut allowed = task_ids(&lab, "alinhou-production");
    allowed.insert(OLD_PRODUCTION_TASK.to_owned());
    let shown: BTreeSet<String> = stdout.lines().map(|l| l.split(' ').nth(1).unwrap().to_owned()).collect();
    assert!(shown.is_subset(&allowed), "{shown:?} not all in {allowed:?}\n{stdout}");
    assert!(shown.len() >= 2, "the live production task's lines too: {stdout}");
    assert!(!stdout.contains(STAGING_TASK) && !stdout.contains("STAGING"), "{stdout}");
}

#[test]
fn follow_ends_quietly_with_exit_0_when_its_reader_goes() {
    let lab = Lab::start("shared-log-group");
    // `evoctl logs production --follow | head -1`
    let mut child = lab
        .evoctl_process()
        .args(["-q", "logs", "production", "--since", "1h", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let old = events_of_task(&lab, SHARED_GROUP, OLD_PRODUCTION_TASK);
    assert_eq!(first, format!("{}\n", printed(&old[0])));
    drop(stdout);
    let status =
        wait_until(Duration::from_secs(10), "evoctl to end after its reader went", || child.try_wait().unwrap());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!((status.code(), stderr.as_str()), (Some(0), ""));
}

#[test]
fn follow_shows_an_event_that_arrives_late_exactly_once() {
    let lab = Lab::start("seed");
    let (mut child, lines, notes) = follow(
        &lab,
        &["--output", "json", "logs", "production", "--since", "5m", "--follow", "--grep", "late-ingestion"],
    );
    let following = notes.recv_timeout(Duration::from_secs(30)).expect("a note that it follows");
    assert!(following.starts_with(&format!("following {PRODUCTION_GROUP} ")), "{following}");
    // A stream of its own under production's prefix, so no line of the live task's joins a record.
    let stream = "EvolutionService/EvolutionService/f0110000000000000000000000000001";
    let write = |message: &str, timestamp_ms: Option<u64>| -> u64 {
        let mut event = json!({"group": PRODUCTION_GROUP, "stream": stream, "message": message});
        if let Some(at) = timestamp_ms {
            event["timestamp_ms"] = json!(at);
        }
        lab.control("POST", "/logs", Some(&event))["timestamp_ms"].as_u64().unwrap()
    };
    let next = |what: &str| -> Value {
        let (_, line) = lines.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("{what} is shown"));
        serde_json::from_str(&line).unwrap()
    };
    let first_at = write("late-ingestion first", None);
    assert_eq!(next("the first event")["message"], "late-ingestion first");
    // Written after the first was shown, stamped 10 s before it (a writer that sends late).
    let late_at = write("late-ingestion late", Some(first_at - 10_000));
    let late = next("the late event");
    assert_eq!((late["message"].as_str(), late["timestamp_ms"].as_u64()), (Some("late-ingestion late"), Some(late_at)));
    // Two more events, each shown by a later poll, which reads the late one's time again.
    write("late-ingestion second", None);
    assert_eq!(next("the second event")["message"], "late-ingestion second");
    write("late-ingestion third", None);
    assert_eq!(next("the third event")["message"], "late-ingestion third");
    let killed = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    // The reader ends with evoctl's stdout: what is left is everything printed after the third
    // event, which is only the document `--output json` gives the interruption.
    let rest: Vec<String> = lines.iter().map(|(_, line)| line).collect();
    let rest: Value = serde_json::from_str(&rest.join("\n")).expect("one JSON document: nothing shown twice");
    assert_eq!((&rest["schema"], &rest["error"]["kind"]), (&json!("evoctl.error/v1"), &json!("interrupted")));
}

#[test]
fn without_a_stream_prefix_the_tasks_runtime_ids_name_the_streams() {
    let dir = tempfile::tempdir().unwrap();
    let lab = seed_with(
        dir.path(),
        "production logs without an awslogs-stream-prefix",
        "[task_definitions.alinhou-production-EvolutionService]\nlog_stream_prefix = \"\"\n",
    );
    lab.wait_settled();
    let tasks = lab.control("GET", "/state", None)["tasks"].clone();
    let runtime_ids: Vec<String> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["clusterArn"].as_str().unwrap().ends_with(":cluster/alinhou-production"))
        .map(|t| t["containers"][0]["runtimeId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(runtime_ids.len(), 1);
    // A line of another writer in the same group is not the environment's.
    lab.control(
        "POST",
        "/logs",
        Some(
            &json!({"group": PRODUCTION_GROUP, "stream": "other/EvolutionService/0123", "message": "not production's"}),
        ),
    );
    let own = wait_until(Duration::from_secs(20), "a line of the live task", || {
        let events = lab.control("GET", "/logs", None);
        let own: Vec<Value> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["group"] == PRODUCTION_GROUP && e["stream"] == runtime_ids[0].as_str())
            .cloned()
            .collect();
        (!own.is_empty()).then_some(own)
    });
    lab.control("DELETE", "/journal", None);
    let output = lab.evoctl().args(["--output", "json", "logs", "production", "--since", "5m"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let records = json_lines(&output);
    assert!(!records.is_empty() && !own.is_empty());
    for record in &records {
        assert_eq!(record["stream"], runtime_ids[0].as_str(), "{record}");
        assert_eq!(record["task"], runtime_ids[0].as_str(), "{record}");
    }
    let reads: Vec<Value> =
        lab.journal().iter().filter(|e| e["action"] == "FilterLogEvents").map(|e| e["parameters"].clone()).collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0]["logStreamNames"], json!(runtime_ids));
    assert_eq!(reads[0].get("logStreamNamePrefix"), None);
}
