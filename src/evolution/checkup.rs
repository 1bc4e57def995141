//! `doctor`'s in-task layers in one exec session. One program ([`program::Mode::Checkup`]) runs
//! every check in the container in order and prints one JSON line per layer the moment it
//! completes; [`Driver::checkup`] reads each line into its typed answer ([`Step`]) and hands it
//! to the caller as it arrives, so the layers can be judged and shown while the next ones run.
//! The program stops where the following layers could not be judged (no answer from the API, a
//! refused key, no instance), so a caller knows every step it will get from what it got.
//!
//! [`program::Mode::Checkup`]: super::program::Mode::Checkup

use super::api::{self, InstanceInfo, ServerInfo, WebhookRow};
use super::probe::{self, Reach, WebhookProbe};
use super::program::Mode;
use super::{Acted, Driver, answer, no_answer, state_path};
use crate::error::Result;
use crate::exec::run::OutputSink;
use crate::output::sanitize::quote_line;
use serde_json::{Value, json};
use std::time::Duration;

/// What the checkup looks at.
#[derive(Debug, Clone, Copy)]
pub struct Checkup<'a> {
    /// The instance the instance and webhook layers read.
    pub instance: &'a str,
    /// The key in the container is known to be a public default: the layers after the API key
    /// are not judged, so the program stops after verify-creds.
    pub key_is_a_default: bool,
    /// Read the instance's webhook row.
    pub webhook: bool,
    /// Probe the webhook receiver from the task, as `webhook test` does.
    pub probe: Option<ProbeSettings<'a>>,
    /// The directory whose mount to read from `/proc/mounts` (the session's keys, when the task
    /// definition claims a persistent volume for them).
    pub session_dir: Option<&'a str>,
}

/// The mount that holds a directory, as `/proc/mounts` in the task shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSeen {
    pub source: String,
    pub mount_point: String,
    pub fs_type: String,
}

/// The Baileys the image ships (its `node_modules/baileys/package.json`), and whether its
/// socket code handles WhatsApp's `companion_reg_refresh` (no released Baileys does); read by
/// the same program code as connect's watch. `version: None`: the package was not found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct BaileysSeen {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub handles_refresh: Option<bool>,
}

/// The webhook probe's settings.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings<'a> {
    /// The secret evoctl.toml names, compared in the task with the row's `jwt_key` (sent over
    /// the data channel; `None`: not compared).
    pub expected: Option<&'a str>,
    pub timeout: Duration,
}

/// One layer's answer from the container, in the order the program sends them.
#[derive(Debug)]
pub enum Step {
    /// The session runs node (the program itself is the trial); its version.
    Trial { node: String },
    /// The mount holding the session's key directory (`Err`: why it could not be read).
    SessionStore(std::result::Result<MountSeen, String>),
    /// `GET /`, with the Baileys the image ships (read beside it).
    Evolution(Result<ServerInfo>, BaileysSeen),
    /// `GET /` had not answered when the route check beside it failed (2.3.7 fetches WhatsApp
    /// Web's version on every `GET /` with no timeout); the checkup went on without it.
    EvolutionWaiting { waited: Duration },
    /// `POST /verify-creds` with the container's own key: whether it is accepted.
    ApiKey(Result<bool>),
    /// The route from the task to WhatsApp.
    Reach(Result<Reach>),
    /// connectionState: the live state (a 404 error when there is no such instance).
    Instance(Result<String>),
    /// fetchInstances for the instance (empty when it is not loaded here).
    InstanceRow(Result<Vec<InstanceInfo>>),
    /// The instance's stored webhook.
    Webhook(Result<Option<WebhookRow>>),
    /// The webhook probe's answer.
    Probe(Result<WebhookProbe>),
}

/// How the program ended: its exit status and whatever it printed that was no step (quoted,
/// for a message when it ended before the steps a caller expected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckupEnd {
    pub status: i32,
    pub stray: String,
}

impl Driver<'_> {
    /// Run the checkup in one exec session, handing each step to `on_step` as it arrives.
    pub async fn checkup(&self, plan: &Checkup<'_>, on_step: &mut (dyn FnMut(Step) + Send)) -> Result<CheckupEnd> {
        let expected = plan.probe.and_then(|p| p.expected);
        let request = json!({
            "checkup": {
                "reach": probe::reach_request(probe::REACH_TIMEOUT)?,
                "key_is_a_default": plan.key_is_a_default,
                "state_path": state_path(plan.instance),
                "find_path": api::instances_path(plan.instance),
                "webhook_path": plan.webhook.then(|| api::webhook_path(plan.instance)),
                "probe": plan.probe.map(|p| probe::probe_request(plan.instance, p.expected.is_some(), p.timeout)),
                "session_dir": plan.session_dir,
            },
        });
        let mut lines =
            StepLines { acted: self.acted(Some(plan.instance)), on_step, partial: Vec::new(), stray: Vec::new() };
        let status = self.stream(Mode::Checkup, &request, expected, &mut lines).await?;
        let stray = [lines.stray.as_slice(), lines.partial.as_slice()].concat();
        Ok(CheckupEnd { status, stray: quote_line(&String::from_utf8_lossy(&stray), 300) })
    }
}

