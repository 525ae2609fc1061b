//! [`Health`]: the registry that each stage of a process reports into, and the reports
//! `/healthz` (liveness) and `/readyz` (readiness) answer with.
//!
//! A stage registers once and keeps the [`StageHandle`] it gets (a cheap clone: hand one to
//! every task of the stage). It says when it is running, when it died and why, and after each
//! commit how far behind it still is. From that the registry derives:
//!
//! - **alive**: no stage is dead. A dead stage makes `/healthz` answer 503, so that systemd or
//!   Kubernetes restarts a process that would otherwise stay up blind.
//! - **ready**: every stage is running and none is stuck (has lag, yet made no progress for
//!   [`Health::stuck_after`]). `/readyz` answers 503 until then, and whenever it stops being so.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// How long a stage with lag may go without a commit before it counts as stuck.
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(120);

/// Where a stage is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Life {
    Starting,
    Running,
    Dead(String),
}

#[derive(Debug)]
struct StageState {
    life: Life,
    /// When the stage was registered or last became running: the start of the stuck clock
    /// until the first commit.
    since: DateTime<Utc>,
    last_commit: Option<DateTime<Utc>>,
    lag: u64,
}

#[derive(Debug)]
struct Stage {
    name: String,
    state: Mutex<StageState>,
}

impl Stage {
    fn lock(&self) -> MutexGuard<'_, StageState> {
        // The state is plain data, valid after any panic of a holder: keep using it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A stage's side of the registry: cheap to clone, every clone reports for the same stage.
#[derive(Debug, Clone)]
pub struct StageHandle {
    stage: Arc<Stage>,
}

impl StageHandle {
    /// The stage's name, as registered.
    pub fn name(&self) -> &str {
        &self.stage.name
    }

    /// The stage runs (it is ready once it is not stuck).
    pub fn set_running(&self) {
        let mut state = self.stage.lock();
        if state.life != Life::Running {
            state.life = Life::Running;
            state.since = Utc::now();
        }
    }

    /// The stage died: the process is no longer alive until it is running again.
    pub fn set_dead(&self, reason: impl Into<String>) {
        self.stage.lock().life = Life::Dead(reason.into());
    }

    /// Progress: the time of the stage's last commit (`None` before its first) and how far
    /// behind its input it still is, in the stage's own unit (messages, bytes). A stage with
    /// lag whose last commit is older than [`Health::stuck_after`] is stuck.
    pub fn report_progress(&self, last_commit: Option<DateTime<Utc>>, lag: u64) {
        let mut state = self.stage.lock();
        if last_commit.is_some() {
            state.last_commit = last_commit;
        }
        state.lag = lag;
    }
}

#[derive(Debug, Default)]
struct Registry {
    stages: Vec<Arc<Stage>>,
}

/// The registry of a process's stages. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Health {
    registry: Arc<Mutex<Registry>>,
    stuck_after: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(DEFAULT_STUCK_AFTER)
    }
}

impl Health {
    /// An empty registry; a stage with lag and no commit for `stuck_after` is stuck.
    pub fn new(stuck_after: Duration) -> Health {
        Health {
            registry: Arc::new(Mutex::new(Registry::default())),
            stuck_after,
        }
    }

    /// How long a stage with lag may go without a commit before it counts as stuck.
    pub fn stuck_after(&self) -> Duration {
        self.stuck_after
    }

    /// Adds a stage, starting (alive, not ready until [`StageHandle::set_running`]).
    pub fn register(&self, name: impl Into<String>) -> StageHandle {
        let stage = Arc::new(Stage {
            name: name.into(),
            state: Mutex::new(StageState {
                life: Life::Starting,
                since: Utc::now(),
                last_commit: None,
                lag: 0,
            }),
        });
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stages
            .push(Arc::clone(&stage));
        StageHandle { stage }
    }

    /// The state of every stage now.
    pub fn report(&self) -> HealthReport {
        self.report_at(Utc::now())
    }

