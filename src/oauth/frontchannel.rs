//! OpenID Connect Front-Channel Logout 1.0: when a person signs out at `/logout`, the
//! signed-out page loads, in a hidden iframe, the `frontchannel_logout_uri` of each client
//! that signed in through the ending session (§2), with `iss` and `sid` added (§2), so the
//! client can end its own session through the person's browser.
//!
//! Only a browser can do this: a session ended from the CLI (`tessera session revoke`,
//! `user disable`) reaches relying parties by the back channel alone.

use url::Url;

use crate::store::{Store, StoreError};

/// One client's logout page, ready for the signed-out page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub client_id: String,
    /// The `frontchannel_logout_uri` with `iss` and `sid` appended.
    pub src: String,
    /// Its origin, for the page's CSP `frame-src`.
    pub origin: String,
}

/// The client's `uri` with `iss` and `sid` appended to the query it already has (§2: that
/// query "MUST be retained when adding additional query parameters"). Both always: a client
/// that registered `frontchannel_logout_session_required` must get them, §2 has "if either is
/// included, both MUST be", and a client that does not need them ignores them. `None` when
/// `uri` is not an http(s) URL: registration refuses those, but a record written by other
/// means must not put a `javascript:` URL into an iframe.
pub fn logout_frame(client_id: &str, uri: &str, issuer: &str, sid: &str) -> Option<Frame> {
    let mut url = Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    // §2: the registered URI "MUST NOT include a fragment"; one written by other means is
    // dropped rather than carried along after the added parameters.
    url.set_fragment(None);
    url.query_pairs_mut()
        .append_pair("iss", issuer)
        .append_pair("sid", sid);
    Some(Frame {
        client_id: client_id.to_owned(),
        origin: url.origin().ascii_serialization(),
        src: url.into(),
    })
}

/// The iframes for the end of session `sid`: one per client that signed in through it and
/// registered a `frontchannel_logout_uri`. Read before the session is deleted, while what it
/// signed into is still certain.
pub async fn frames(store: &dyn Store, issuer: &str, sid: &str) -> Result<Vec<Frame>, StoreError> {
    let clients = store.frontchannel_clients(sid).await?;
    Ok(clients
        .iter()
        .filter_map(|c| {
            let uri = c.frontchannel_logout_uri.as_deref()?;
            let frame = logout_frame(&c.id, uri, issuer, sid);
            if frame.is_none() {
                tracing::warn!(client_id = %c.id, "front-channel logout URI is not an http(s) URL; skipped");
            }
            frame
        })
        .collect())
}

/// The distinct origins of `frames`, in order: the CSP `frame-src` sources of the page.
pub fn origins(frames: &[Frame]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for f in frames {
        if !out.contains(&f.origin.as_str()) {
            out.push(&f.origin);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iss_and_sid_are_appended_url_encoded_after_the_query_frontchannel_logout_2() {
        let f = logout_frame(
            "web",
            "https://rp.example.com:8443/fcl?x=1&y=a%20b",
            "https://id.example.com/t 1",
            "s+d/=",
        )
        .unwrap();
        assert_eq!(
            f.src,
            "https://rp.example.com:8443/fcl?x=1&y=a%20b\
             &iss=https%3A%2F%2Fid.example.com%2Ft+1&sid=s%2Bd%2F%3D"
        );
        assert_eq!(f.origin, "https://rp.example.com:8443");
        let parsed: Vec<(String, String)> = Url::parse(&f.src)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(
            parsed[2],
            ("iss".into(), "https://id.example.com/t 1".into())
        );
        assert_eq!(parsed[3], ("sid".into(), "s+d/=".into()));
    }

    #[test]
    fn a_uri_without_a_query_gets_one_frontchannel_logout_2() {
        let f = logout_frame("web", "http://127.0.0.1:7777/fcl", "http://i", "s").unwrap();
        assert_eq!(f.src, "http://127.0.0.1:7777/fcl?iss=http%3A%2F%2Fi&sid=s");
        assert_eq!(f.origin, "http://127.0.0.1:7777");
    }

    #[test]
    fn only_http_and_https_uris_become_frames() {
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "/relative",
            "com.example:/x",
        ] {
            assert!(
                logout_frame("web", bad, "https://i", "s").is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn origins_are_listed_once_each() {
        let frames = [
            logout_frame("a", "https://a.example/1", "https://i", "s").unwrap(),
            logout_frame("b", "https://b.example/1", "https://i", "s").unwrap(),
            logout_frame("c", "https://a.example/2", "https://i", "s").unwrap(),
        ];
        assert_eq!(origins(&frames), ["https://a.example", "https://b.example"]);
    }
}
