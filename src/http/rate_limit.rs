//! Request-rate limits (GCRA, with `governor`): per client at the client API (`/token`,
//! `/introspect`, `/revoke`, `/userinfo`; a client's own `rate_limit_per_sec` or the default),
//! per source address at the pages and for client calls that fail authentication. Over the
//! limit: `429` with `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit` headers, in
//! the endpoint's own format (decision 0018).
//!
//! Counters are per instance (kept in memory, like every request-rate limiter that does not
//! add a network round trip per request): with N instances behind a balancer a client gets up
//! to N times its rate. See `docs/rate-limits.md`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::{client_ip, pages};
use crate::app::AppState;
use crate::net::address_key;

const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// How long to wait, and which policy said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub policy: &'static str,
    pub per_second: u32,
    pub retry_after_secs: u64,
}

impl Exceeded {
    /// `Retry-After` (RFC 9110 §10.2.3) and the IETF RateLimit headers
    /// (draft-ietf-httpapi-ratelimit-headers: quota `q` per window `w`, `r` left, reset `t`).
    pub fn apply(&self, headers: &mut HeaderMap) {
        let values = [
            (header::RETRY_AFTER, self.retry_after_secs.to_string()),
            (
                RATE_LIMIT_POLICY,
                format!("\"{}\";q={};w=1", self.policy, self.per_second),
            ),
            (
                RATE_LIMIT,
                format!("\"{}\";r=0;t={}", self.policy, self.retry_after_secs),
            ),
        ];
        for (name, value) in values {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }
}

/// A client's limiter and the rate it was built for (rebuilt when the registration changes).
type ClientLimiter = (u32, Arc<DefaultDirectRateLimiter>);

/// Every limiter of one instance.
pub struct RateLimits {
    /// Where trips are audited (once a minute per limit and key); none in unit tests.
    reporter: Option<(Arc<dyn crate::store::Store>, crate::app::Clock)>,
    reported: crate::audit::OncePerMinute,
    client_default: NonZeroU32,
    clients: Mutex<HashMap<String, ClientLimiter>>,
    address_rate: NonZeroU32,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
    checks: std::sync::atomic::AtomicU64,
}

/// Addresses tracked before idle ones are dropped (each costs a few dozen bytes).
const MAX_TRACKED_ADDRESSES: usize = 100_000;
/// How often (in checks) the tracked addresses may be pruned.
const PRUNE_EVERY: u64 = 10_000;

fn quota(per_second: NonZeroU32) -> Quota {
    // A burst of one second's worth: a client may spend its second at once.
    Quota::per_second(per_second).allow_burst(per_second)
}

fn rate(n: i64) -> NonZeroU32 {
    NonZeroU32::new(u32::try_from(n.clamp(1, i64::from(u32::MAX))).unwrap_or(1))
        .unwrap_or(NonZeroU32::MIN)
}

impl RateLimits {
    pub fn new(client_per_sec: i64, address_per_sec: i64) -> RateLimits {
        let address_rate = rate(address_per_sec);
        RateLimits {
            reporter: None,
            reported: Default::default(),
            client_default: rate(client_per_sec),
            clients: Mutex::new(HashMap::new()),
            address_rate,
            addresses: RateLimiter::keyed(quota(address_rate)),
            checks: Default::default(),
        }
    }

    /// Audits trips into `store` from now on.
    pub fn reporting_to(
        mut self,
        store: Arc<dyn crate::store::Store>,
        clock: crate::app::Clock,
    ) -> Self {
        self.reporter = Some((store, clock));
        self
    }

    /// Counts a trip, and audits it when it is the first for this limit and key this minute.
    fn tripped(&self, e: &Exceeded, client: Option<&str>, address: Option<IpAddr>) {
        crate::metrics::rate_limit_tripped(e.policy);
        let Some((store, clock)) = &self.reporter else {
            return;
        };
        let now = clock.now();
        let key = format!(
            "{}:{}",
            e.policy,
            client.map_or_else(
                || address.map(|a| a.to_string()).unwrap_or_default(),
                str::to_owned
            )
        );
        if !self.reported.due(&key, now) {
            return;
        }
        let actor = client.map_or_else(|| "anonymous".to_owned(), |c| format!("client:{c}"));
        let mut event =
            crate::audit::AuditEvent::new(crate::audit::AuditKind::RateLimitTripped, actor, now)
                .from_request(address.map(|a| a.to_string()), None)
                .details(serde_json::json!({ "limit": e.policy, "per_second": e.per_second }));
        event.client_id = client.map(str::to_owned);
        crate::audit::record_in_background(Arc::clone(store), event);
    }

