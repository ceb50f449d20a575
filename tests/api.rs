//! The admin API's message paths (SPEC §8) over real sockets, and the
//! storage interface the relay records copies with.

mod support;

use support::server::{API_TOKEN, HOST, TestServer, next_week};
use trackrelay::storage::{RelayedCopy, StorageError};
use trackrelay::token::{Claims, Kind};
use uuid::Uuid;

fn copy(route: &str, recipient: &str, relayed_at_ms: i64) -> RelayedCopy {
    RelayedCopy {
        id: Uuid::now_v7(),
        route: route.into(),
        sender: "news@example.com".into(),
        recipients: vec![recipient.into()],
        recipient_id: Some("opaque".into()),
        message_id_header: Some(format!("<{relayed_at_ms}@example.com>")),
        tags: vec!["welcome".into()],
        links: vec![
            "https://example.com/a".into(),
            "https://example.com/b".into(),
        ],
        relayed_at_ms,
        upstream_reply: "250 2.0.0 queued".into(),
        status: trackrelay::storage::CopyStatus::Relayed,
    }
}

/// Three copies: (news, bob, t1), (default, Alice, t3), (news, alice, t2).
async fn server_with_copies() -> (TestServer, Vec<RelayedCopy>) {
    let server = TestServer::start("").await;
    let copies = vec![
        copy("news", "bob@example.com", 1_700_000_001_000),
        copy("default", "Alice@Example.com", 1_700_000_003_000),
        copy("news", "alice@example.com", 1_700_000_002_000),
    ];
    for c in &copies {
        server
            .app()
            .storage()
            .record_relayed(c.clone())
            .await
            .unwrap();
    }
    (server, copies)
}

fn ids(resp: &support::server::Resp) -> Vec<String> {
    resp.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_token_is_401() {
    let (server, _) = server_with_copies().await;
    for token in [None, Some("wrong"), Some("api-secret-for-test"), Some("")] {
        let resp = server.api("/v1/messages", token).await;
        assert_eq!(resp.status, 401, "{token:?}");
        assert_eq!(resp.header("www-authenticate"), "Bearer");
        assert!(resp.json()["error"].is_string());
    }
    assert_eq!(server.api("/healthz", None).await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_is_newest_first_and_filters_by_route_recipient_and_limit() {
    let (server, c) = server_with_copies().await;
    let id = |i: usize| c[i].id.to_string();
    let all = server.api("/v1/messages", Some(API_TOKEN)).await;
    assert_eq!(all.status, 200);
    assert_eq!(ids(&all), [id(1), id(2), id(0)]);
    let first = &all.json()["messages"][0];
    assert_eq!(first["route"], "default");
    assert_eq!(first["recipient"], "Alice@Example.com");
    assert_eq!(first["relayed_at"], "2023-11-14T22:13:23Z");
    assert_eq!(first["status"], "relayed");
    assert_eq!(first["message_id_header"], "<1700000003000@example.com>");
    let news = server.api("/v1/messages?route=news", Some(API_TOKEN)).await;
    assert_eq!(ids(&news), [id(2), id(0)]);
    let alice = server
        .api(
            "/v1/messages?recipient=ALICE%40example.com",
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(ids(&alice), [id(1), id(2)]);
    let both = server
        .api(
            "/v1/messages?route=news&recipient=alice@example.com",
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(ids(&both), [id(2)]);
    let one = server.api("/v1/messages?limit=1", Some(API_TOKEN)).await;
    assert_eq!(ids(&one), [id(1)]);
    let none = server.api("/v1/messages?route=nope", Some(API_TOKEN)).await;
    assert!(ids(&none).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400_and_unknown_ids_404() {
    let (server, _) = server_with_copies().await;
    for path in [
        "/v1/messages?limit=0",
        "/v1/messages?limit=ten",
        "/v1/messages?limit=100000",
        "/v1/messages?sort=asc",
        "/v1/messages/not-a-uuid",
        "/v1/messages/not-a-uuid/observations",
    ] {
        let resp = server.api(path, Some(API_TOKEN)).await;
        assert_eq!(resp.status, 400, "{path}");
        assert!(resp.json()["error"].as_str().unwrap().len() > 5, "{path}");
    }
    let unknown = Uuid::now_v7();
    for path in [
        format!("/v1/messages/{unknown}"),
        format!("/v1/messages/{unknown}/observations"),
        "/v1/nothing".to_owned(),
    ] {
        let resp = server.api(&path, Some(API_TOKEN)).await;
        assert_eq!(resp.status, 404, "{path}");
        assert!(resp.json()["error"].is_string());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_has_its_links_and_events_and_raw_observations() {
    let (server, c) = server_with_copies().await;
    let keys = support::keys();
    let claims = Claims {
        kind: Kind::Click,
        message_id: c[0].id,
        recipient_id: Some(keys.recipient_id("bob@example.com")),
        expires_at: next_week(),
        link: Some(1),
        url: Some(c[0].links[1].clone()),
    };
    let tok = keys.sign(&claims);
    let resp = server
        .tracking(
            "GET",
            HOST,
            &format!("/c/{tok}"),
            &[("user-agent", "Browser/2")],
        )
        .await;
    assert_eq!(resp.status, 302);

    let one = server
        .api(&format!("/v1/messages/{}", c[0].id), Some(API_TOKEN))
        .await;
    assert_eq!(one.status, 200);
    let v = one.json();
    assert_eq!(v["id"], c[0].id.to_string());
    assert_eq!(v["links"][1]["url"], "https://example.com/b");
    assert_eq!(v["links"][1]["index"], 1);
    assert_eq!(v["tags"][0], "welcome");
    // Not classified yet: the hit waits for its verdict.
    assert_eq!(v["events"].as_array().unwrap().len(), 0);
    assert_eq!(v["unclassified"], 1);

    let raw = server
        .api(
            &format!("/v1/messages/{}/observations", c[0].id),
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(raw.status, 200);
    let obs = &raw.json()["observations"][0];
    assert_eq!(obs["ip"], "127.0.0.1");
    assert_eq!(obs["host"], HOST);
    assert_eq!(obs["key_id"], "k1");
    assert!(
        obs["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "user-agent")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_copy_is_reported_and_does_not_block_the_others() {
    let (server, c) = server_with_copies().await;
    let storage = server.app().storage();
    let again = storage.record_relayed(c[0].clone()).await;
    assert!(matches!(again, Err(StorageError::Refused(_))), "{again:?}");
    let fresh = copy("news", "carol@example.com", 1_700_000_009_000);
    storage.record_relayed(fresh.clone()).await.unwrap();
    assert_eq!(storage.message(fresh.id).await.unwrap(), Some(fresh));
    server.stop().await;
}
