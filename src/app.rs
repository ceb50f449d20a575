//! Wires the process together: opens storage, starts each listener as a
//! task, and on shutdown stops accepting, lets in-flight requests finish and
//! flushes every queued write.
//!
//! Every long-running part (SMTP, tracking and API listeners) is a task in
//! one `JoinSet` that ends when the one [`CancellationToken`] is cancelled;
//! [`App::stop`] waits for all of them, SMTP sessions included, then
//! flushes the write queue. Sessions get `shutdown.deadline_seconds` to
//! finish; then the [`Deadline`] cuts them (a silent peer cannot keep the
//! process alive), and the queue is flushed all the same.
//!
//! [`App::reload`] is the one place a reload (SIGHUP) happens: the routes
//! with everything derived from them ([`crate::routes`]: the relay's and
//! the milter's choice, webhook endpoints, the tracking server's Hosts, the
//! API), then the classifier's lists.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::classify::{ListError, Lists};
use crate::config::{Config, Problems};
use crate::events::Pipeline;
use crate::inbound::{self, Inbound, StartError};
use crate::listener;
use crate::relay::Relay;
use crate::routes::Registry;
use crate::shutdown::Deadline;
use crate::storage::{Storage, StorageError};
use crate::tracking::Tracking;
use crate::tracking::tls::{self, TlsError};
use crate::webhooks::Webhooks;

