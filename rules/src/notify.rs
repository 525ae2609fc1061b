//! [`WebhookNotifier`]: delivers every alert in the store's outbox to a webhook (a SIEM, a
//! chat bridge) at least once, with retries and exponential backoff. Bodies are signed so the
//! receiver can check them: `X-Vigil-Signature: sha256=<hex>` is HMAC-SHA256, under the shared
//! secret, of `<X-Vigil-Timestamp>.<body>`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::store::{AlertStore, StoreError};

/// Where and how to deliver.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The URL alerts are POSTed to, one JSON alert per request.
    pub url: String,
    /// Secret for the body signature; `None` sends no signature.
    pub secret: Option<String>,
    /// Time limit of one delivery attempt.
    pub timeout: Duration,
    /// First retry delay; doubled up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest delay between two attempts.
    pub max_backoff: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| ".."))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// Defaults for `url`: 10 s per attempt, backoff from 1 s to 5 min.
    pub fn new(url: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            secret: None,
            timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Counters of a notifier.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// Alerts delivered.
    pub delivered: AtomicU64,
    /// Failed attempts (each is retried).
    pub failures: AtomicU64,
}

/// Sends the outbox to one webhook.
#[derive(Debug)]
pub struct WebhookNotifier {
    config: WebhookConfig,
    store: Arc<AlertStore>,
    client: reqwest::Client,
    stats: Arc<NotifyStats>,
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookNotifier {
    /// A notifier of `store`'s outbox.
    pub fn new(
        config: WebhookConfig,
        store: Arc<AlertStore>,
    ) -> Result<WebhookNotifier, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(config.timeout).build()?;
        Ok(WebhookNotifier {
            config,
            store,
            client,
            stats: Arc::new(NotifyStats::default()),
        })
    }

    /// The counters.
    pub fn stats(&self) -> Arc<NotifyStats> {
        Arc::clone(&self.stats)
    }

    /// Delivers until `shutdown`; what is undelivered stays in the outbox for the next run.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StoreError> {
        let mut backoff = self.config.initial_backoff;
        loop {
            let pending = self.store.pending(64)?;
            if pending.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
            for item in pending {
                match self.send(&item.alert).await {
                    Ok(()) => {
                        self.store.delivered(item.seq)?;
                        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                        backoff = self.config.initial_backoff;
                    }
                    Err(reason) => {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %self.config.url, %reason, retry_in = ?backoff, "webhook delivery failed");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(self.config.max_backoff);
                        break;
                    }
                }
                if shutdown.is_cancelled() {
                    return Ok(());
                }
            }
        }
    }

    async fn send(&self, alert: &crate::alert::Alert) -> Result<(), DeliveryFailure> {
        let body = serde_json::to_vec(alert).map_err(DeliveryFailure::Encode)?;
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut request = self
            .client
            .post(&self.config.url)
            .header("content-type", "application/json")
            .header("x-vigil-timestamp", &timestamp);
        if let Some(secret) = &self.config.secret {
            request = request.header("x-vigil-signature", signature(secret, &timestamp, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            // The URL may carry a token in its query: keep it out of the log line.
            .map_err(|e| DeliveryFailure::Request(e.without_url()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(DeliveryFailure::Status(response.status()))
        }
    }
}

/// Why one delivery attempt failed; logged, and the attempt retried.
#[derive(Debug, thiserror::Error)]
enum DeliveryFailure {
    /// The alert could not be encoded as JSON.
    #[error("cannot encode the alert: {0}")]
    Encode(serde_json::Error),
    /// The request did not complete (connection refused, timeout, TLS).
    #[error("request failed: {0}")]
    Request(reqwest::Error),
    /// The webhook answered with a status other than 2xx.
    #[error("HTTP {0}")]
    Status(reqwest::StatusCode),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independently_computed_hmac() {
        // Python: hmac.new(b"secret", b'1700000000.{"id":"a"}', hashlib.sha256).hexdigest()
        let expected = "sha256=24d16fb59a06bae8d031d22eb88b663480215741cc94a5cd046993fa9ea6ac23";
        assert_eq!(
            signature("secret", "1700000000", br#"{"id":"a"}"#),
            expected
        );
        assert_ne!(
            signature("secret", "1700000000", br#"{"id":"b"}"#),
            expected
        );
        assert_ne!(
            signature("secret", "1700000001", br#"{"id":"a"}"#),
            expected
        );
    }

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        let sig = signature("secret", "1700000000", b"{}");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), 7 + 64);
        assert_ne!(sig, signature("secret", "1700000001", b"{}"));
        assert_ne!(sig, signature("other", "1700000000", b"{}"));
    }
}
