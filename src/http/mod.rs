//! Everything that knows about HTTP: the route table and the layers every request passes.

pub mod account;
pub mod admin;
pub mod authorize;
pub mod client_auth;
pub mod client_ip;
pub mod consent;
pub mod discovery;
pub mod error;
pub mod forms;
pub mod health;
pub mod introspect;
pub mod introspection_cache;
pub mod jwks;
pub mod leak_report;
pub mod login;
pub mod logout;
pub mod pages;
pub mod profile;
pub mod rate_limit;
pub mod request_metrics;
pub mod respond;
pub mod revoke;
pub mod session;
pub mod token;
pub mod userinfo;

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::paths;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route in one table, plus the layers every request passes.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.request_timeout;
    let trusted_proxies = state.config.trusted_proxies.clone();
    let layers = ServiceBuilder::new()
        // Outermost: every response, errors included, carries the request id.
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(move |r: &Request<_>| request_span(&trusted_proxies, r)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // The headers below go on every answer, whoever made it (a handler, the framework's
        // 404 or 405, the timeout's 503, which is why they sit outside the timeout): any
        // answer may end up shown in a browser. Pages set their own, with a CSP that lets
        // their styles and forms work; everything else gets one that allows nothing, as
        // GitHub's API does.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(pages::NOTHING_ALLOWED_CSP),
        ))
        // RFC 6797: with an https issuer, browsers must never talk to us over plain http
        // again. Sent on every answer (a TLS-terminating proxy passes it on); browsers ignore
        // it over http. No `includeSubDomains`: the issuer's host may be a name (even an apex,
        // with the issuer on a path) whose other subdomains are not ours to pin to https.
        .option_layer((!state.config.is_insecure_issuer()).then(|| {
            SetResponseHeaderLayer::if_not_present(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            )
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ));
    // Three groups, so that policies which differ by kind of caller (rate limits per client
    // for the client API, per source address for the pages; metrics for all) each have one
    // place to attach: `client_api_policies`, `page_policies`, `public_policies`.
    let client_api = Router::new()
        .route(paths::TOKEN, post(token::token))
        .route(paths::INTROSPECT, post(introspect::introspect))
        .route(paths::REVOKE, post(revoke::revoke))
        .route(paths::USERINFO, get(userinfo::get).post(userinfo::post))
        .route(
            paths::APIKEYS_REVOKE_LEAKED,
            post(leak_report::revoke_leaked),
        );
    let pages = Router::new()
        .route(paths::AUTHORIZE, get(authorize::get).post(authorize::post))
        .route(paths::LOGIN, post(login::post))
        .route(paths::CONSENT, post(consent::post))
        .route(paths::LOGOUT, get(logout::get).post(logout::post))
        .route(paths::ACCOUNT, get(account::get))
        .route(paths::ACCOUNT_LOGIN, post(account::login))
        .route(
            paths::ACCOUNT_PROFILE,
            get(profile::get).post(profile::post),
        )
        .route(paths::ACCOUNT_KEYS, post(account::create))
        .route(paths::ACCOUNT_KEYS_REVOKE, post(account::revoke))
        .route(paths::ACCOUNT_KEYS_REGENERATE, post(account::regenerate));
    let public = Router::new()
        .route(paths::HEALTHZ, get(health::healthz))
        .route(paths::READYZ, get(health::readyz))
        .route(paths::STYLESHEET, get(pages::stylesheet))
        .route(paths::FRONTCHANNEL_SCRIPT, get(pages::frontchannel_script))
        .route(paths::JWKS, get(jwks::jwks))
        .route(paths::OPENID_CONFIGURATION, get(discovery::metadata))
        .route(paths::OAUTH_METADATA, get(discovery::metadata));
    Router::new()
        .merge(client_api_policies(client_api, &state))
        .merge(page_policies(pages, &state))
        .merge(public_policies(public, &state))
        // A path no route serves: the styled page, so a person who mistyped an address sees
        // where they are, rather than an empty answer.
        .fallback(pages::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(run_to_completion))
        .layer(layers)
        // Outermost, so the figures include the timeout's 503 and the body limit's 413. Layers
        // of a `Router` run after routing, so the matched route is known here.
        .layer(axum::middleware::from_fn(request_metrics::record))
}

