//! Starting and stopping the HTTP server: store with retry, key-encryption key, listener,
//! optional TLS, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;

use crate::app::{AppState, Clock};
use crate::config::Config;
use crate::crypto::password::Passwords;
use crate::store::{self, Store, StoreError};

/// How long in-flight requests may finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// A bound, ready-to-run server.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<RustlsConfig>,
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
        let store = open_store_with_retry(&config).await?;
        let (kek, _) = crate::keys::kek::load(&config, store.as_ref()).await?;
        let tls = match &config.tls {
            None => None,
            Some(files) => {
                // Both TLS stacks in the dependency tree use ring; say so once, explicitly.
                let _ = rustls::crypto::ring::default_provider().install_default();
                Some(
                    RustlsConfig::from_pem_file(&files.cert, &files.key)
                        .await
                        .with_context(|| {
                            format!(
                                "invalid configuration: `tls_cert`/`tls_key` ({}, {})",
                                files.cert.display(),
                                files.key.display()
                            )
                        })?,
                )
            }
        };
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let passwords = Passwords::new(&config.password)?;
        passwords.warm_up().await?;
        let clock = Clock::default();
        crate::keys::ensure_initial(store.as_ref(), &kek, clock.now()).await?;
        let keys = crate::keys::KeyCache::new(kek.clone(), config.tokens.max_ttl());
        let signer = crate::keys::Signer::new(keys.clone(), store.clone());
        let state = AppState {
            config: Arc::new(config),
            store,
            passwords,
            kek,
            keys,
            signer,
            login_gate: Arc::new(crate::oauth::login::OpenGate),
            clock,
        };
        Ok(Server {
            listener,
            state,
            tls,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The state handlers will see; tests use it to move the clock or reach the store.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        let app = crate::http::router(self.state.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        match self.tls {
            None => {
                tracing::info!(%addr, issuer = self.state.config.issuer_str(), "listening (http)");
                axum::serve(self.listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await?;
            }
            Some(tls) => {
                tracing::info!(%addr, issuer = self.state.config.issuer_str(), "listening (https)");
                let handle = axum_server::Handle::new();
                let stopper = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    stopper.graceful_shutdown(Some(DRAIN));
                });
                axum_server::from_tcp_rustls(self.listener.into_std()?, tls)
                    .handle(handle)
                    .serve(app)
                    .await?;
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
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
pub async fn open_store_with_retry(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let deadline = Instant::now() + config.store_startup_timeout;
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = match store::probe(&config.database_url).await {
            Ok(()) => store::open(&config.database_url).await,
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
