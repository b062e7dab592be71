//! Redirect URIs: what may be registered (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §2.1) and,
//! at `/authorize`, exact string matching against what was registered.

use std::str::FromStr;

use oxide_auth::primitives::registrar::ExactUrl;
use url::Url;

use crate::config::is_loopback_host;
use crate::oauth::params::has_control;

/// Checks a redirect URI an operator registers; the error says what is wrong with it.
pub fn check_registration(uri: &str) -> Result<(), String> {
    // The URL parser drops tabs and newlines anywhere, and control characters and spaces at
    // either end; it percent-encodes other control characters. Such a URI would be kept as
    // written yet mean another, and no request could name it exactly (a parameter holding a
    // control character is refused at parsing).
    if has_control(uri) || uri.starts_with(' ') || uri.ends_with(' ') {
        return Err(format!(
            "{uri:?} must not hold control characters or start or end with a space"
        ));
    }
    let url = Url::parse(uri).map_err(|e| format!("`{uri}` is not an absolute URI ({e})"))?;
    // RFC 6749 §3.1.2: "The endpoint URI MUST NOT include a fragment component."
    if url.fragment().is_some() {
        return Err(format!("`{uri}` must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{uri}` must not carry credentials"));
    }
    match url.scheme() {
        "https" if url.host().is_some() => {}
        "https" => return Err(format!("`{uri}` has no host")),
        // RFC 8252 §7.3: native apps may listen on a loopback interface over plain http.
        "http" if is_loopback_host(&url) => {}
        "http" => {
            return Err(format!(
                "`{uri}` must use https (plain http only for 127.0.0.1, [::1] or localhost)"
            ))
        }
        // RFC 8252 §7.1: private-use schemes are reverse domain names, so they contain a
        // period; that also keeps out javascript:, data:, file: and their kind.
        scheme if scheme.contains('.') => {}
        scheme => {
            return Err(format!(
                "`{uri}`: scheme `{scheme}` is neither https, loopback http, nor a private-use scheme like com.example.app"
            ))
        }
    }
    ExactUrl::from_str(uri).map_err(|e| format!("`{uri}`: {e}"))?;
    Ok(())
}

/// Checks a `backchannel_logout_uri` (OIDC Back-Channel Logout §2.2): Tessera POSTs logout
/// tokens to it, so unlike a redirect URI it is never a private-use scheme, and plain http is
/// allowed only where the token cannot leave the machine.
pub fn check_backchannel_logout_uri(uri: &str) -> Result<(), String> {
    check_logout_uri(uri).map(drop)
}

/// Checks a `frontchannel_logout_uri` (OIDC Front-Channel Logout §2): the same rules as the
/// back-channel URI, since the browser carries the session's `sid` to it, and its origin must
/// be that of one of the client's `redirect_uris`.
pub fn check_frontchannel_logout_uri(uri: &str, redirect_uris: &[String]) -> Result<(), String> {
    let url = check_logout_uri(uri)?;
    // §2: "The domain, port, and scheme of this URL MUST be the same as that of a registered
    // Redirection URI value." An origin is exactly those three.
    let origin = url.origin();
    let registered = redirect_uris
        .iter()
        .filter_map(|r| Url::parse(r).ok())
        .any(|r| r.origin() == origin);
    if registered {
        Ok(())
    } else {
        Err(format!(
            "`{uri}` must have the scheme, host and port of one of the client's redirect URIs"
        ))
    }
}

/// The rules both logout URIs share: absolute, no fragment, no credentials, https (plain
/// http only on loopback).
fn check_logout_uri(uri: &str) -> Result<Url, String> {
    let url = Url::parse(uri).map_err(|e| format!("`{uri}` is not an absolute URI ({e})"))?;
    // Back-Channel §2.2 and Front-Channel §2: the URL "MUST be absolute and MUST NOT include
    // a fragment component".
    if url.fragment().is_some() {
        return Err(format!("`{uri}` must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{uri}` must not carry credentials"));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback_host(&url) => Ok(url),
        _ => Err(format!(
            "`{uri}` must use https (plain http only for 127.0.0.1, [::1] or localhost)"
        )),
    }
}

