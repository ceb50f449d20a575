//! TLS on the tracking listener: the certificate of each tracking domain is
//! chosen by SNI; hits work over TLS. Certificates: tests/fixtures/tls.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::server::{TestServer, next_week, token};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
use trackrelay::app::{App, AppError};
use trackrelay::config::Config;
use trackrelay::token::Kind;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn cert(name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(fixture(name)).unwrap()
}

/// `[[tracking.tls]]` entries for t.example.com and links.news.example.
fn tls_config(news_cert: &str) -> String {
    format!(
        "[[tracking.tls]]\ndomain = \"t.example.com\"\ncert = \"{}\"\nkey = \"{}\"\n\
         [[tracking.tls]]\ndomain = \"Links.News.Example\"\ncert = \"{}\"\nkey = \"{}\"\n",
        fixture("t.pem").display(),
        fixture("t.key").display(),
        fixture(news_cert).display(),
        fixture("news.key").display(),
    )
}

/// GET `path` over TLS with `sni` as server name and `host` as Host;
/// returns the certificate the server presented, the status and the body.
async fn get(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    path: &str,
) -> Result<(CertificateDer<'static>, u16, Vec<u8>), String> {
    let mut roots = RootCertStore::empty();
    roots.add(cert("ca.pem")).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Ok((served, status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tracking_domain_gets_its_certificate_and_hits_work_over_tls() {
    let server = TestServer::start(&tls_config("news.pem")).await;
    let addr = server.app().tracking_addr();
    let (id, open) = token(Kind::Open, None, next_week());
    let (served, status, body) = get(
        addr,
        "t.example.com",
        "t.example.com",
        &format!("/o/{open}"),
    )
    .await
    .unwrap();
    assert_eq!(served, cert("t.pem"));
    assert_eq!((status, body.len()), (200, 43));
    assert_eq!(server.observations(id).await.len(), 1);

    let (_, click) = token(Kind::Click, Some("https://example.com/"), next_week());
    let (served, status, _) = get(
        addr,
        "links.news.example",
        "links.news.example:8443",
        &format!("/c/{click}"),
    )
    .await
    .unwrap();
    assert_eq!(served, cert("news.pem"));
    assert_eq!(status, 302);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_without_a_certificate_fails_the_handshake() {
    let server = TestServer::start(&tls_config("news.pem")).await;
    let err = get(
        server.app().tracking_addr(),
        "other.example.com",
        "other.example.com",
        "/healthz",
    )
    .await
    .unwrap_err();
    assert!(!err.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let text = support::server::config_text(
        dir.path(),
        "127.0.0.1:0",
        "127.0.0.1:0",
        &tls_config("t.pem"),
    );
    let err = App::start(Config::parse(&text).unwrap(), Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Tls(_)), "{err}");
    assert!(err.to_string().contains("links.news.example"), "{err}");
}

#[test]
fn missing_files_are_config_problems_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let tls = "[[tracking.tls]]\ndomain = \"t.example.com\"\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\"\n";
    let text = support::server::config_text(dir.path(), "127.0.0.1:0", "127.0.0.1:0", tls);
    let keys: Vec<String> = Config::parse(&text)
        .unwrap_err()
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(keys, ["tracking.tls[0].cert", "tracking.tls[0].key"]);
}
