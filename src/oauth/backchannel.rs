//! OpenID Connect Back-Channel Logout 1.0: when a browser session ends, each client that
//! signed in through it and registered a `backchannel_logout_uri` is sent a logout token
//! (§2.4) by a direct POST (§2.5).
//!
//! The server hands deliveries to a bounded queue that a worker drains, so that a slow or
//! unreachable relying party never holds up the person signing out; the CLI, which has no
//! worker, delivers directly within a bounded time.

use std::sync::Arc;
use std::time::Duration;

use josekit::jwt::JwtPayload;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::keys::Signer;
use crate::store::{ClientRecord, Store, StoreError};

/// §2.4: the `events` member that makes a JWT a logout token.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The `typ` header of a logout token (§2.4, RFC 8725 §3.11): no ID token or access token
/// verifier may take one for its own kind.
pub const TYP: &str = "logout+jwt";

/// How long a logout token is good for: long enough for the retries below, short enough
/// that a captured one is soon useless (§2.4 recommends at most two minutes).
const TTL: i64 = 120;

/// Deliveries waiting for the worker. A logout storm beyond this is dropped (and counted)
/// rather than growing memory without bound.
pub const QUEUE_CAPACITY: usize = 1024;

/// Deliveries the worker runs at once, so that many unreachable RPs cannot take every socket.
const CONCURRENT: usize = 16;

/// Per attempt: §2.5 has the OP wait for the RP's answer, but not forever.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pauses before the retries after a failed or non-2xx attempt.
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// What a logout token says (§2.4).
pub struct LogoutToken<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub sid: Option<&'a str>,
    pub now: i64,
}

impl LogoutToken<'_> {
    /// The claims. No `nonce`: §2.4 forbids it, so that a logout token can never pass for an
    /// ID token.
    pub fn payload(&self) -> JwtPayload {
        let mut p = JwtPayload::new();
        p.set_issuer(self.issuer);
        p.set_subject(self.subject);
        p.set_audience(vec![self.client_id]);
        // §2.4: `jti` lets the RP refuse a replayed token.
        p.set_jwt_id(uuid::Uuid::new_v4().to_string());
        let mut claims = vec![
            ("iat", json!(self.now)),
            ("exp", json!(self.now + TTL)),
            ("events", json!({ EVENT: {} })),
        ];
        if let Some(sid) = self.sid {
            claims.push(("sid", json!(sid)));
        }
        for (name, value) in claims {
            let _ = p.set_claim(name, Some(value));
        }
        p
    }

    /// Signs with the active key for `alg`, the client's ID token algorithm (§2.4: "signed
    /// the same way as an ID Token").
    pub async fn sign(&self, signer: &Signer, alg: &str) -> anyhow::Result<String> {
        signer.sign(self.payload(), alg, TYP, self.now).await
    }
}

/// One logout token on its way to one client.
#[derive(Clone)]
pub struct Delivery {
    pub client_id: String,
    pub uri: String,
    pub token: String,
}

/// Never the token: a logout token is a bearer credential for ending someone's session at
/// the client until it expires, and `Debug` output ends up in logs.
impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("client_id", &self.client_id)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// Signs a logout token for each client that signed in through session `sid` and asked to
/// hear of its end. A token that cannot be signed is logged and left out: the others still go.
pub async fn deliveries(
    store: &dyn Store,
    signer: &Signer,
    issuer: &str,
    sid: &str,
    now: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let mut out = Vec::new();
    for (client, account_id) in store.backchannel_clients(sid).await? {
        let ClientRecord {
            id,
            backchannel_logout_uri: Some(uri),
            id_token_signed_response_alg: alg,
            ..
        } = client
        else {
            continue;
        };
        let token = LogoutToken {
            issuer,
            client_id: &id,
            subject: &account_id,
            sid: Some(sid),
            now,
        };
        match token.sign(signer, &alg).await {
            Ok(token) => out.push(Delivery {
                client_id: id,
                uri,
                token,
            }),
            Err(e) => {
                tracing::error!(client_id = %id, error = %e, "cannot sign a logout token")
            }
        }
    }
    Ok(out)
}

/// The sending end the request handlers hold.
#[derive(Clone, Debug)]
pub struct Queue {
    tx: mpsc::Sender<Delivery>,
}

