//! Faults of several nodes on one PostgreSQL (issue 16, "How we will
//! know"; docs/scaling.md, "What survives which failure"), with the real
//! binary, a private cluster and real HTTP and SMTP clients:
//!
//! - a node killed with SIGKILL under load loses no hit it had answered
//!   (its answers wait for their commit), and the webhook deliveries it
//!   had claimed are sent by the other node once the claim ends, each
//!   exactly once (a receiver counting them by delivery id);
//! - `pg_ctl restart` under load: every click is still redirected where
//!   its token says, every answered hit is stored once the database is
//!   back, and mail relayed while it is down reaches the upstream and its
//!   copy record is stored afterwards.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::db::Cluster;
use support::load::{Load, Mix, Outcome};
use support::node::{self, Extra, api_get};
use support::server::{Binary, Http, free_port};
use support::webhook_receiver::Receiver;
use tempfile::TempDir;
use uuid::Uuid;

/// Concurrent clients of a load run.
const CLIENTS: usize = 16;
/// Copies relayed through the node that is killed, one delivery each.
const COPIES: usize = 6;
const SECRET: &str = "whsec_Wohz8vFyz3th8zv63w2PNHNhoHtlmYWf";
const BODY: &str =
    "<html><body><p>Hi</p><a href=\"https://example.com/offer\">offer</a></body></html>";
/// A try lasts at most 20 s and a claim 21 s: the killed node's tries are
/// still waiting when it dies, and the other node sends its deliveries
/// 21 s after they were claimed. Two tries in flight per node.
const WEBHOOKS: &str = "[webhooks]\nallow_private_networks = true\ntimeout_seconds = 20\n\
                        claim_lease_seconds = 21\nconcurrency_per_endpoint = 2\n";
/// Every hit's answer waits for its commit (far longer than any commit).
const AFTER_COMMIT: &str = "commit_wait_ms = 60000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_answered_hit_and_its_claimed_deliveries_are_sent_once() {
    let cluster = Cluster::start();
    let endpoint = Endpoint::holding();
    let extra = Extra {
        tracking: AFTER_COMMIT,
        route: &endpoint.hook,
        sections: WEBHOOKS,
    };

    // A relays the copies and claims every delivery; its first tries wait
    // at the receiver. B starts once nothing is left for it to claim.
    let a = node::start_with(&cluster, extra).await;
    relay(a.smtp, COPIES);
    all_claimed(&cluster, COPIES).await;
    wait_lines(&endpoint.receiver, Duration::from_secs(30), |got| {
        held(got).len() == 2
    })
    .await;
    let b = node::start_with(&cluster, extra).await;

    let in_flight = kill_under_load(a.bin, &cluster, &endpoint.receiver).await;
    // A's tries were cut: the receiver saw their connections close
    // unanswered. Then it answers, and B sends every delivery A held.
    wait_lines(&endpoint.receiver, Duration::from_secs(20), |got| {
        in_flight.iter().all(|id| abandoned(got).contains(id))
    })
    .await;
    endpoint.release();
    let deliveries = delivered_once_each(&cluster, &endpoint.receiver, COPIES).await;
    assert!(in_flight.is_subset(&deliveries));

    // B judges the hits A stored and had not judged.
    every_hit_judged(&cluster).await;
    let (status, list) = api_get(&Http::default(), &b.bin, "/v1/messages?limit=100").await;
    assert_eq!(status, 200, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["messages"].as_array().unwrap().len(), COPIES, "{list}");
}

/// Waits (at most a minute) until every stored hit has its event.
async fn every_hit_judged(cluster: &Cluster) {
    let unjudged = cluster
        .wait_ids(
            "SELECT o.id FROM observations o
             WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = o.id)",
            Duration::from_secs(60),
            HashSet::is_empty,
        )
        .await;
    assert!(unjudged.is_empty(), "{} hits not judged", unjudged.len());
}

/// Drives hits at `a` and kills it (SIGKILL) while they come and while
/// its webhook tries wait at the receiver; checks that every hit it
/// answered is stored. Returns the deliveries it was sending.
async fn kill_under_load(mut a: Binary, cluster: &Cluster, receiver: &Receiver) -> HashSet<Uuid> {
    let load = Load::start(a.tracking, CLIENTS, Mix::OpensAndClicks);
    load.wait_answered(300).await;
    let in_flight = held(&receiver.requests());
    assert!(!in_flight.is_empty(), "A has no try in flight");
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let outcome = load.finish().await;
    let stored = cluster.ids("SELECT message_id FROM observations").await;
    outcome.assert_all_stored(&stored);
    in_flight
}

