//! Starting and stopping the HTTP server: store with retry, key-encryption key, listener,
//! optional TLS, connection limits, graceful shutdown.
//!
//! Connections come from our own accept loop over hyper rather than from `axum::serve`, which
//! gives hyper no timer: a client could take forever to send its headers (slowloris) and there
//! was no bound on open connections. Here every connection must finish its TLS handshake and
//! each request head within `header_read_timeout`, and at most `max_connections` are served at
//! once (docs/decisions/0008-own-accept-loop.md).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::middleware::AddExtension;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::app::{AppState, Clock, Shared};
use crate::config::{Config, TlsFiles};
use crate::crypto::password::Passwords;
use crate::store::{self, Store, StoreError};

/// Largest request head (request line and headers) read, in bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long in-flight requests may finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// How long to stop accepting after an error that is the server's own (out of file
/// descriptors, say): accepting again at once would only spin on the same error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Most connections the admin listener serves at once: a scraper or two, and an operator.
const ADMIN_MAX_CONNECTIONS: usize = 16;

/// How often the metrics recorder folds recorded samples into its histograms. Scrapes do it
/// too; this bounds the memory samples take when nobody scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// A bound, ready-to-run server.
pub struct Server {
    listener: TcpListener,
    /// Metrics (`admin_bind`), unless turned off.
    admin: Option<TcpListener>,
    state: AppState,
    tls: Option<TlsAcceptor>,
    /// The back-channel logout queue's receiving end, for the worker `run` starts.
    backchannel: tokio::sync::mpsc::Receiver<crate::oauth::backchannel::Delivery>,
    backchannel_http: reqwest::Client,
}