/// The registered URI that `requested` equals exactly, if any: no normalisation, no
/// trailing-slash or port leniency (RFC 9700 §2.1, OIDC Core §3.1.2.1).
pub fn find_exact<'a>(requested: &str, registered: &'a [String]) -> Option<&'a str> {
    registered
        .iter()
        .map(String::as_str)
        .find(|r| *r == requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backchannel_logout_uri_is_https_or_loopback_http_backchannel_logout_2_2() {
        for ok in [
            "https://rp.example.com/logout",
            "https://rp.example.com:8443/bcl?x=1",
            "http://127.0.0.1:7777/bcl",
            "http://localhost/bcl",
        ] {
            assert!(check_backchannel_logout_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://rp.example.com/logout",
            "https://rp.example.com/logout#f",
            "https://u:p@rp.example.com/logout",
            "com.example.app:/logout",
            "/logout",
        ] {
            assert!(check_backchannel_logout_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn frontchannel_logout_uri_shares_an_origin_with_a_redirect_uri_frontchannel_logout_2() {
        let redirects = [
            "https://rp.example.com/cb".to_owned(),
            "http://127.0.0.1:7777/cb".to_owned(),
            "com.example.app:/cb".to_owned(),
        ];
        for ok in [
            "https://rp.example.com/fcl",
            "https://rp.example.com:443/fcl?x=1",
            "http://127.0.0.1:7777/fcl",
        ] {
            assert!(
                check_frontchannel_logout_uri(ok, &redirects).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "https://other.example.com/fcl",
            "https://rp.example.com:8443/fcl",
            "http://127.0.0.1:7778/fcl",
            "http://rp.example.com/fcl",
            "https://rp.example.com/fcl#f",
            "https://u:p@rp.example.com/fcl",
            "com.example.app:/fcl",
            "/fcl",
        ] {
            assert!(
                check_frontchannel_logout_uri(bad, &redirects).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn registration_accepts_https_loopback_and_private_use_rfc8252() {
        for ok in [
            "https://app.example.com/cb",
            "https://app.example.com:8443/cb?x=1",
            "http://127.0.0.1:7777/cb",
            "http://[::1]/cb",
            "http://localhost:3000/callback",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(check_registration(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn registration_refuses_fragments_plain_http_and_dangerous_schemes_rfc6749_3_1_2() {
        for bad in [
            "https://app.example.com/cb#frag",
            "http://app.example.com/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "/relative/cb",
            "https://user:pw@app.example.com/cb",
        ] {
            assert!(check_registration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registration_refuses_control_characters_and_surrounding_spaces() {
        // Found by fuzz/fuzz_targets/redirect_uri.rs: the URL parser accepted these, so they
        // were registered although no request can name them.
        for bad in [
            "com.example.app:u\0\0\0th2redirect",
            "https://app.example.com/cb\0",
            "https://app.example.com/c\tb",
            "https://app.example.com/cb\n",
            "https://app.example.com/cb\u{7f}",
            " https://app.example.com/cb",
            "https://app.example.com/cb ",
        ] {
            let err = check_registration(bad).unwrap_err();
            assert!(err.contains("control characters"), "{bad:?}: {err}");
        }
        assert_eq!(check_registration("https://app.example.com/c b"), Ok(()));
    }

    #[test]
    fn matching_is_exact_string_comparison() {
        let registered = vec!["https://a.example/cb".to_owned()];
        assert!(find_exact("https://a.example/cb", &registered).is_some());
        for other in [
            "https://a.example/cb/",
            "https://a.example:443/cb",
            "https://A.example/cb",
        ] {
            assert!(find_exact(other, &registered).is_none(), "{other}");
        }
    }
}
