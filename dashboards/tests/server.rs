//! The server loop over real sockets under [`ServerLimits`]: a client that never finishes its
//! headers is dropped, one that stops reading is dropped, a slow handler is cut off with a
//! 503, connections over the cap wait for a slot, and all the while the server keeps
//! answering.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use vigil_dashboards::{serve_with_limits, ServerLimits};

/// A router with a quick answer, a slow one and a large one.
fn test_router() -> Router {
    Router::new()
        .route("/quick", get(|| async { "quick" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "slow"
            }),
        )
        .route(
            "/big",
            get(|| async { Body::from(vec![b'x'; 64 * 1024 * 1024]) }),
        )
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(limits: ServerLimits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_with_limits(
            listener,
            test_router(),
            limits,
            shutdown.clone(),
        ));
        Server {
            addr,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops within its drain time")
            .expect("the server task does not panic");
        result.expect("the server returns Ok");
    }
}

/// Sends `GET path` on a new connection and returns the status code and how long it took.
async fn get_status(addr: SocketAddr, path: &str) -> (u16, Duration) {
    let (status, _, took) = get_answer(addr, path).await;
    (status, took)
}

/// Sends `GET path` on a new connection: the status code, the body, how long it took.
async fn get_answer(addr: SocketAddr, path: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read answer");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body, started.elapsed())
}

/// Waits until the server closes `stream` (read returns 0 or an error), or `limit` passes.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
}

fn limits() -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(700),
        max_connections: 8,
    }
}

#[tokio::test]
async fn a_slowloris_that_never_finishes_its_headers_is_dropped() {
    let server = Server::start(limits()).await;
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(b"GET /quick HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .expect("write");
    // A header byte now and then does not keep the connection open.
    let dripping = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow.write_all(b"a").await.is_err() {
                break;
            }
        }
    };
    dripping.await;
    let closed = closed_within(&mut slow, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "the server still holds a connection whose headers never end"
    );
    // Meanwhile and after, the server answers.
    let (status, _) = get_status(server.addr, "/quick").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let server = Server::start(limits()).await;
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let closed = closed_within(&mut silent, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(
        closed >= Duration::from_millis(400),
        "closed after {closed:?}, before the timeout"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_when_no_next_request_comes() {
    let server = Server::start(limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /quick HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.expect("answer");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        closed_within(&mut stream, Duration::from_secs(5))
            .await
            .is_some(),
        "an idle kept-alive connection stays open"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_slow_handler_is_answered_503_at_the_request_timeout() {
    let server = Server::start(limits()).await;
    let (status, body, took) = get_answer(server.addr, "/slow").await;
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("500 ms")),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_at_the_idle_timeout() {
    let mut limits = limits();
    limits.max_connections = 1;
    // Long enough for the big answer's head; the idle timer does the work.
    limits.request_timeout = Duration::from_secs(30);
    let server = Server::start(limits).await;
    let mut stuck = TcpStream::connect(server.addr).await.expect("connect");
    stuck
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    // The stuck client holds the only slot: this request waits until it is dropped.
    let (status, took) = get_status(server.addr, "/quick").await;
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_millis(500),
        "answered after {took:?}, while the slot was held"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    drop(stuck);
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_and_are_then_served() {
    let mut limits = limits();
    limits.max_connections = 2;
    limits.header_read_timeout = Duration::from_secs(1);
    limits.idle_timeout = Duration::from_secs(5);
    let server = Server::start(limits).await;
    // Two idle connections take both slots.
    let idle_a = TcpStream::connect(server.addr).await.expect("connect");
    let idle_b = TcpStream::connect(server.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third client is accepted by the kernel but served only once a slot frees.
    let (status, took) = get_status(server.addr, "/quick").await;
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_millis(700),
        "served after {took:?}, over the cap"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    drop((idle_a, idle_b));

    // Many quick requests in a row all pass through the two slots.
    for _ in 0..20 {
        let (status, took) = get_status(server.addr, "/quick").await;
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_the_server_with_connections_open() {
    let server = Server::start(limits()).await;
    let _open = TcpStream::connect(server.addr).await.expect("connect");
    let (status, _) = get_status(server.addr, "/quick").await;
    assert_eq!(status, 200);
    let started = Instant::now();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
}