    /// One request by client `id`, whose registration says `per_sec` (or the default).
    pub fn check_client(&self, id: &str, per_sec: Option<i64>) -> Result<(), Exceeded> {
        let per_second = per_sec.map(rate).unwrap_or(self.client_default);
        let limiter = {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            match clients.get(id) {
                Some((r, l)) if *r == per_second.get() => l.clone(),
                _ => {
                    let l = Arc::new(RateLimiter::direct(quota(per_second)));
                    clients.insert(id.to_owned(), (per_second.get(), l.clone()));
                    l
                }
            }
        };
        limiter
            .check()
            .map_err(|not_until| Exceeded {
                policy: "client",
                per_second: per_second.get(),
                retry_after_secs: wait_secs(
                    not_until.wait_time_from(DefaultClock::default().now()),
                ),
            })
            .inspect_err(|e| self.tripped(e, Some(id), None))
    }

    /// One request from `addr`.
    pub fn check_address(&self, addr: IpAddr) -> Result<(), Exceeded> {
        // Pruning scans the whole map: at most once per PRUNE_EVERY checks, not on each.
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % PRUNE_EVERY == 0 && self.addresses.len() > MAX_TRACKED_ADDRESSES {
            self.addresses.retain_recent();
        }
        let addr = address_key(addr);
        self.addresses
            .check_key(&addr)
            .map_err(|not_until| Exceeded {
                policy: "address",
                per_second: self.address_rate.get(),
                retry_after_secs: wait_secs(
                    not_until.wait_time_from(DefaultClock::default().now()),
                ),
            })
            .inspect_err(|e| self.tripped(e, None, Some(addr)))
    }
}

/// Whole seconds, rounded up, at least one (`Retry-After` has no fractions).
fn wait_secs(wait: Duration) -> u64 {
    let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    millis.div_ceil(1000).max(1)
}

/// Middleware for the pages: per source address, the styled page when over.
pub async fn limit_pages(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let addr = client_ip::client_ip(&app.config.trusted_proxies, request.headers(), peer);
    match app.rate_limits.check_address(addr) {
        Ok(()) => next.run(request).await,
        Err(exceeded) => {
            // Debug: a flood of refused requests must not become a flood of log lines.
            tracing::debug!(%addr, "page rate limit exceeded");
            let mut response = pages::error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "Please wait a moment, then try again.",
            );
            exceeded.apply(response.headers_mut());
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_rate_then_429_with_a_wait() {
        let limits = RateLimits::new(1000, 10);
        for _ in 0..3 {
            assert!(limits.check_client("small", Some(3)).is_ok());
        }
        let over = limits.check_client("small", Some(3)).unwrap_err();
        assert_eq!((over.policy, over.per_second), ("client", 3));
        assert!(over.retry_after_secs >= 1);
        // Others are not affected, and a new registration takes effect.
        assert!(limits.check_client("other", None).is_ok());
        assert!(limits.check_client("small", Some(100)).is_ok());
    }

    #[test]
    fn addresses_are_limited_one_by_one() {
        let limits = RateLimits::new(1000, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limits.check_address(a).is_ok());
        assert!(limits.check_address(a).is_ok());
        assert!(limits.check_address(a).is_err());
        assert!(limits.check_address(b).is_ok());
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address() {
        let limits = RateLimits::new(1000, 1);
        assert!(limits
            .check_address("2001:db8:1:2::1".parse().unwrap())
            .is_ok());
        assert!(limits
            .check_address("2001:db8:1:2::ffff".parse().unwrap())
            .is_err());
        assert!(limits
            .check_address("2001:db8:1:3::1".parse().unwrap())
            .is_ok());
        assert_eq!(
            address_key("::ffff:192.0.2.1".parse().unwrap()).to_string(),
            "192.0.2.1"
        );
    }

    #[test]
    fn headers_follow_the_ietf_draft() {
        let mut h = HeaderMap::new();
        Exceeded {
            policy: "client",
            per_second: 50,
            retry_after_secs: 2,
        }
        .apply(&mut h);
        assert_eq!(h["retry-after"], "2");
        assert_eq!(h["ratelimit-policy"], "\"client\";q=50;w=1");
        assert_eq!(h["ratelimit"], "\"client\";r=0;t=2");
    }
}
