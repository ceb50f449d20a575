//! trackrelay nodes sharing one private PostgreSQL cluster (issue 16,
//! docs/scaling.md): each node is the real `trackrelay serve` binary with
//! the test config, its `[storage]` pointing at the cluster, its SMTP,
//! tracking and API listeners on ports of its own.

use std::net::SocketAddr;
use std::path::Path;

use super::db::Cluster;
use super::server::{API_TOKEN, Binary, Http, config_text, free_port};

/// One running node.
pub struct Node {
    pub bin: Binary,
    /// Its SMTP listener's port on 127.0.0.1.
    pub smtp: u16,
}

/// What a test adds to a node's config.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extra<'a> {
    /// Lines of `[tracking]` (e.g. `commit_wait_ms = 60000`).
    pub tracking: &'a str,
    /// Tables of the route "default" (e.g. `[[routes.webhooks]]`).
    pub route: &'a str,
    /// Whole sections after the rest (e.g. `[webhooks]`).
    pub sections: &'a str,
}

/// A node's config: the test config on `cluster`, hits judged at once.
fn node_config(
    dir: &Path,
    cluster: &Cluster,
    smtp: u16,
    tracking: SocketAddr,
    api: SocketAddr,
    extra: Extra,
) -> String {
    let text = config_text(dir, &tracking.to_string(), &api.to_string(), extra.tracking);
    let path_line = format!("path = \"{}\"", dir.join("trackrelay.db").display());
    let text = text
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{smtp}\""),
        )
        .replace(&path_line, &format!("url = \"{}\"", cluster.url()));
    // The route "default" is the last table of the test config.
    format!(
        "{text}{}\n[classifier]\nwait_seconds = 0\n{}\n",
        extra.route, extra.sections
    )
}

/// Starts a node on `cluster` with the test config.
pub async fn start(cluster: &Cluster) -> Node {
    start_with(cluster, Extra::default()).await
}

/// Starts a node on `cluster` with `extra` in its config; returns once
/// both its HTTP listeners answer.
pub async fn start_with(cluster: &Cluster, extra: Extra<'_>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let smtp = free_port();
    let tracking: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::write(
        dir.path().join("trackrelay.toml"),
        node_config(dir.path(), cluster, smtp, tracking, api, extra),
    )
    .unwrap();
    Node {
        bin: Binary::run(dir, tracking, api).await,
        smtp,
    }
}

/// `GET path` on `node`'s API with the test token: status and body.
pub async fn api_get(http: &Http, node: &Binary, path: &str) -> (u16, String) {
    let auth = format!("Bearer {API_TOKEN}");
    let r = http
        .send("GET", node.api, "api", path, &[("authorization", &auth)])
        .await
        .unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}
