//! An independent OpenID Connect relying party — the `openidconnect` crate, used exactly as
//! its documentation shows, with no special casing — discovers Tessera, runs the code flow
//! with PKCE and a nonce, asks for an authentication context (`acr_values`) and for claims in
//! the ID token (the `claims` parameter), validates the ID token against the JWKS, and calls
//! userinfo.

/// The level a password sign-in proves (decision 0024).
const AAL1: &str = "http://idmanagement.gov/ns/assurance/aal/1";

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope,
    TokenResponse,
};

use crate::support::flow::REDIRECT;
use crate::support::{TestDb, TestServer};

#[tokio::test]
async fn openidconnect_crate_runs_the_code_flow_against_tessera_unmodified() {
    for db in TestDb::all().await {
        // The issuer must be the URL the relying party discovers it at.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut env = db.env();
        env.insert("TESSERA_BIND".into(), format!("127.0.0.1:{port}"));
        env.insert("TESSERA_ISSUER".into(), format!("http://127.0.0.1:{port}"));
        let config =
            tessera::Config::from_sources(Some(std::path::Path::new("/dev/null")), &env).unwrap();
        let server = TestServer::start_with(config).await;
        let registered = server.confidential_client("rp").await;
        let mut ada = server.user("ada").await;
        ada.claims.email = Some("ada@example.com".into());
        ada.claims.name = Some("Ada Lovelace".into());
        server
            .state
            .store
            .update_account(
                &ada,
                &tessera::audit::AuditEvent::new(tessera::audit::AuditKind::UserUpdated, "test", 0),
            )
            .await
            .unwrap();

        // The library's own HTTP client settings: no redirects (its docs, against SSRF).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let metadata = CoreProviderMetadata::discover_async(
            IssuerUrl::new(server.base.clone()).unwrap(),
            &http,
        )
        .await
        .unwrap_or_else(|e| panic!("{}: discovery failed: {e:?}", db.label));
        assert_eq!(
            metadata
                .acr_values_supported()
                .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect::<Vec<_>>()),
            Some(vec![AAL1.to_owned()]),
            "{}",
            db.label
        );
        assert_eq!(metadata.claims_parameter_supported(), Some(true));
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new("rp".into()),
            Some(ClientSecret::new(registered.secret.clone().unwrap())),
        )
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());

        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (auth_url, csrf, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .add_auth_context_value(AuthenticationContextClass::new(AAL1.into()))
            // OIDC Core §5.5: the email address and name in the ID token itself.
            .add_extra_param(
                "claims",
                r#"{"id_token":{"email":{"essential":true},"name":null}}"#,
            )
            .set_pkce_challenge(challenge)
            .url();

        // The person at the browser: log in and approve on Tessera's pages.
        let done = server
            .browser()
            .authorize_through(auth_url.as_str(), "ada")
            .await;
        let params = done.redirect_params();
        assert_eq!(&params["state"], csrf.secret(), "{}", db.label);
        let code = params["code"].clone();

        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("{}: token exchange failed: {e:?}", db.label));
        let id_token = response
            .id_token()
            .expect("an ID token for the openid scope");
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &nonce)
            .unwrap_or_else(|e| panic!("{}: ID token rejected: {e:?}", db.label));
        assert_eq!(claims.subject().as_str(), ada.id);
        assert_eq!(
            claims.auth_context_ref().map(|a| a.as_str()),
            Some(AAL1),
            "{}",
            db.label
        );
        assert_eq!(
            claims.email().map(|e| e.as_str()),
            Some("ada@example.com"),
            "{}",
            db.label
        );
        assert_eq!(
            claims.name().and_then(|n| n.get(None)).map(|n| n.as_str()),
            Some("Ada Lovelace")
        );
        assert!(claims
            .auth_method_refs()
            .is_some_and(|m| m.iter().any(|m| m.as_str() == "pwd")));
        let expected_hash = AccessTokenHash::from_token(
            response.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(claims.access_token_hash(), Some(&expected_hash));

        let info: CoreUserInfoClaims = client
            .user_info(response.access_token().clone(), None)
            .unwrap()
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("{}: userinfo failed: {e:?}", db.label));
        assert_eq!(info.subject().as_str(), ada.id);
        assert_eq!(info.email().map(|e| e.as_str()), Some("ada@example.com"));
        server.stop().await;
    }
}
