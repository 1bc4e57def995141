//! One environment, reached: its config, the AWS clients, the checked exec target and an
//! Evolution API driver over it. Shared by the commands that talk to Evolution.

use super::Context;
use crate::config::Environment;
use crate::error::{Error, Result};
use crate::evolution::Driver;
use crate::evolution::api::WebhookRequest;
use crate::exec::run::RunOptions;
use crate::exec::target::{self, ExecTarget};
use crate::guard::plan;
use crate::runbook::preflight;
use std::time::Duration;

/// Config, AWS and the checked exec target for one environment.
pub struct Reach {
    pub env: Environment,
    pub aws: crate::aws::Aws,
    pub target: ExecTarget,
}

impl Reach {
    pub async fn new(context: &Context, env_name: &str) -> Result<Reach> {
        let config = context.config()?;
        let env = config.environment(env_name)?.clone();
        let aws = context.aws_for(&config, &env).await?;
        let target = target::resolve(&aws.ecs(), &env, None).await?;
        Ok(Reach { env, aws, target })
    }

    /// Reach an environment to read only: the oldest ready task even when there are several
    /// (two tasks on one number is when an operator most needs to see the instance).
    pub async fn for_reading(context: &Context, env_name: &str) -> Result<Reach> {
        let config = context.config()?;
        let env = config.environment(env_name)?.clone();
        let aws = context.aws_for(&config, &env).await?;
        let target = target::resolve_any(&aws.ecs(), &env).await?;
        Ok(Reach { env, aws, target })
    }

    /// Reach an environment for a change that can link its number (create, connect, restart):
    /// refused (exit 4) while another environment of the same number has or wants a task.
    pub async fn for_linking(context: &Context, env_name: &str) -> Result<Reach> {
        let config = context.config()?;
        let env = config.environment(env_name)?.clone();
        let others: Vec<&Environment> =
            config.environments.iter().filter(|e| e.name != env.name && e.number == env.number).collect();
        // Every environment of the number, each read with its own account's credentials.
        let fleet = crate::aws::Fleet::load(
            &context.aws_flags(),
            &config.aws,
            &std::iter::once(&env).chain(others.iter().copied()).collect::<Vec<_>>(),
        )
        .await?;
        let aws = fleet.of(&env).clone();
        let ecs = aws.ecs();
        let (target, observed) = tokio::try_join!(
            target::resolve(&ecs, &env, None),
            crate::aws::for_each_env(others.iter().copied(), |e| plan::observe(fleet.of(e), e)),
        )?;
        let live: Vec<String> = preflight::others_on_number(&env, others.iter().copied().zip(&observed))
            .into_iter()
            .map(|problem| problem.message)
            .collect();
        if !live.is_empty() {
            return Err(Error::refused(
                format!("refused: {}; linking now would put two connections on one number", live.join("; ")),
                format!(
                    "bring every environment to its configured scaling first: `evoctl enforce --apply` (or `evoctl connect {} --enforce`)",
                    env.name
                ),
            ));
        }
        Ok(Reach { env, aws, target })
    }

    /// The instance name: the argument, else the environment's configured instance.
    pub fn instance_name<'a>(&'a self, name: &'a Option<String>) -> &'a str {
        name.as_deref().unwrap_or(&self.env.instance)
    }

    /// `name` when it is not the environment's own instance (a fix then names it).
    pub fn named<'a>(&self, name: &'a str) -> Option<&'a str> {
        (name != self.env.instance).then_some(name)
    }

    /// How a command line names the environment and `name` (`production`, `production named1`).
    pub fn subject(&self, name: &str) -> String {
        crate::evolution::subject(&self.env.name, self.named(name))
    }

    pub fn driver(&self) -> Driver<'_> {
        let options = RunOptions::new(Duration::from_secs(120));
        Driver { aws: &self.aws, target: &self.target, options }
    }

    /// The environment's webhook as the API wants it (no secret: that goes over stdin).
    pub fn webhook_request(&self) -> Option<WebhookRequest> {
        self.env.webhook.as_ref().map(WebhookRequest::from_config)
    }
}