/// Runs the rest of the request in its own task, so that a client that goes away (or the
/// request timeout) cannot cancel a handler half-way through a store operation. A future
/// dropped while sqlx sends `BEGIN` leaves its Postgres connection inside a transaction
/// (a known issue of sqlx 0.8.6, its #4393): the next request on that connection would then write
/// into a transaction nobody commits. The benchmark saw such connections after clients
/// dropped in-flight requests. The answer of a finished task is simply discarded.
async fn run_to_completion(
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            respond::json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                crate::oauth::error::ErrorCode::ServerError,
                "the request could not be completed",
            )
        }
    }
}

/// Layers for `/token`, `/introspect`, `/revoke`, `/userinfo` (and the leak report), inside the common ones (so
/// they see the request id): the body limit, and the framework's refusals answered in
/// OAuth's JSON. The per-client rate limit needs the authenticated client, so it is checked
/// in `client_auth` and `userinfo`.
fn client_api_policies(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes
        .layer(RequestBodyLimitLayer::new(state.config.request_body_limit))
        .layer(axum::middleware::map_response(refusal_as_json))
}

/// Layers for the pages people use (`/authorize`, `/login`, `/consent`, `/logout`,
/// `/account`): the per-address rate limit, the body limit, and the framework's refusals
/// answered with the styled page.
fn page_policies(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit_pages,
        ))
        .layer(RequestBodyLimitLayer::new(state.config.request_body_limit))
        .layer(axum::middleware::map_response(refusal_as_page))
}

/// Layers for probes, keys and metadata: the body limit (they take none), and the
/// framework's refusals in JSON like the rest of what they answer.
fn public_policies(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes
        .layer(RequestBodyLimitLayer::new(state.config.request_body_limit))
        .layer(axum::middleware::map_response(refusal_as_json))
}

/// A refusal made by axum or tower-http instead of a handler: a method the route does not
/// take (405, empty), a body over the limit (413, plain text), a body that could not be read,
/// such as a broken chunked encoding (400, plain text). Handlers answer every 4xx in their
/// endpoint's format, with a JSON or HTML body or a Bearer challenge, so a 4xx that is empty
/// or plain text and carries no challenge can only be the framework's.
fn framework_refusal(response: &Response) -> Option<StatusCode> {
    let headers = response.headers();
    let plain = headers
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    let status = response.status();
    (status.is_client_error() && plain && !headers.contains_key(header::WWW_AUTHENTICATE))
        .then_some(status)
}

/// RFC 9110 §15.5.6: a 405 lists the methods the resource takes; the new answer keeps it.
fn keep_allow(refused: &Response, mut answer: Response) -> Response {
    if let Some(allow) = refused.headers().get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    answer
}

/// The framework's refusals at the client API, probes and metadata: RFC 6749 §5.2's JSON,
/// never its plain text (STYLE.md §3).
async fn refusal_as_json(response: Response) -> Response {
    let Some(status) = framework_refusal(&response) else {
        return response;
    };
    let description = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not take that method",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
        _ => "the request body could not be read",
    };
    let answer = respond::json_error(
        status,
        crate::oauth::error::ErrorCode::InvalidRequest,
        description,
    );
    keep_allow(&response, answer)
}

/// The same for the pages: the styled error page.
async fn refusal_as_page(response: Response) -> Response {
    let Some(status) = framework_refusal(&response) else {
        return response;
    };
    let (title, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "This address does not take that request",
            "Go back to the application you came from and start again.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "This request is too large",
            "The form sent more than this service accepts.",
        ),
        _ => (
            "This request could not be read",
            "Go back to the application you came from and start again.",
        ),
    };
    keep_allow(&response, pages::error_page(status, title, message))
}

/// The span every log line of a request carries: its id, method, path and client address
/// (through the trusted-proxy rule).
fn request_span<B>(
    trusted_proxies: &crate::config::TrustedProxies,
    request: &Request<B>,
) -> tracing::Span {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| client_ip::client_ip(trusted_proxies, request.headers(), *peer))
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    tracing::info_span!("request", id, method = %request.method(), path = request.uri().path(), source)
}