impl Server {
    /// Opens the store (retrying while it is unreachable), loads keys and binds the listener.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        if config.is_insecure_issuer() {
            tracing::warn!(
                issuer = config.issuer_str(),
                "issuer is plain http: acceptable for loopback development only"
            );
        }
        let introspection = Arc::new(crate::http::introspection_cache::TokenCache::watched());
        let hook = Arc::new(crate::http::introspection_cache::InvalidateOnCommit {
            cache: Arc::clone(&introspection),
            next: Arc::new((store::LogAuditEvents, store::AuditMetrics)),
        });
        let store = open_store_with_retry(&config, hook).await?;
        let (kek, _) = crate::keys::kek::load(&config, store.as_ref()).await?;
        let tls = match &config.tls {
            None => None,
            Some(files) => Some(tls_acceptor(files).with_context(|| {
                format!(
                    "invalid configuration: `tls_cert`/`tls_key` ({}, {})",
                    files.cert.display(),
                    files.key.display()
                )
            })?),
        };
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let admin = match config.admin_bind {
            None => None,
            Some(addr) => {
                // Before any request, so that none goes uncounted.
                crate::metrics::recorder();
                Some(
                    TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("cannot listen on {addr} (`admin_bind`)"))?,
                )
            }
        };
        let passwords = Passwords::new(&config.password)?;
        let clock = Clock::default();
        // Both are on the path to ready and both wait on the blocking pool (a first start
        // makes an RSA key): side by side, start-up costs the longer of the two, not the sum.
        let (warmed, keys) = tokio::join!(
            passwords.warm_up(),
            crate::keys::ensure_initial(store.as_ref(), &kek, clock.now())
        );
        warmed?;
        keys?;
        passwords.trim_in_background();
        let keys = crate::keys::KeyCache::new(kek.clone(), config.tokens.max_ttl());
        let signer = crate::keys::Signer::new(keys.clone(), store.clone());
        let login_gate = Arc::new(crate::oauth::login::ThrottleGate {
            store: store.clone(),
            kek: kek.clone(),
            policy: config.login_throttle,
        });
        let rate_limits = Arc::new(
            crate::http::rate_limit::RateLimits::new(
                config.rate_limit_client_per_sec,
                config.rate_limit_address_per_sec,
            )
            .reporting_to(store.clone(), clock.clone()),
        );
        let (backchannel, backchannel_rx) = crate::oauth::backchannel::Queue::new();
        let backchannel_http = crate::oauth::backchannel::http_client()
            .context("cannot build the back-channel logout HTTP client")?;
        let state = AppState::new(Shared {
            config: Arc::new(config),
            store,
            passwords,
            kek,
            keys,
            signer,
            login_gate,
            rate_limits,
            clients: Default::default(),
            introspection,
            floods: Default::default(),
            backchannel,
            clock,
        });
        Ok(Server {
            listener,
            admin,
            state,
            tls,
            backchannel: backchannel_rx,
            backchannel_http,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address, if it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The state handlers will see; tests use it to move the clock or reach the store.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests
    /// finish for up to `DRAIN`; connections still open after that are closed.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            listener,
            admin,
            state,
            tls,
            backchannel,
            backchannel_http,
        } = self;
        let addr = listener.local_addr()?;
        let issuer = state.config.issuer_str();
        match tls {
            None => tracing::info!(%addr, issuer, "listening (http)"),
            Some(_) => tracing::info!(%addr, issuer, "listening (https)"),
        }
        state.introspection.trim_in_background();
        // What proves the introspection cache fresh, for as long as we serve: the change
        // listener (Postgres) or the change counter's reader (SQLite).
        let changes = if state.config.database_url.is_postgres() {
            tokio::spawn(crate::http::introspection_cache::listen(
                state.config.database_url.as_str().to_owned(),
                Arc::clone(&state.introspection),
            ))
        } else {
            tokio::spawn(crate::http::introspection_cache::poll(
                state.store.clone(),
                Arc::clone(&state.introspection),
            ))
        };
        let housekeeping = tokio::spawn(crate::housekeeping::run(
            state.store.clone(),
            state.kek.clone(),
            state.clock.clone(),
            state.config.housekeeping,
        ));
        let logouts = tokio::spawn(crate::oauth::backchannel::run(
            backchannel,
            backchannel_http,
        ));
        let connections = Arc::new(Connections::new(&state.config, tls));
        // The admin listener stops when the public one is told to.
        let (stopping, mut stopped) = tokio::sync::watch::channel(false);
        let admin = match admin {
            None => None,
            Some(listener) => {
                let addr = listener.local_addr()?;
                tracing::info!(%addr, "admin listener: metrics at /metrics");
                Some(tokio::spawn(serve_admin(
                    listener,
                    crate::http::admin::router(state.clone()),
                    Arc::clone(&connections),
                    async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    },
                )))
            }
        };
        let shutdown = async move {
            shutdown.await;
            let _ = stopping.send(true);
        };
        serve_listener(
            listener,
            crate::http::router(state.clone()),
            state.config.max_connections,
            Arc::clone(&connections),
            shutdown,
        )
        .await?;
        if let Some(admin) = admin {
            admin.await??;
        }
        changes.abort();
        housekeeping.abort();
        // Logout tokens still queued are lost with the process, like any in-memory queue.
        logouts.abort();
        tracing::info!("stopped");
        Ok(())
    }
}

/// The admin listener, with the metrics recorder's upkeep for as long as it serves.
async fn serve_admin(
    listener: TcpListener,
    router: Router,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let upkeep = async {
        let mut every = tokio::time::interval(METRICS_UPKEEP);
        loop {
            every.tick().await;
            if let Some(recorder) = crate::metrics::recorder() {
                recorder.run_upkeep();
            }
        }
    };
    tokio::select! {
        served = serve_listener(listener, router, ADMIN_MAX_CONNECTIONS, connections, shutdown) => served,
        () = upkeep => Ok(()),
    }
}