impl Queue {
    /// The queue, and the receiving end for [`run`].
    pub fn new() -> (Queue, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        (Queue { tx }, rx)
    }

    /// Hands `delivery` to the worker without waiting; when the queue is full (or the worker
    /// gone) the token is dropped: the logout itself has happened, only the RP's notice is lost.
    pub fn enqueue(&self, delivery: Delivery) {
        if let Err(e) = self.tx.try_send(delivery) {
            let (reason, d) = match e {
                mpsc::error::TrySendError::Full(d) => ("queue_full", d),
                mpsc::error::TrySendError::Closed(d) => ("worker_stopped", d),
            };
            crate::metrics::backchannel_logout(reason);
            tracing::warn!(client_id = %d.client_id, reason, "back-channel logout dropped");
        }
    }
}

/// The HTTP client deliveries use: no redirects (§2.5 has the RP answer, not send us
/// elsewhere, and a redirect could point the token at a third party).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The worker: drains the queue until every [`Queue`] is dropped.
pub async fn run(mut rx: mpsc::Receiver<Delivery>, http: reqwest::Client) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    while let Some(delivery) = rx.recv().await {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let http = http.clone();
        tokio::spawn(async move {
            deliver(&http, &delivery, &RETRY_DELAYS).await;
            drop(permit);
        });
    }
}

/// POSTs the token (§2.5), retrying after each of `delays` while the RP fails or answers
/// other than 2xx; true once it took it.
pub async fn deliver(http: &reqwest::Client, d: &Delivery, delays: &[Duration]) -> bool {
    let mut delays = delays.iter();
    loop {
        let answer = http
            .post(&d.uri)
            .form(&[("logout_token", d.token.as_str())])
            .send()
            .await;
        let failure = match answer {
            Ok(r) if r.status().is_success() => {
                crate::metrics::backchannel_logout("delivered");
                return true;
            }
            Ok(r) => format!("answered {}", r.status().as_u16()),
            Err(e) => e.to_string(),
        };
        match delays.next() {
            Some(delay) => {
                tracing::debug!(client_id = %d.client_id, failure, "back-channel logout failed; retrying");
                tokio::time::sleep(*delay).await;
            }
            None => {
                crate::metrics::backchannel_logout("gave_up");
                tracing::warn!(client_id = %d.client_id, failure, "back-channel logout not delivered; giving up");
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_never_shows_its_token_in_debug_output() {
        let d = Delivery {
            client_id: "web".into(),
            uri: "https://web.example/bcl".into(),
            token: "eyJ.secret.token".into(),
        };
        let shown = format!("{d:?}");
        assert!(
            shown.contains("web") && !shown.contains("secret"),
            "{shown}"
        );
    }

    #[test]
    fn logout_token_claims_backchannel_logout_2_4() {
        let token = LogoutToken {
            issuer: "https://id.example.com",
            client_id: "rp",
            subject: "user-1",
            sid: Some("sid-1"),
            now: 1_000,
        };
        let p = token.payload();
        assert_eq!(p.issuer(), Some("https://id.example.com"));
        assert_eq!(p.audience(), Some(vec!["rp"]));
        assert_eq!(p.subject(), Some("user-1"));
        assert_eq!(p.claim("sid"), Some(&json!("sid-1")));
        assert_eq!(p.claim("iat"), Some(&json!(1_000)));
        assert_eq!(p.claim("exp"), Some(&json!(1_120)));
        assert_eq!(p.claim("events"), Some(&json!({ EVENT: {} })));
        assert!(
            p.claim("nonce").is_none(),
            "§2.4: a logout token has no nonce"
        );
        let jti = p.jwt_id().map(str::to_owned);
        assert!(jti.as_deref().is_some_and(|j| !j.is_empty()));
        assert_ne!(
            token.payload().jwt_id().map(str::to_owned),
            jti,
            "each token gets its own jti"
        );
    }

    #[test]
    fn logout_token_without_a_session_has_no_sid_backchannel_logout_2_4() {
        let token = LogoutToken {
            issuer: "https://id.example.com",
            client_id: "rp",
            subject: "user-1",
            sid: None,
            now: 1_000,
        };
        assert!(token.payload().claim("sid").is_none());
    }
}
