//! The consent page and its form post (OIDC Core §3.1.2.4). Consent is remembered per user,
//! client and scope; approving adds the requested scopes to what was granted before.

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::authorize::{pending_form, pending_query, request_meta};
use super::login::see_other;
use super::{error, pages, session};
use crate::app::AppState;
use crate::audit::{AuditEvent, AuditKind};
use crate::oauth::authorize::AuthorizeRequest;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::scope;
use crate::store::AccountRecord;

const CONSENT_PARAMS: &[&str] = &["decision", "csrf_token", "authorize_query"];

pub fn page(
    app: &AppState,
    headers: &HeaderMap,
    request: &AuthorizeRequest,
    authorize_query: &str,
    account: &AccountRecord,
) -> Response {
    session::form_page(
        app,
        headers,
        StatusCode::OK,
        &request.redirect.redirect_uri,
        |csrf_token| {
            pages::ConsentPage {
                client_name: &request.client.name,
                username: &account.username,
                scopes: pages::scope_views(&request.scope),
                csrf_token,
                authorize_query,
            }
            .render()
        },
    )
}

pub async fn post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, params, request) =
        match pending_form(&app, &headers, &body, CONSENT_PARAMS, "Consent failed").await {
            Ok(parts) => parts,
            Err(response) => return response,
        };
    let now = app.clock.now();
    let account = match session::current(&app, &headers, now).await {
        Ok(Some((_, account))) => account,
        // Signed out meanwhile: back to /authorize, which asks for a login first.
        Ok(None) => return see_other(&format!("/authorize?{}", pending_query(&params, &[]))),
        Err(e) => {
            return error::authorize_error(&app, request.fail(e.into()), StatusCode::SEE_OTHER)
        }
    };
    let (ip, agent) = request_meta(&headers, Some(peer));
    let audit = |kind| {
        AuditEvent::new(kind, format!("user:{}", account.id), now)
            .account(&account.id)
            .client(&request.client.id)
            .from_request(ip.clone(), agent.clone())
            .details(serde_json::json!({ "scope": request.scope_str }))
    };
    match form.get("decision") {
        Some("approve") => {
            let result = async {
                let previous = app.store.consent(&account.id, &request.client.id).await?;
                let mut granted: Vec<String> = previous
                    .as_deref()
                    .and_then(|p| scope::parse(p).ok())
                    .map(|s| s.iter().map(str::to_owned).collect())
                    .unwrap_or_default();
                for s in request.scope.iter() {
                    if !granted.iter().any(|g| g == s) {
                        granted.push(s.to_owned());
                    }
                }
                app.store
                    .grant_consent(
                        &account.id,
                        &request.client.id,
                        &granted.join(" "),
                        now,
                        &audit(AuditKind::ConsentGranted),
                    )
                    .await
            }
            .await;
            if let Err(e) = result {
                return error::authorize_error(&app, request.fail(e.into()), StatusCode::SEE_OTHER);
            }
            see_other(&format!(
                "/authorize?{}",
                pending_query(&params, &["consent"])
            ))
        }
        Some("deny") => {
            if let Err(e) = app
                .store
                .append_audit(&audit(AuditKind::ConsentDenied))
                .await
            {
                return error::authorize_error(&app, request.fail(e.into()), StatusCode::SEE_OTHER);
            }
            let denied = OAuthError::new(ErrorCode::AccessDenied, "the user denied the request");
            error::authorize_error(&app, request.fail(denied), StatusCode::SEE_OTHER)
        }
        _ => pages::error_page(
            StatusCode::BAD_REQUEST,
            "Consent failed",
            "Choose Approve or Deny.",
        ),
    }
}