    fn report_at(&self, now: DateTime<Utc>) -> HealthReport {
        let stages: Vec<Arc<Stage>> = self
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stages
            .clone();
        let stuck_after =
            chrono::Duration::from_std(self.stuck_after).unwrap_or(chrono::Duration::MAX);
        let stages: Vec<StageReport> = stages
            .iter()
            .map(|stage| {
                let state = stage.lock();
                let commit_age = state
                    .last_commit
                    .map(|t| now.signed_duration_since(t).max(chrono::Duration::zero()));
                let quiet_since = state.last_commit.unwrap_or(state.since).max(state.since);
                let stuck = state.life == Life::Running
                    && state.lag > 0
                    && now.signed_duration_since(quiet_since) > stuck_after;
                let (status, reason) = match &state.life {
                    Life::Starting => (StageStatus::Starting, None),
                    Life::Running if stuck => (
                        StageStatus::Stuck,
                        Some(format!(
                            "lag {} and no commit for over {} s",
                            state.lag,
                            self.stuck_after.as_secs()
                        )),
                    ),
                    Life::Running => (StageStatus::Running, None),
                    Life::Dead(reason) => (StageStatus::Dead, Some(reason.clone())),
                };
                StageReport {
                    name: stage.name.clone(),
                    status,
                    reason,
                    last_commit: state.last_commit,
                    commit_age_secs: commit_age.map(|d| d.num_milliseconds() as f64 / 1000.0),
                    lag: state.lag,
                }
            })
            .collect();
        HealthReport::from_stages(stages)
    }
}

/// What a stage is doing, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Registered, not running yet: alive, not ready.
    Starting,
    /// Running and keeping up: alive and ready.
    Running,
    /// Running with lag but no commit for too long: alive, not ready.
    Stuck,
    /// Stopped by a failure: neither alive nor ready.
    Dead,
}

/// One stage in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StageReport {
    /// The stage's name.
    pub name: String,
    /// What it is doing.
    pub status: StageStatus,
    /// Why it is dead or stuck.
    pub reason: Option<String>,
    /// Its last commit, if it made one.
    pub last_commit: Option<DateTime<Utc>>,
    /// Seconds since its last commit.
    pub commit_age_secs: Option<f64>,
    /// How far behind its input it is, in its own unit.
    pub lag: u64,
}

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HealthReport {
    /// No stage is dead.
    pub alive: bool,
    /// Every stage runs and none is stuck.
    pub ready: bool,
    /// Every stage.
    pub stages: Vec<StageReport>,
}

impl HealthReport {
    fn from_stages(stages: Vec<StageReport>) -> HealthReport {
        HealthReport {
            alive: stages.iter().all(|s| s.status != StageStatus::Dead),
            ready: stages.iter().all(|s| s.status == StageStatus::Running),
            stages,
        }
    }

    /// Adds a stage the registry does not hold (the API's own view of the index).
    pub(crate) fn with_stage(mut self, stage: StageReport) -> HealthReport {
        self.stages.push(stage);
        HealthReport::from_stages(self.stages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage<'a>(report: &'a HealthReport, name: &str) -> &'a StageReport {
        report
            .stages
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no stage {name} in {report:?}"))
    }

    #[test]
    fn a_new_registry_is_alive_and_ready() {
        let report = Health::default().report();
        assert!(report.alive && report.ready, "{report:?}");
        assert!(report.stages.is_empty());
    }

    #[test]
    fn a_stage_is_ready_once_running_and_not_alive_once_dead() {
        let health = Health::default();
        let indexer = health.register("indexer");
        let report = health.report();
        assert!(report.alive);
        assert!(!report.ready, "starting is not ready");
        assert_eq!(stage(&report, "indexer").status, StageStatus::Starting);

        // A clone reports for the same stage.
        indexer.clone().set_running();
        let report = health.report();
        assert!(report.alive && report.ready, "{report:?}");

        indexer.set_dead("disk full");
        let report = health.report();
        assert!(!report.alive && !report.ready, "{report:?}");
        let s = stage(&report, "indexer");
        assert_eq!(s.status, StageStatus::Dead);
        assert_eq!(s.reason.as_deref(), Some("disk full"));
    }

    #[test]
    fn a_stage_with_lag_and_no_recent_commit_is_stuck() {
        let health = Health::new(Duration::from_secs(60));
        let consumer = health.register("consumer");
        consumer.set_running();
        let commit = Utc::now();
        consumer.report_progress(Some(commit), 500);

        let soon = health.report_at(commit + chrono::Duration::seconds(30));
        assert!(soon.ready, "{soon:?}");
        let s = stage(&soon, "consumer");
        assert_eq!(s.lag, 500);
        assert_eq!(s.commit_age_secs, Some(30.0));

        let later = health.report_at(commit + chrono::Duration::seconds(61));
        assert!(later.alive, "stuck is still alive");
        assert!(!later.ready, "{later:?}");
        assert_eq!(stage(&later, "consumer").status, StageStatus::Stuck);

        // Without lag, no commit for a long time is only a quiet input.
        consumer.report_progress(None, 0);
        let idle = health.report_at(commit + chrono::Duration::seconds(600));
        assert!(idle.ready, "{idle:?}");
        assert_eq!(
            stage(&idle, "consumer").last_commit,
            Some(commit),
            "a report without a commit keeps the last one"
        );
    }
}
