//! Webhook delivery throughput: deliveries per second from the outbox to a
//! fast local receiver (an in-process hyper server answering 204 at once,
//! over loopback).
//!
//! N relayed copies are stored, each with one `message.relayed` delivery,
//! before the worker starts; then the worker (the server's own
//! [`Webhooks::run`]) sends them all, signing each, one connection per
//! try, `concurrency_per_endpoint` at a time, and stores each try. The
//! clock runs from the worker's start until no delivery is pending.
//!
//! ```text
//! cargo bench --bench webhooks [-- --deliveries N --concurrency C]
//! ```
//!
//! Human-readable summary on stderr; one JSON line on stdout.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use trackrelay::config::Config;
use trackrelay::routes::Registry;
use trackrelay::storage::{RelayedCopy, Storage};
use trackrelay::webhooks::Webhooks;
use uuid::Uuid;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// A receiver answering 204 to everything; counts requests.
async fn receiver(count: Arc<AtomicU64>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let count = count.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        count.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(204)
                                .body(Empty::<Bytes>::new())
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

fn main() {
    let n = arg("--deliveries", 20_000);
    let concurrency = arg("--concurrency", 4);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(n, concurrency));
}

async fn run(n: usize, concurrency: usize) {
    let dir = tempfile::tempdir().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let port = receiver(count.clone()).await;
    let text = format!(
        "[api]\ntoken = \"Xq3v9N1bT8kPz0RwLmA7cYhG2sDfJ6eU\"\n[[tracking.keys]]\nid = \"k1\"\n\
         secret = \"0123456789abcdef0123456789abcdef\"\n[storage]\npath = \"{}\"\n\
         [webhooks]\nallow_private_networks = true\nconcurrency_per_endpoint = {concurrency}\n\
         [[routes]]\nid = \"default\"\n[[routes.webhooks]]\n\
         url = \"http://127.0.0.1:{port}/hook\"\n\
         secret = \"whsec_Wohz8vFyz3th8zv63w2PNHNhoHtlmYWf\"\nevents = [\"message.relayed\"]\n",
        dir.path().join("bench.db").display()
    );
    let config = Config::parse(&text).unwrap();
    let storage = Storage::open(&config.storage_path).unwrap();
    let routes = Registry::from_config(&config, storage.clone());
    let hooks = Arc::new(Webhooks::new(
        config.webhooks.clone(),
        Arc::new(routes),
        storage.clone(),
    ));
    // The outbox, filled before the clock starts (many copies in flight so
    // the writer commits them in batches).
    let mut waiting = Vec::new();
    for i in 0..n {
        let copy = RelayedCopy {
            id: Uuid::now_v7(),
            route: "default".into(),
            sender: "news@example.com".into(),
            recipients: vec![format!("user{i}@example.com")],
            recipient_id: None,
            message_id_header: Some(format!("<{i}@example.com>")),
            tags: vec!["bench".into()],
            links: vec!["https://example.com/".into()],
            relayed_at_ms: trackrelay::webhooks::now_ms(),
            upstream_reply: "250 2.0.0 queued".into(),
            status: trackrelay::storage::CopyStatus::Relayed,
        };
        let deliveries = hooks.for_relayed(&copy);
        assert_eq!(deliveries.len(), 1);
        let storage = storage.clone();
        waiting.push(tokio::spawn(async move {
            storage
                .record_relayed_with_webhooks(copy, deliveries)
                .await
                .unwrap()
        }));
    }
    for w in waiting {
        w.await.unwrap();
    }

    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let worker = tokio::spawn(hooks.clone().run(shutdown.clone()));
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if storage
            .deliveries(Some("pending".into()), 1)
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    worker.await.unwrap();
    let delivered = storage
        .deliveries(Some("delivered".into()), u32::MAX)
        .await
        .unwrap()
        .len();
    assert_eq!(delivered, n, "every delivery delivered");
    let received = count.load(Ordering::Relaxed);
    let rate = n as f64 / elapsed.as_secs_f64();
    eprintln!(
        "webhooks: {n} deliveries in {:.2} s = {rate:.0} deliveries/s \
         (concurrency_per_endpoint {concurrency}, {received} requests received)",
        elapsed.as_secs_f64()
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "webhooks",
            "deliveries": n,
            "concurrency_per_endpoint": concurrency,
            "seconds": elapsed.as_secs_f64(),
            "deliveries_per_second": rate,
            "requests_received": received,
        })
    );
}