/// Splits the program's stdout into lines and hands each step on; anything else is kept.
struct StepLines<'a, 'f> {
    acted: Acted<'a>,
    on_step: &'f mut (dyn FnMut(Step) + Send),
    partial: Vec<u8>,
    stray: Vec<u8>,
}

impl OutputSink for StepLines<'_, '_> {
    fn stdout(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            match serde_json::from_slice::<Value>(&line).ok().and_then(|line| read_step(&line, self.acted)) {
                Some(step) => (self.on_step)(step),
                None => self.stray.extend_from_slice(&line),
            }
        }
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.stray.extend_from_slice(bytes);
    }
}

/// One line of the program as its step; `None` for a line that is none.
fn read_step(line: &Value, acted: Acted<'_>) -> Option<Step> {
    let instance = acted.instance.unwrap_or_default();
    let env = Acted { env: acted.env, instance: None };
    let api_answer = || match line["error"].as_str() {
        Some(problem) => Err(no_answer(problem, acted.env)),
        None => Ok(answer(line["status"].as_u64().unwrap_or(0) as u16, &line["body"])),
    };
    Some(match line["id"].as_str()? {
        "exec-trial" => Step::Trial { node: line["node"].as_str()?.to_owned() },
        "evolution" if line["waiting"] == true => {
            Step::EvolutionWaiting { waited: Duration::from_millis(line["waited_ms"].as_u64().unwrap_or(0)) }
        }
        "session-store" => Step::SessionStore(match line["error"].as_str() {
            Some(problem) => Err(quote_line(problem, 300)),
            None => {
                let mount = &line["mount"];
                let text = |field: &str| mount[field].as_str().map(|t| quote_line(t, 200));
                Ok(MountSeen { source: text("source")?, mount_point: text("mount_point")?, fs_type: text("fs_type")? })
            }
        }),
        "evolution" => Step::Evolution(
            api_answer().and_then(|answer| api::read_server_info(answer, env)),
            serde_json::from_value(line["baileys"].clone()).unwrap_or_default(),
        ),
        "api-key" => Step::ApiKey(api_answer().and_then(|answer| {
            match super::licence_required(&answer, "POST /verify-creds", acted.env) {
                Some(err) => Err(err),
                None => Ok(answer.status == 200),
            }
        })),
        "whatsapp-reach" => Step::Reach(probe::read_reach(&line["reach"], acted.env)),
        "instance" => Step::Instance(api_answer().and_then(|answer| api::live_state(answer, instance, acted))),
        "instance-health" => Step::InstanceRow(api_answer().and_then(|answer| api::read_instances(answer, true, env))),
        "webhook" => Step::Webhook(api_answer().and_then(|answer| api::read_webhook(answer, acted))),
        "webhook-delivery" => Step::Probe(probe::read_probe(line, instance, acted)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn steps(stream: &[u8]) -> (Vec<Step>, Vec<u8>) {
        let mut seen = Vec::new();
        let mut on_step = |step| seen.push(step);
        let mut lines = StepLines {
            acted: Acted { env: "production", instance: Some("alinhou-production") },
            on_step: &mut on_step,
            partial: Vec::new(),
            stray: Vec::new(),
        };
        for chunk in stream.chunks(5) {
            lines.stdout(chunk);
        }
        let stray = lines.stray.clone();
        drop(lines);
        (seen, stray)
    }

    #[test]
    fn each_line_becomes_its_layers_answer_as_it_arrives() {
        let stream = concat!(
            "{\"id\":\"exec-trial\",\"node\":\"v20.11.1\"}\n",
            "{\"id\":\"evolution\",\"baileys\":{\"version\":\"7.0.0-rc.9\",\"handles_refresh\":false},\"status\":200,\"body\":\"{\\\"status\\\":200,\\\"message\\\":\\\"Welcome\\\",\\\"version\\\":\\\"2.3.7\\\",\\\"clientName\\\":\\\"evolution_production\\\"}\"}\n",
            "noise\n",
            "{\"id\":\"api-key\",\"status\":401,\"body\":\"{}\"}\n",
            "{\"id\":\"instance\",\"status\":404,\"body\":\"{\\\"status\\\":404,\\\"error\\\":\\\"Not Found\\\",\\\"response\\\":{\\\"message\\\":[\\\"The \\\\\\\"alinhou-production\\\\\\\" instance does not exist\\\"]}}\"}\n",
            "{\"id\":\"webhook\",\"status\":0,\"error\":\"TypeError: fetch failed\"}\n",
        );
        let (seen, stray) = steps(stream.as_bytes());
        assert_eq!(stray, b"noise\n");
        match &seen[..] {
            [
                Step::Trial { node },
                Step::Evolution(Ok(info), baileys),
                Step::ApiKey(Ok(false)),
                Step::Instance(Err(Error::Evolution { status: 404, .. })),
                Step::Webhook(Err(no_answer)),
            ] => {
                assert_eq!(node, "v20.11.1");
                assert_eq!((info.version.as_str(), info.client_name.as_str()), ("2.3.7", "evolution_production"));
                assert_eq!(baileys, &BaileysSeen { version: Some("7.0.0-rc.9".into()), handles_refresh: Some(false) });
                assert!(no_answer.to_string().contains("did not answer on 127.0.0.1:$SERVER_PORT"), "{no_answer}");
            }
            other => panic!("{other:?}"),
        }
    }
}