/// How long shutdown waits for queued writes to be committed.
const FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// What stops the process from starting.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("tracking.tls: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Smtp(#[from] StartError),
    #[error("classifier lists: {0}")]
    Lists(#[from] ListError),
    #[error(transparent)]
    Milter(#[from] crate::milter::BindError),
    #[error("{queued} queued writes could not be stored before exit (database failing)")]
    Unflushed { queued: usize },
    #[error("cannot listen on {addr} ({name}.listen): {source}")]
    Bind {
        name: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("reload refused, keeping the running config: {0}")]
    Config(#[from] Problems),
    #[error("reload refused, keeping the running config: classifier lists: {0}")]
    Lists(#[from] ListError),
}

/// The running process: its listeners' addresses, storage and tasks.
#[derive(Debug)]
pub struct App {
    smtp_addr: SocketAddr,
    routes: Arc<Registry>,
    relay: Arc<Relay>,
    tracking_addr: SocketAddr,
    api_addr: SocketAddr,
    /// The sending API's address, with a `[send]` section.
    send_addr: Option<SocketAddr>,
    /// The milter's TCP address (`None`: off, or a unix socket).
    milter_addr: Option<SocketAddr>,
    storage: Storage,
    pipeline: Arc<Pipeline>,
    webhooks: Arc<Webhooks>,
    tasks: Tasks,
}

/// The long-running tasks and the one signal that stops them all.
#[derive(Debug)]
struct Tasks {
    set: JoinSet<()>,
    shutdown: CancellationToken,
    /// Cuts the sessions still open `shutdown.deadline_seconds` after it.
    deadline: Deadline,
}

impl Tasks {
    /// Minimisation and deletion (SPEC §9): on SQLite on its own
    /// connection, on PostgreSQL one node at a time (an advisory lock).
    fn retention(&mut self, config: &Config, storage: &Storage) {
        match &config.storage {
            crate::storage::Location::Sqlite(path) => self.set.spawn(crate::retention::run(
                path.clone(),
                config.retention.clone(),
                self.shutdown.clone(),
            )),
            crate::storage::Location::Postgres(_) => {
                self.set.spawn(crate::retention::postgres::run(
                    storage.clone(),
                    config.retention.clone(),
                    self.shutdown.clone(),
                ))
            }
        };
    }

    /// Binds `addr` (config key `{name}.listen`) and serves HTTP on it with
    /// `handler` until shutdown; returns the bound address.
    async fn listen<H, F>(
        &mut self,
        name: &'static str,
        addr: SocketAddr,
        tls: Option<TlsAcceptor>,
        handler: H,
    ) -> Result<SocketAddr, AppError>
    where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = listener::Reply> + Send + 'static,
    {
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind { name, addr, source })?;
        let bound = socket.local_addr().unwrap_or(addr);
        let (shutdown, deadline) = (self.shutdown.clone(), self.deadline.clone());
        self.set.spawn(listener::serve(
            name, socket, tls, shutdown, deadline, handler,
        ));
        Ok(bound)
    }

    /// Binds `smtp.listen` and serves SMTP sessions until shutdown.
    async fn smtp(&mut self, relay: Arc<Relay>) -> Result<SocketAddr, AppError> {
        let addr = relay.config.smtp.listen;
        let inbound = Arc::new(Inbound::new(relay)?);
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind {
                name: "smtp",
                addr,
                source,
            })?;
        let bound = socket.local_addr().unwrap_or(addr);
        self.set.spawn(inbound::serve(
            socket,
            inbound,
            self.shutdown.clone(),
            self.deadline.clone(),
        ));
        Ok(bound)
    }

    /// The tracking listener, https when `[[tracking.tls]]` certificates
    /// are configured.
    async fn tracking(
        &mut self,
        config: &Config,
        storage: &Storage,
        routes: &Arc<Registry>,
    ) -> Result<SocketAddr, AppError> {
        let tracking = Arc::new(Tracking::new(config, storage.clone(), routes.clone()));
        let tls = tls::acceptor(&config.tracking.tls)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let addr = self
            .listen("tracking", config.tracking.listen, tls, move |req, peer| {
                tracking.clone().handle(req, peer)
            })
            .await?;
        tracing::info!(
            %addr, scheme, base_url = %config.tracking.base_url,
            "tracking listener started"
        );
        Ok(addr)
    }

    /// The sending API's listener; none without a `[send]` section.
    async fn send(
        &mut self,
        config: &Arc<Config>,
        relay: &Arc<Relay>,
        storage: &Storage,
        routes: &Arc<Registry>,
    ) -> Result<Option<SocketAddr>, AppError> {
        let Some(settings) = &config.send else {
            return Ok(None);
        };
        let send = Arc::new(crate::send::SendApi::new(
            config,
            settings.clone(),
            relay.clone(),
            storage.clone(),
            routes.clone(),
        ));
        let addr = self
            .listen("send", settings.listen, None, move |req, peer| {
                send.clone().handle(req, peer)
            })
            .await?;
        tracing::info!(%addr, "send api listener started");
        Ok(Some(addr))
    }
}

impl App {
    /// Opens storage and starts every listener (bound before this returns,
    /// so a port 0 in the config gives a real port here). They run until
    /// `shutdown` is cancelled; then [`App::wait`].
    pub async fn start(config: Config, shutdown: CancellationToken) -> Result<App, AppError> {
        let storage = Storage::connect(&config.storage, config.tracking.queue_capacity).await?;
        tracing::info!(storage = %config.storage, "storage open");
        let mut tasks = Tasks {
            set: JoinSet::new(),
            shutdown,
            deadline: Deadline::default(),
        };

        // The routes in force, with the settings changed through the API
        // (SPEC §2) and the tracking domains remembered, before anything
        // reads them.
        let routes = Arc::new(Registry::open(&config, storage.clone()).await?);
        tasks.set.spawn(routes.clone().run(tasks.shutdown.clone()));
        if matches!(config.storage, crate::storage::Location::Postgres(_)) {
            // Other nodes change route settings too (routes/follow.rs).
            tasks
                .set
                .spawn(routes.clone().follow_overrides(tasks.shutdown.clone()));
        }

        let webhooks = Arc::new(Webhooks::new(
            config.webhooks.clone(),
            routes.clone(),
            storage.clone(),
        ));
        tasks
            .set
            .spawn(webhooks.clone().run(tasks.shutdown.clone()));
        let pipeline = Arc::new(
            Pipeline::new(
                storage.clone(),
                load_lists(&config)?,
                config.classifier.wait,
            )
            .with_webhooks(webhooks.clone()),
        );
        tasks
            .set
            .spawn(pipeline.clone().run(tasks.shutdown.clone()));

        tasks.retention(&config, &storage);

        let tracking_addr = tasks.tracking(&config, &storage, &routes).await?;

        let config = Arc::new(config);
        let relay = Relay::new(config.clone(), storage.clone(), routes.clone());
        let relay = Arc::new(relay.with_webhooks(webhooks.clone()));
        let api = Arc::new(Api::new(&config, storage.clone(), routes.clone()));
        let api_addr = tasks
            .listen("api", config.api.listen, None, move |req, peer| {
                api.clone().handle(req, peer)
            })
            .await?;
        tracing::info!(addr = %api_addr, "api listener started");

        let send_addr = tasks.send(&config, &relay, &storage, &routes).await?;

        let smtp_addr = tasks.smtp(relay.clone()).await?;
        tracing::info!(addr = %smtp_addr, upstream = %relay.upstream.describe(), "smtp listening");
        let milter_addr = match &config.milter {
            Some(m) => {
                let stop = (tasks.shutdown.clone(), tasks.deadline.clone());
                let (relay, routes) = (relay.clone(), routes.clone());
                crate::milter::start(m, relay, routes, &mut tasks.set, stop).await?
            }
            None => None,
        };

        Ok(App {
            smtp_addr,
            routes,
            relay,
            tracking_addr,
            api_addr,
            send_addr,
            milter_addr,
            storage,
            pipeline,
            webhooks,
            tasks,
        })
    }

    /// Where the SMTP server listens.
    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp_addr
    }

    /// The relay.
    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    /// The routes in force ([`App::reload`] and the API change them).
    pub fn routes(&self) -> &Arc<Registry> {
        &self.routes
    }

    /// Re-reads the config file at `path` (SIGHUP) and applies, all or
    /// nothing: the routes, and with them the relay's and the milter's
    /// choice of route, the webhook endpoints, the tracking domains answered
    /// (a dropped one stays answered for the mail already sent) and what
    /// the API shows; then the classifier's lists. Other keys take effect
    /// at the next start. A file with problems, or a data file of the
    /// classifier that cannot be used, changes nothing.
    pub async fn reload(&self, path: &Path) -> Result<(), ReloadError> {
        let config = Arc::new(Config::load(path)?);
        // Compiled on the blocking pool: a few hundred patterns take a moment.
        let file = config.clone();
        let lists = tokio::task::spawn_blocking(move || load_lists(&file))
            .await
            .map_err(|e| ListError::new("(classifier)", 0, e.to_string()))??;
        self.routes.reload(&config).await;
        self.pipeline.set_lists(lists);
        tracing::info!(config = %path.display(), "config reloaded");
        Ok(())
    }

    /// Where the tracking server listens.
    pub fn tracking_addr(&self) -> SocketAddr {
        self.tracking_addr
    }

    /// Where the API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Where the sending API listens, with a `[send]` section.
    pub fn send_addr(&self) -> Option<SocketAddr> {
        self.send_addr
    }

    /// The classification pipeline (its lists can be replaced at run time).
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Where the milter listens, when `milter.listen` is a TCP address.
    pub fn milter_addr(&self) -> Option<SocketAddr> {
        self.milter_addr
    }

    /// The webhooks (their endpoints can be replaced at run time).
    pub fn webhooks(&self) -> &Arc<Webhooks> {
        &self.webhooks
    }

    /// The shutdown deadline (how many sessions it cut, after [`App::wait`]).
    pub fn deadline(&self) -> &Deadline {
        &self.tasks.deadline
    }

    /// The process's storage handle.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Cancels the shutdown token, then [`App::wait`]s.
    pub async fn stop(self) -> bool {
        self.tasks.shutdown.cancel();
        self.wait().await
    }

    /// After the shutdown token fired: waits for the listeners to stop
    /// (in-flight requests and sessions finish, until the shutdown
    /// deadline cuts them), then flushes the write queue (at most
    /// `FLUSH_LIMIT`). True when every queued write was stored.
    pub async fn wait(mut self) -> bool {
        tracing::info!("shutting down");
        let limit = self.relay.config.limits.shutdown_deadline;
        let tasks = &mut self.tasks.set;
        let all_ended = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all_ended).await.is_err() {
            tracing::warn!(deadline = ?limit, "shutdown deadline reached; cutting open sessions");
            self.tasks.deadline.expire();
            while self.tasks.set.join_next().await.is_some() {}
        }
        let flushed = self.storage.flush(FLUSH_LIMIT).await;
        if flushed {
            tracing::info!("every queued write stored");
        } else {
            tracing::error!(
                queued = self.storage.queue_depth(),
                "database still failing at shutdown; queued writes are lost"
            );
        }
        flushed
    }
}

/// The classifier's lists from the files the config names; a range file
/// not fetched yet is left out with a warning.
pub fn load_lists(config: &Config) -> Result<Lists, ListError> {
    let loaded = Lists::load(&config.classifier)?;
    let now_ms = crate::time::now_ms();
    for age in &loaded.ages {
        tracing::info!(list = %age.name, source = %age.source, age_days = age.age_seconds(now_ms) / 86_400, "classifier range list");
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    crate::metrics::classifier_lists(
        loaded
            .ages
            .iter()
            .map(|a| (a.name.clone(), a.updated_ms))
            .collect(),
    );
    Ok(loaded.lists)
}

/// Runs until `shutdown` resolves, then stops gracefully; an error when
/// queued writes could not be stored in time.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let token = CancellationToken::new();
    let app = App::start(config, token.clone()).await?;
    shutdown.await;
    token.cancel();
    let storage = app.storage.clone();
    if app.wait().await {
        Ok(())
    } else {
        Err(AppError::Unflushed {
            queued: storage.queue_depth(),
        })
    }
}
