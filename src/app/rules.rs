//! The rules stage: the rule set and watch lists the settings name, the engine resumed from
//! the alert store, its consumer, and the webhook notifier.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use vigil_bus::{Subscription, Transport};
use vigil_event::Keyring;
use vigil_rules::{
    AlertConfig, AlertStore, NotifyStats, RulesConsumer, RulesEngine, RulesStats, Ruleset,
    StoreOptions, WatchLists, WebhookConfig, WebhookNotifier,
};

use crate::data_dir::DataDir;
use crate::settings::Settings;
use crate::tasks::TaskSet;

/// The running rules engine, as the API and metrics see it.
pub struct RulesStage {
    /// Alerts, outbox and engine state.
    pub store: Arc<AlertStore>,
    /// The rules consumer's counters.
    pub stats: Arc<RulesStats>,
    /// The webhook notifier's counters, when there is one.
    pub notify: Option<Arc<NotifyStats>>,
}

/// The watch lists of `[[rules.watchlist]]`.
pub fn watch_lists(settings: &Settings) -> anyhow::Result<WatchLists> {
    let mut lists = WatchLists::new();
    for list in &settings.rules.watchlist {
        lists
            .add_file(&list.name, list.device.as_deref(), &list.file)
            .with_context(|| format!("watch list {}", list.name))?;
    }
    Ok(lists)
}

/// Starts the rules engine on `subscription` (resuming the state saved in the data dir), and
/// the webhook notifier when one is configured. With `alert_topic`, every alert revision is
/// also published there.
pub fn spawn(
    settings: &Settings,
    data_dir: &DataDir,
    subscription: Box<dyn Subscription>,
    alert_topic: Option<Arc<dyn Transport>>,
    keyring: &Keyring,
    tasks: &mut TaskSet,
    shutdown: &CancellationToken,
) -> anyhow::Result<RulesStage> {
    let ruleset = Ruleset::load(settings.rules.dir.as_deref())?;
    let lists = watch_lists(settings)?;
    let path = data_dir.alerts_store();
    let options = StoreOptions {
        // Nothing would ever empty an outbox without a notifier.
        outbox: settings.alerts.webhook_url.is_some(),
        retention: Duration::from_secs(settings.alerts.retention_days.saturating_mul(86_400)),
    };
    let store = Arc::new(
        AlertStore::open_with(&path, options)
            .with_context(|| format!("opening {}", path.display()))?,
    );
    let alert_config = AlertConfig {
        suppress_secs: settings.rules.suppress_secs,
        ..AlertConfig::default()
    };
    let engine = RulesEngine::resume(ruleset, lists, alert_config, &store)
        .with_context(|| format!("reading the engine state in {}", path.display()))?;
    let mut consumer = RulesConsumer::new(engine, Arc::clone(&store), keyring.clone());
    if let Some(topic) = alert_topic {
        consumer = consumer.with_alert_topic(topic);
    }
    let stats = consumer.stats();
    let token = shutdown.clone();
    tasks.spawn("rules engine", async move {
        consumer
            .run(subscription, token)
            .await
            .context("rules engine")
    });
    let mut notify = None;
    if let Some(url) = &settings.alerts.webhook_url {
        let mut webhook = WebhookConfig::new(url.clone());
        webhook.secret = settings.alerts.webhook_secret.clone();
        webhook.allow_http = settings.alerts.webhook_allow_http;
        webhook.max_attempts = settings.alerts.webhook_max_attempts;
        let notifier =
            WebhookNotifier::new(webhook, Arc::clone(&store)).context("alerts.webhook_url")?;
        notify = Some(notifier.stats());
        let token = shutdown.clone();
        tasks.spawn("webhook notifier", async move {
            notifier.run(token).await.context("webhook notifier")
        });
    }
    Ok(RulesStage {
        store,
        stats,
        notify,
    })
}
