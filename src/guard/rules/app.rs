//! The app side: the app Lambda's environment matches what the config expects, and a configured
//! webhook has a JWT secret that exists and is not empty.

use super::{Found, Subject, one};
use crate::guard::facts::{AppFacts, WebhookSecret};

pub(super) fn app_expectations(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let (Some(app), Some(facts)) = (&s.env.app, &s.facts.app) else { continue };
        match facts {
            AppFacts::Missing { lambda } => found.push(one(
                s.env,
                format!("Lambda {lambda} not found"),
                format!("fix `lambda` under [env.{}.app] in evoctl.toml, or deploy the app", s.env.name),
            )),
            AppFacts::Found { lambda, values } => {
                let wrong: Vec<String> = app
                    .expect
                    .iter()
                    .filter_map(|(name, want)| match values.get(name).cloned().flatten() {
                        Some(actual) if &actual == want => None,
                        Some(actual) => Some(format!("{name} is `{actual}`, expected `{want}`")),
                        None => Some(format!("{name} is not set, expected `{want}`")),
                    })
                    .collect();
                if !wrong.is_empty() {
                    found.push(one(
                        s.env,
                        format!("Lambda {lambda}: {}", wrong.join("; ")),
                        format!(
                            "set them in the app's environment for this stage and deploy (or correct [env.{}.app] expect)",
                            s.env.name
                        ),
                    ));
                }
            }
        }
    }
    found
}

pub(super) fn webhook_jwt(subjects: &[Subject<'_>]) -> Found {
    let mut found = Found::new();
    for s in subjects {
        let evidence = match &s.facts.webhook_secret {
            WebhookSecret::NoWebhook | WebhookSecret::Present => continue,
            WebhookSecret::NotConfigured => {
                "the webhook has no jwt_secret: the receiver cannot tell Evolution's calls from anyone's".to_owned()
            }
            WebhookSecret::Missing(reference) => format!("the webhook secret {reference} does not exist"),
            WebhookSecret::Empty(reference) => {
                format!(
                    "the webhook secret {reference} is empty: an empty jwt_key breaks every webhook of the instance"
                )
            }
        };
        found.push(one(
            s.env,
            evidence,
            format!(
                "set jwt_secret under [env.{}.webhook] to a non-empty ssm:/ parameter or env: variable",
                s.env.name
            ),
        ));
    }
    found
}
