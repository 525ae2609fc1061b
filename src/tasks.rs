//! The process around the stages: the async runtime, logging, signals, and supervision of the
//! stages' tasks. A stage whose task stops by itself (they only stop on an error or at
//! shutdown) stops the whole process with a non-zero exit, so that systemd or Kubernetes
//! restarts it: a half-running monitor is worse than a restarted one.

use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use vigil_dashboards::{Health, StageHandle};

/// The runtime every long-running command runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Logs go to standard error, filtered by `VIGIL_LOG` (`info` unless set; `warn`,
/// `vigil_bus=debug`, … as `RUST_LOG` takes them); librdkafka's lines come through here.
/// Colours only on a terminal; `VIGIL_LOG_FORMAT=json` writes one JSON object a line for log
/// shippers.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if std::env::var("VIGIL_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}

/// Returns on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// The exit code of a command whose tasks succeeded or not.
pub fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The named tasks of a running command, supervised together. Tasks start when spawned;
/// each is a stage of the health registry (`/healthz`, `/readyz`), dead once it stops.
#[derive(Default)]
pub struct TaskSet {
    tasks: Vec<(String, JoinHandle<anyhow::Result<()>>)>,
    health: Health,
}

impl TaskSet {
    /// An empty set, with its own health registry.
    pub fn new() -> TaskSet {
        TaskSet::default()
    }

    /// The health registry its stages report to.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Runs `task` as the stage `name`; the returned handle reports its progress.
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) -> StageHandle {
        let name = name.into();
        let stage = self.health.register(name.clone());
        stage.set_running();
        let handle = stage.clone();
        let task = async move {
            let result = task.await;
            match &result {
                Ok(()) => handle.set_dead("stopped"),
                Err(e) => handle.set_dead(format!("{e:#}")),
            }
            result
        };
        self.tasks.push((name, tokio::spawn(task)));
        stage
    }

    /// Runs until SIGINT or SIGTERM, `shutdown`, or until a task stops by itself; then cancels
    /// `shutdown` and waits for the rest. Returns whether every task succeeded (a task that
    /// stopped by itself before shutdown counts as a failure even when it returned `Ok`).
    pub async fn supervise(self, shutdown: &CancellationToken) -> bool {
        let mut set = self.into_join_set();
        let mut ok = true;
        tokio::select! {
            _ = wait_for_signal() => tracing::info!("shutting down"),
            _ = shutdown.cancelled() => tracing::info!("shutting down"),
            Some(joined) = set.join_next() => {
                let (name, result) = flatten(joined);
                match result {
                    Ok(()) => tracing::error!("{name} stopped by itself; shutting down"),
                    Err(e) => tracing::error!("{name} failed: {e:#}; shutting down"),
                }
                ok = false;
            }
        }
        shutdown.cancel();
        ok & join_all(set).await
    }

    /// Waits for every task, logging each failure; returns whether all succeeded.
    pub async fn join(self) -> bool {
        join_all(self.into_join_set()).await
    }

    fn into_join_set(self) -> JoinSet<(String, anyhow::Result<()>)> {
        let mut set = JoinSet::new();
        for (name, handle) in self.tasks {
            set.spawn(async move {
                let result = match handle.await {
                    Ok(result) => result,
                    Err(e) => Err(anyhow::anyhow!("panicked: {e}")),
                };
                (name, result)
            });
        }
        set
    }
}

async fn join_all(mut set: JoinSet<(String, anyhow::Result<()>)>) -> bool {
    let mut ok = true;
    while let Some(joined) = set.join_next().await {
        if let (name, Err(e)) = flatten(joined) {
            tracing::error!("{name} failed: {e:#}");
            ok = false;
        }
    }
    ok
}

/// A joined task's name and result, a panic counting as an error.
fn flatten(
    joined: Result<(String, anyhow::Result<()>), tokio::task::JoinError>,
) -> (String, anyhow::Result<()>) {
    match joined {
        Ok(done) => done,
        Err(e) => ("a task".to_owned(), Err(anyhow::anyhow!("panicked: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_fails_stops_the_others_and_the_set_reports_it() {
        let shutdown = CancellationToken::new();
        let mut tasks = TaskSet::new();
        let token = shutdown.clone();
        tasks.spawn("waits for shutdown", async move {
            token.cancelled().await;
            Ok(())
        });
        tasks.spawn("fails", async { anyhow::bail!("disk full") });
        let health = tasks.health().clone();
        assert!(!tasks.supervise(&shutdown).await);
        let report = health.report();
        assert!(!report.alive, "a failed stage makes the process unhealthy");
        let failed = report.stages.iter().find(|s| s.name == "fails").unwrap();
        assert_eq!(failed.reason.as_deref(), Some("disk full"));
        assert!(shutdown.is_cancelled());
    }

    #[tokio::test]
    async fn shutdown_with_healthy_tasks_is_success() {
        let shutdown = CancellationToken::new();
        let mut tasks = TaskSet::new();
        let token = shutdown.clone();
        tasks.spawn("waits", async move {
            token.cancelled().await;
            Ok(())
        });
        shutdown.cancel();
        assert!(tasks.supervise(&shutdown).await);
    }
}