/// Serves `router` on `listener`, at most `max_connections` at once, until `shutdown`
/// completes; then stops accepting and lets in-flight requests finish for up to `DRAIN`.
async fn serve_listener(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limit = Arc::new(Semaphore::new(max_connections));
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // The permit comes before `accept`: while every slot is taken, further clients
        // wait in the kernel's listen backlog and cost us neither a descriptor nor a task.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&limit).acquire_owned() => permit?,
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_client_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "cannot accept connections; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Reap finished connections here, so the set holds only open ones.
        while tasks.try_join_next().is_some() {}
        let service = match make_service.call(peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        tasks.spawn(Arc::clone(&connections).serve(
            stream,
            peer,
            service,
            graceful.watcher(),
            permit,
        ));
    }
    // Closing the listener now makes new clients fail fast instead of queueing for a
    // server that will not answer them.
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tasks.len(),
            "connections still open after the drain period; closing them"
        );
    }
    tasks.shutdown().await;
    Ok(())
}

/// What a connection task serves: the router, told the client's address (`ConnectInfo`).
type ConnectionService = AddExtension<Router, ConnectInfo<SocketAddr>>;

/// How every connection is served; shared by all connection tasks.
struct Connections {
    http: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    header_read_timeout: Duration,
}

impl Connections {
    fn new(config: &Config, tls: Option<TlsAcceptor>) -> Connections {
        // HTTP/1.1 only. Left to detect the version itself, the builder first waits for the
        // HTTP/2 preface with no timeout at all, so a client that connects and sends nothing
        // would hold its slot forever; and hyper's HTTP/2 server has no header read timeout.
        let mut http = auto::Builder::new(TokioExecutor::new()).http1_only();
        // hyper also applies this timeout while a keep-alive connection waits for its next
        // request, so idle connections give their slot back too.
        // The request line and headers must fit in MAX_HEAD_BYTES; beyond, hyper answers
        // 431 and closes (an identity server's requests carry a cookie or two, not more).
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        Connections {
            http,
            tls,
            header_read_timeout: config.header_read_timeout,
        }
    }

    /// Serves one connection until it closes; `_permit` frees its slot when this ends.
    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        service: ConnectionService,
        watcher: Watcher,
        _permit: OwnedSemaphorePermit,
    ) {
        let Some(acceptor) = &self.tls else {
            return self.serve_http(stream, peer, service, watcher).await;
        };
        // The handshake precedes the first header, so a client could stall there instead.
        match tokio::time::timeout(self.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.serve_http(stream, peer, service, watcher).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn serve_http<I>(
        &self,
        io: I,
        peer: SocketAddr,
        service: ConnectionService,
        watcher: Watcher,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connection = self
            .http
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        if let Err(e) = watcher.watch(connection).await {
            // Clients that vanish or time out are routine, not something to act on.
            tracing::debug!(%peer, error = %e, "connection closed with an error");
        }
    }
}

/// Errors `accept` reports about one client that gave up; the next client is unaffected.
fn is_client_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A TLS acceptor for the configured PEM files.
fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading {}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading {}", files.key.display()))?;
    // ring, named here rather than installed as the process default: every TLS stack in the
    // dependency tree uses it, and nothing else then depends on who installed what first.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // Offer only what `Connections` speaks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// `tessera serve`: bind and run until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    Server::bind(config).await?.run(shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM (what container runtimes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received; draining");
}

/// A store that is down at start-up (Postgres still booting, say) is retried with
/// exponential backoff until `store_startup_timeout`, each failure logged.
pub async fn open_store_with_retry(
    config: &Config,
    hook: Arc<dyn store::AfterCommit>,
) -> Result<Arc<dyn Store>, StoreError> {
    let deadline = Instant::now() + config.store_startup_timeout;
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = match store::probe(&config.database_url).await {
            Ok(()) => store::open_with_hook(&config.database_url, Arc::clone(&hook)).await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(store) => {
                tracing::info!(database = %config.database_url.redacted(), "store ready");
                return Ok(store);
            }
            Err(e @ StoreError::Unavailable(_)) if Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "store unreachable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}