/// Waits until every delivery is delivered; checks that each was answered
/// once by the receiver and has one successful try stored. Returns them.
async fn delivered_once_each(cluster: &Cluster, receiver: &Receiver, n: usize) -> HashSet<Uuid> {
    let deliveries = cluster.ids("SELECT id FROM webhook_deliveries").await;
    assert_eq!(deliveries.len(), n);
    let delivered = cluster
        .wait_ids(
            "SELECT id FROM webhook_deliveries WHERE status = 'delivered'",
            Duration::from_secs(90),
            |d| *d == deliveries,
        )
        .await;
    assert_eq!(delivered, deliveries, "{:#?}", receiver.requests());
    let tried_once = cluster
        .ids(
            "SELECT delivery_id FROM webhook_attempts WHERE status_code BETWEEN 200 AND 299
             GROUP BY delivery_id HAVING count(*) = 1",
        )
        .await;
    assert_eq!(tried_once, deliveries, "one successful try each");
    let answered = answered_by_id(&receiver.requests());
    let once: HashMap<Uuid, usize> = deliveries.iter().map(|id| (*id, 1)).collect();
    assert_eq!(answered, once, "each answered once");
    deliveries
}

/// A webhook endpoint that answers nothing until released.
struct Endpoint {
    receiver: Receiver,
    /// The route "default"'s `[[routes.webhooks]]`: relayed copies to it.
    hook: String,
    /// While this file exists, the receiver holds every request.
    hold: PathBuf,
    _dir: TempDir,
}

impl Endpoint {
    fn holding() -> Endpoint {
        let dir = tempfile::tempdir().unwrap();
        let hold = dir.path().join("hold");
        std::fs::write(&hold, "").unwrap();
        let port = free_port();
        let hold_arg = ["--hold", hold.to_str().unwrap()];
        let receiver = Receiver::start(dir.path(), "hooks", port, &[SECRET], &hold_arg);
        let hook = format!(
            "\n[[routes.webhooks]]\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             secret = \"{SECRET}\"\nevents = [\"message.relayed\"]\n"
        );
        Endpoint {
            receiver,
            hook,
            hold,
            _dir: dir,
        }
    }

    /// From now on every request is answered (204).
    fn release(&self) {
        std::fs::remove_file(&self.hold).unwrap();
    }
}

/// Relays `n` messages through the SMTP listener on `port`, one copy each.
fn relay(port: u16, n: usize) {
    for i in 0..n {
        let out = support::smtplib_send(port, &format!("r{i}@example.com"), BODY);
        assert!(out.status.success(), "{out:?}");
    }
}

/// Waits until `n` deliveries are queued and claimed (their next try a
/// lease ahead).
async fn all_claimed(cluster: &Cluster, n: usize) {
    let claimed = cluster
        .wait_ids(
            "SELECT id FROM webhook_deliveries
             WHERE status = 'pending'
               AND next_at_ms > (extract(epoch from clock_timestamp()) * 1000)::bigint",
            Duration::from_secs(30),
            |c| c.len() == n,
        )
        .await;
    assert_eq!(claimed.len(), n, "claimed");
}

