//! [`WebhookNotifier`]: delivers every alert in the store's outbox to a webhook (a SIEM, a
//! chat bridge) at least once, with retries and exponential backoff. Bodies are signed so the
//! receiver can check them: `X-Vigil-Signature: sha256=<hex>` is HMAC-SHA256, under the shared
//! secret, of `<X-Vigil-Timestamp>.<body>`.
//!
//! One bad alert never blocks the others: an answer that no retry will change (a 4xx other
//! than 408 and 429) holds back only that alert, retried with its own backoff, and after
//! [`WebhookConfig::max_attempts`] it moves to the store's dead letters (counted). A webhook
//! that is down (5xx, no answer) holds back everything, in order, with a shared backoff.
//!
//! The URL is a secret (Slack-style hooks carry their token in the path): it is never logged,
//! only its host. It must be `https://` unless [`WebhookConfig::allow_http`] says otherwise,
//! and redirects are not followed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

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
    /// Attempts of one alert refused for good (4xx) before it moves to the dead letters.
    pub max_attempts: u32,
    /// Accept an `http://` URL: alerts and the signature would cross the network in clear.
    /// (Loopback `http://` — `localhost`, 127.0.0.0/8, `::1` — is accepted without it.)
    pub allow_http: bool,
}

/// [`WebhookConfig::max_attempts`] by default.
pub const DEFAULT_WEBHOOK_MAX_ATTEMPTS: u32 = 8;

/// Whether the URL names this host (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host of a webhook URL, what logs and errors may show of it.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "webhook".to_owned())
}

impl std::fmt::Debug for WebhookConfig {
    // The URL may carry a token: show its host only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("host", &host_of(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| ".."))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// Defaults for `url`: 10 s per attempt, backoff from 1 s to 5 min,
    /// [`DEFAULT_WEBHOOK_MAX_ATTEMPTS`] for an alert refused for good, `https://` only.
    pub fn new(url: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            secret: None,
            timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_attempts: DEFAULT_WEBHOOK_MAX_ATTEMPTS,
            allow_http: false,
        }
    }
}

/// Why a webhook notifier cannot be made. Never shows the URL, only its host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL does not parse.
    #[error("webhook URL is not a valid URL")]
    InvalidUrl,
    /// The URL is `http://` and [`WebhookConfig::allow_http`] is not set.
    #[error("webhook URL for {host} is http://: use https://, or allow plain HTTP explicitly")]
    PlainHttp {
        /// The URL's host.
        host: String,
    },
    /// The URL's scheme is neither https nor http.
    #[error("webhook URL for {host} has scheme {scheme}: only https:// (or allowed http://)")]
    UnsupportedScheme {
        /// The URL's host.
        host: String,
        /// The scheme given.
        scheme: String,
    },
    /// The HTTP client could not be built (TLS back-end).
    #[error("webhook HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Counters of a notifier.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// Alerts delivered.
    pub delivered: AtomicU64,
    /// Failed attempts (each is retried, or the alert given up on).
    pub failures: AtomicU64,
    /// Alerts given up on after [`WebhookConfig::max_attempts`] refusals and moved to the
    /// store's dead letters.
    pub dead_lettered: AtomicU64,
}

/// Sends the outbox to one webhook.
#[derive(Debug)]
pub struct WebhookNotifier {
    config: WebhookConfig,
    /// The URL's host: what logs show.
    host: String,
    store: Arc<AlertStore>,
    client: reqwest::Client,
    stats: Arc<NotifyStats>,
}

