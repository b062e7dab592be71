//! Redirect URIs: what registration accepts (`oauth::redirect_uri::check_registration`,
//! RFC 6749 §3.1.2, RFC 8252 §7), exact matching at `/authorize` (`find_exact`), and the
//! redirects built on an accepted URI: the authorization response as
//! `http::error::redirect_to_client` builds it (code, `state`, `iss` appended) and the
//! post-logout redirect (`LogoutRequest::redirect_url`).
//!
//! Input: the URI up to the first newline, then the `state` to append.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::config::is_loopback_host;
use tessera::oauth::logout::LogoutRequest;
use tessera::oauth::params::has_control;
use tessera::oauth::redirect_uri::{check_registration, find_exact};
use url::Url;

const ISSUER: &str = "https://id.example.com";

/// Scheme, host, port and path: what a redirect must keep of the registered URI.
fn target(u: &Url) -> (String, Option<String>, Option<u16>, String) {
    (
        u.scheme().to_owned(),
        u.host_str().map(str::to_owned),
        u.port(),
        u.path().to_owned(),
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (uri, state) = text.split_once('\n').unwrap_or((text, "xyz"));

    let registered = vec![uri.to_owned()];
    assert_eq!(find_exact(uri, &registered), Some(uri));
    if check_registration(uri).is_err() {
        return;
    }

    // An accepted URI is one a request can name exactly (parameters with a control
    // character are refused at parsing) and that means what it says.
    assert!(
        !has_control(uri),
        "accepted with a control character: {uri:?}"
    );
    // What the URL parser strips from either end: C0 controls and space.
    assert_eq!(
        uri.trim_matches(|c: char| c <= ' '),
        uri,
        "accepted with surrounding space: {uri:?}"
    );

    let url = Url::parse(uri).expect("accepted URIs parse");
    assert!(url.fragment().is_none());
    assert!(url.username().is_empty() && url.password().is_none());
    match url.scheme() {
        "https" => assert!(url.host().is_some()),
        "http" => assert!(is_loopback_host(&url)),
        other => assert!(other.contains('.'), "scheme {other}"),
    }

    // The authorization response, as redirect_to_client builds it.
    let mut response = url.clone();
    response
        .query_pairs_mut()
        .append_pair("code", "tsc_code")
        .append_pair("state", state)
        .append_pair("iss", ISSUER);
    assert!(
        http::HeaderValue::from_str(response.as_str()).is_ok(),
        "no Location header for {response}"
    );
    let reparsed = Url::parse(response.as_str()).expect("a built redirect parses");
    assert_eq!(target(&reparsed), target(&url));
    assert!(reparsed.fragment().is_none());
    let pairs: Vec<(String, String)> = reparsed.query_pairs().into_owned().collect();
    let n = pairs.len();
    assert!(n >= 3);
    assert_eq!(pairs[n - 2], ("state".to_owned(), state.to_owned()));
    assert_eq!(pairs[n - 1], ("iss".to_owned(), ISSUER.to_owned()));

    // The post-logout redirect.
    let logout = LogoutRequest {
        hint: None,
        client_id: None,
        redirect: Some(uri.to_owned()),
        state: Some(state.to_owned()),
    };
    let to = logout
        .redirect_url()
        .expect("a registered URI gives a redirect");
    assert!(http::HeaderValue::from_str(to.as_str()).is_ok());
    assert_eq!(target(&to), target(&url));
    let last = to.query_pairs().into_owned().last();
    assert_eq!(last, Some(("state".to_owned(), state.to_owned())));
});