/// Waits (up to `limit`) until `done` holds for the receiver's log lines
/// (one per request and, with `--hold`, one more when a request starts
/// waiting).
async fn wait_lines(receiver: &Receiver, limit: Duration, done: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let got = receiver.requests();
        if done(&got) {
            return;
        }
        assert!(Instant::now() < deadline, "never came: {got:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Per delivery id (`webhook-id`), how many requests were answered 2xx.
fn answered_by_id(lines: &[Value]) -> HashMap<Uuid, usize> {
    let mut counts = HashMap::new();
    for l in lines {
        let ok = l["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s));
        if let (true, Some(id)) = (ok, l["id"].as_str()) {
            *counts.entry(id.parse().unwrap()).or_default() += 1;
        }
    }
    counts
}

/// Delivery ids of the requests waiting at the receiver now.
fn held(lines: &[Value]) -> HashSet<Uuid> {
    let ids = |f: &dyn Fn(&Value) -> bool| -> HashSet<Uuid> {
        lines
            .iter()
            .filter(|l| f(l))
            .filter_map(|l| l["id"].as_str()?.parse().ok())
            .collect()
    };
    let waiting = ids(&|l| l["held"] == true);
    let done = ids(&|l| l.get("status").is_some());
    waiting.difference(&done).copied().collect()
}

/// Delivery ids of the requests whose sender closed the connection first.
fn abandoned(lines: &[Value]) -> HashSet<Uuid> {
    lines
        .iter()
        .filter(|l| l["abandoned"] == true)
        .filter_map(|l| l["id"].as_str()?.parse().ok())
        .collect()
}

/// Tries lasting their whole `timeout_seconds` (the receiver answers
/// nothing), one at a time per node, and claims barely longer.
const SLOW_WEBHOOKS: &str = "[webhooks]\nallow_private_networks = true\ntimeout_seconds = 2\n\
                             claim_lease_seconds = 3\nconcurrency_per_endpoint = 1\n\
                             retry_base_ms = 500\n";

/// A node claims every due delivery but sends one at a time: one queued
/// behind slow tries must not be sent once its claim is over (the other
/// node may have claimed it since). At no time does the receiver hold two
/// requests of one delivery; once it answers, each is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_never_sent_by_two_nodes_at_once() {
    const SLOW_COPIES: usize = 4;
    let cluster = Cluster::start();
    let endpoint = Endpoint::holding();
    let extra = Extra {
        route: &endpoint.hook,
        sections: SLOW_WEBHOOKS,
        ..Extra::default()
    };
    let a = node::start_with(&cluster, extra).await;
    let _b = node::start_with(&cluster, extra).await;
    relay(a.smtp, SLOW_COPIES);
    // Tries time out one after the other, on both nodes.
    wait_lines(&endpoint.receiver, Duration::from_secs(90), |got| {
        abandoned_count(got) >= 8
    })
    .await;
    endpoint.release();
    delivered_once_each(&cluster, &endpoint.receiver, SLOW_COPIES).await;
    let lines = endpoint.receiver.requests();
    assert_eq!(concurrent_sends(&lines), Vec::<String>::new(), "{lines:#?}");
}

/// How many requests were cut by their sender.
fn abandoned_count(lines: &[Value]) -> usize {
    lines.iter().filter(|l| l["abandoned"] == true).count()
}

/// Deliveries of which the receiver held two requests at once, in the
/// order of its log.
fn concurrent_sends(lines: &[Value]) -> Vec<String> {
    let mut waiting = HashSet::new();
    let mut twice = Vec::new();
    for line in lines {
        let id = line["id"].as_str().unwrap_or_default().to_owned();
        if line["held"] == true {
            if !waiting.insert(id.clone()) {
                twice.push(id);
            }
        } else {
            waiting.remove(&id);
        }
    }
    twice
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_through_a_database_restart_are_redirected_and_stored_and_mail_is_relayed() {
    let cluster = Cluster::start();
    let node = node::start(&cluster).await;
    let load = Load::start(node.bin.tracking, CLIENTS, Mix::Clicks);
    load.wait_answered(200).await;
    tokio::task::block_in_place(|| cluster.pg_ctl("restart"));
    load.wait_answered(load.answered() + 200).await;

    // A longer outage, long enough to relay a message through it.
    tokio::task::block_in_place(|| cluster.pg_ctl("stop"));
    load.wait_answered(load.answered() + 200).await;
    let out =
        tokio::task::block_in_place(|| support::smtplib_send(node.smtp, "carol@example.com", BODY));
    assert!(out.status.success(), "{out:?}");
    let copy = relayed_copy_id(&node.bin.dir.path().join("outbox"));
    load.wait_answered(load.answered() + 200).await;
    tokio::task::block_in_place(|| cluster.pg_ctl("start"));
    load.wait_answered(load.answered() + 200).await;

    let outcome = load.finish().await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    all_stored_eventually(&cluster, &outcome).await;
    let http = Http::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = api_get(&http, &node.bin, &format!("/v1/messages/{copy}")).await;
        if status == 200 {
            assert!(body.contains("carol@example.com"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "copy record never stored: {status} {body}\n{}",
            node.bin.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.bin.logged("database writable again", 1).await;
}

/// The message id of the first copy in a `dir:` upstream's outbox, from
/// its open pixel's token.
fn relayed_copy_id(outbox: &Path) -> Uuid {
    let (open, _) = support::outbox_tokens(outbox);
    support::keys().verify(&open).unwrap().0.message_id
}

/// Waits (at most two minutes) until every answered hit is stored.
async fn all_stored_eventually(cluster: &Cluster, outcome: &Outcome) {
    let stored = cluster
        .wait_ids(
            "SELECT message_id FROM observations",
            Duration::from_secs(120),
            |stored| outcome.missing(stored).is_empty(),
        )
        .await;
    outcome.assert_all_stored(&stored);
}