/// An alert held back after refusals: how many, and when it may be tried again.
#[derive(Debug, Clone, Copy)]
struct Held {
    attempts: u32,
    retry_at: Instant,
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
    /// A notifier of `store`'s outbox. Refuses a URL that is not https:// (unless
    /// [`WebhookConfig::allow_http`]); never follows redirects.
    pub fn new(
        config: WebhookConfig,
        store: Arc<AlertStore>,
    ) -> Result<WebhookNotifier, WebhookError> {
        let url = reqwest::Url::parse(&config.url).map_err(|_| WebhookError::InvalidUrl)?;
        let host = url.host_str().unwrap_or("webhook").to_owned();
        match url.scheme() {
            "https" => {}
            // Loopback never crosses a network: a local relay needs no opt-in.
            "http" if config.allow_http || is_loopback(&url) => {}
            "http" => return Err(WebhookError::PlainHttp { host }),
            other => {
                return Err(WebhookError::UnsupportedScheme {
                    host,
                    scheme: other.to_owned(),
                })
            }
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirect could send the signed alert somewhere else, or downgrade to http.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(WebhookError::Client)?;
        Ok(WebhookNotifier {
            config,
            host,
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
        let mut held: HashMap<u64, Held> = HashMap::new();
        loop {
            let mut from = 0;
            let mut sent_any = false;
            let mut down = false;
            'pages: loop {
                let pending = self.store.pending_from(from, 64)?;
                let Some(last) = pending.last() else {
                    break;
                };
                from = last.seq + 1;
                for item in pending {
                    if held
                        .get(&item.seq)
                        .is_some_and(|h| h.retry_at > Instant::now())
                    {
                        continue;
                    }
                    match self.send(&item.alert).await {
                        Ok(()) => {
                            self.store.delivered(item.seq)?;
                            held.remove(&item.seq);
                            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                            backoff = self.config.initial_backoff;
                            sent_any = true;
                        }
                        Err(reason) if reason.is_permanent() => {
                            self.stats.failures.fetch_add(1, Ordering::Relaxed);
                            self.hold_back(&mut held, item.seq, &reason)?;
                        }
                        Err(reason) => {
                            // The webhook is down for everyone: wait, then resume in order.
                            self.stats.failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(host = %self.host, %reason, retry_in = ?backoff, "webhook delivery failed");
                            down = true;
                            break 'pages;
                        }
                    }
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                }
            }
            let pause = if down {
                let pause = backoff;
                backoff = (backoff * 2).min(self.config.max_backoff);
                pause
            } else if sent_any {
                Duration::ZERO
            } else {
                Duration::from_millis(200)
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Counts a refusal of the alert at `seq`: it waits its own backoff, and after
    /// `max_attempts` moves to the dead letters.
    fn hold_back(
        &self,
        held: &mut HashMap<u64, Held>,
        seq: u64,
        reason: &DeliveryFailure,
    ) -> Result<(), StoreError> {
        let attempts = held.get(&seq).map_or(0, |h| h.attempts) + 1;
        if attempts >= self.config.max_attempts {
            held.remove(&seq);
            if self.store.dead_letter(seq, &reason.to_string())? {
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            tracing::error!(host = %self.host, %reason, attempts, "webhook refused an alert for good; moved to the dead letters");
            return Ok(());
        }
        let shift = attempts.saturating_sub(1).min(16);
        let delay = self
            .config
            .initial_backoff
            .saturating_mul(1 << shift)
            .min(self.config.max_backoff);
        tracing::warn!(host = %self.host, %reason, attempts, retry_in = ?delay, "webhook refused an alert; the others go on");
        held.insert(
            seq,
            Held {
                attempts,
                retry_at: Instant::now() + delay,
            },
        );
        Ok(())
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

impl DeliveryFailure {
    /// Whether retrying cannot help this alert: a 4xx other than 408 (timeout) and 429 (rate
    /// limit) says the request itself is refused, and an alert that does not encode never
    /// will. A 3xx is one too: redirects are not followed.
    fn is_permanent(&self) -> bool {
        match self {
            DeliveryFailure::Encode(_) => true,
            DeliveryFailure::Request(_) => false,
            DeliveryFailure::Status(status) => {
                status.is_redirection()
                    || (status.is_client_error()
                        && *status != reqwest::StatusCode::REQUEST_TIMEOUT
                        && *status != reqwest::StatusCode::TOO_MANY_REQUESTS)
            }
        }
    }
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

    mod delivery {
        use std::sync::Mutex;

        use chrono::{TimeZone, Utc};
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        use tokio::net::TcpListener;

        use super::*;
        use crate::alert::Alert;
        use crate::engine::EngineState;
        use crate::rule::Level;

        fn alert(id: &str) -> Alert {
            let t = Utc
                .timestamp_opt(1_795_365_213, 0)
                .single()
                .unwrap_or_default();
            Alert {
                id: id.into(),
                revision: 0,
                rule_id: "r".into(),
                title: "t".into(),
                severity: Level::High,
                group_key: String::new(),
                first_seen: t,
                last_seen: t,
                count: 1,
                request_ids: Vec::new(),
                event_ids: Vec::new(),
                tags: Vec::new(),
                description: String::new(),
            }
        }

        /// A webhook on loopback: 404 for the alert `bad`, a redirect for `moved`, 200 for
        /// the rest; notes each request's path and alert id.
        async fn webhook() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
            let log = Arc::clone(&seen);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let log = Arc::clone(&log);
                    tokio::spawn(async move {
                        let (read, mut write) = stream.into_split();
                        let mut reader = BufReader::new(read);
                        let mut request_line = String::new();
                        let _ = reader.read_line(&mut request_line).await;
                        let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
                        let mut length = 0usize;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n"
                            {
                                break;
                            }
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        let _ = reader.read_exact(&mut body).await;
                        let id = serde_json::from_slice::<Alert>(&body)
                            .map(|a| a.id)
                            .unwrap_or_default();
                        let status = match id.as_str() {
                            "bad" => "404 Not Found\r\n",
                            "moved" => "302 Found\r\nlocation: /elsewhere\r\n",
                            _ => "200 OK\r\n",
                        };
                        log.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((path, id));
                        let answer = format!(
                            "HTTP/1.1 {status}content-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = write.write_all(answer.as_bytes()).await;
                    });
                }
            });
            (format!("http://{addr}/hook/T0KEN"), seen)
        }

        use std::sync::PoisonError;

        #[tokio::test]
        async fn a_refused_alert_neither_blocks_the_others_nor_stays_forever() {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Arc::new(AlertStore::open(&dir.path().join("alerts.redb")).expect("store"));
            let alerts = [
                alert("bad"),
                alert("moved"),
                alert("good-1"),
                alert("good-2"),
            ];
            store
                .commit(&alerts, &EngineState::default())
                .expect("queued");
            let (url, seen) = webhook().await;
            let mut config = WebhookConfig::new(url);
            config.initial_backoff = Duration::from_millis(5);
            config.max_backoff = Duration::from_millis(20);
            config.max_attempts = 3;
            let shown = format!("{config:?}");
            assert!(!shown.contains("T0KEN"), "{shown}");
            let notifier = WebhookNotifier::new(config, Arc::clone(&store)).expect("notifier");
            let stats = notifier.stats();
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(notifier.run(shutdown.clone()));
            let deadline = Instant::now() + Duration::from_secs(20);
            while stats.dead_lettered.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            shutdown.cancel();
            task.await.expect("joined").expect("ran");

            assert_eq!(stats.delivered.load(Ordering::Relaxed), 2);
            assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 2);
            assert!(store.pending(10).expect("outbox").is_empty());
            let letters = store.dead_letters(10).expect("dead letters");
            let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
            assert_eq!(reasons, ["HTTP 404 Not Found", "HTTP 302 Found"]);
            let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
            // The good ones went through while the bad one was still being retried.
            let first_good = seen
                .iter()
                .position(|(_, id)| id == "good-1")
                .expect("delivered");
            let bad_tries = seen.iter().filter(|(_, id)| id == "bad").count();
            assert_eq!(bad_tries, 3, "{seen:?}");
            assert!(first_good < seen.iter().rposition(|(_, id)| id == "bad").unwrap_or(0));
            assert!(
                seen.iter().all(|(path, _)| path == "/hook/T0KEN"),
                "a redirect was followed: {seen:?}"
            );
        }

        #[test]
        fn plain_http_needs_an_opt_in_unless_it_stays_on_this_host() {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Arc::new(AlertStore::open(&dir.path().join("alerts.redb")).expect("store"));
            let make = |url: &str, allow_http: bool| {
                let mut config = WebhookConfig::new(url);
                config.allow_http = allow_http;
                WebhookNotifier::new(config, Arc::clone(&store))
            };
            let refused = make("http://hooks.example.com/services/T0KEN", false).unwrap_err();
            assert!(
                matches!(refused, WebhookError::PlainHttp { ref host } if host == "hooks.example.com")
            );
            assert!(!refused.to_string().contains("T0KEN"), "{refused}");
            assert!(make("http://hooks.example.com/x", true).is_ok());
            assert!(make("https://hooks.example.com/x", false).is_ok());
            assert!(make("http://127.0.0.1:9/x", false).is_ok());
            assert!(make("http://[::1]:9/x", false).is_ok());
            assert!(matches!(
                make("ftp://h/x", true),
                Err(WebhookError::UnsupportedScheme { .. })
            ));
            assert!(matches!(
                make("not a url", true),
                Err(WebhookError::InvalidUrl)
            ));
        }
    }
}
