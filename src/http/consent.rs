//! The consent page and its form post (OIDC Core §3.1.2.4); the rules are in
//! `oauth::consent`.

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::forms::{pending_form, pending_query, request_meta, see_other};
use super::{authorize, error, pages, session};
use crate::app::AppState;
use crate::oauth::authorize::{AuthorizeRequest, SessionUser, AUTHORIZE_PARAMS};
use crate::oauth::consent;
use crate::oauth::params::Params;

const CONSENT_PARAMS: &[&str] = &["decision", "csrf_token", "authorize_query", "signed_in"];

/// The consent page for `user`, whose form claims `user`'s session (decision 0055).
pub fn page(
    app: &AppState,
    headers: &HeaderMap,
    request: &AuthorizeRequest,
    authorize_query: &str,
    user: &SessionUser,
) -> Response {
    let signed_in = session::claim(user);
    session::form_page(
        app,
        headers,
        StatusCode::OK,
        &request.redirect.redirect_uri,
        |csrf_token| {
            pages::ConsentPage {
                client_name: &request.client.name,
                username: &user.username,
                scopes: pages::scope_views(&request.consent_scope),
                csrf_token,
                authorize_query,
                signed_in: &signed_in,
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
    let origin = request_meta(&app, &headers, peer);
    let pending = Params::parse(
        pending_query(&params, &["consent"]).as_bytes(),
        AUTHORIZE_PARAMS,
    );
    // An approval carries on with the session the form claims, checked by the code's write
    // rather than read first (decision 0055); anything else, or a claim the store does not
    // hold, takes the way below, which reads the session.
    let decision = consent::Decision::parse(form.get("decision"));
    let claimed = session::claimed(&app, &headers, form.get("signed_in"), now);
    let shown_for = claimed.as_ref().map(|c| c.session.account_id.clone());
    if let (Some(consent::Decision::Approve), Some(claimed)) = (decision, claimed) {
        let approved = consent::decide(
            app.store.as_ref(),
            &request,
            &claimed.session.account_id,
            consent::Decision::Approve,
            now,
            origin.clone(),
        )
        .await;
        if let Ok(given) = approved {
            let answer =
                authorize::approve_claimed(&app, &headers, &pending, peer, claimed, given).await;
            if let Some(answer) = answer {
                return answer;
            }
        }
    }
    let back = || see_other(&format!("/authorize?{}", pending_query(&params, &[])));
    let signed_in = match session::current(&app, &headers, now).await {
        // The page was shown to someone else than who is signed in now (another account
        // signed in since, in another tab): back to /authorize, which asks this one.
        Ok(Some((_, account))) if shown_for.as_ref().is_some_and(|id| *id != account.id) => {
            return back()
        }
        Ok(Some((session, account))) => SessionUser::read(session, &account),
        // Signed out meanwhile: back to /authorize, which asks for a login first.
        Ok(None) => return back(),
        Err(e) => {
            return error::authorize_error(&app, request.fail(e.into()), StatusCode::SEE_OTHER)
        }
    };
    let Some(decision) = decision else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "Consent failed",
            "Choose Approve or Deny.",
        );
    };
    match consent::decide(
        app.store.as_ref(),
        &request,
        &signed_in.session.account_id,
        decision,
        now,
        origin,
    )
    .await
    {
        Ok(given) => {
            let scope = given.scope.clone();
            let mut given = Some(given);
            let response = authorize::after_consent(
                &app, &headers, &pending, peer, signed_in, scope, &mut given,
            )
            .await;
            // No code took the consent with it (the request went another way): stored alone,
            // before the answer goes out.
            if let Some(given) = given {
                let stored = app
                    .store
                    .grant_consent(
                        &given.account_id,
                        &given.client_id,
                        &given.scope,
                        given.now,
                        &given.audit,
                    )
                    .await;
                if let Err(e) = stored {
                    return error::authorize_error(
                        &app,
                        request.fail(e.into()),
                        StatusCode::SEE_OTHER,
                    );
                }
            }
            response
        }
        Err(e) => error::authorize_error(&app, request.fail(e), StatusCode::SEE_OTHER),
    }
}
