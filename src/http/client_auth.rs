//! Client authentication at the token endpoint (RFC 6749 §2.3): `client_secret_basic`
//! (§2.3.1, id and secret form-urlencoded inside Basic), `client_secret_post`, and `none`
//! for public clients. A client may use only the method it registered, and exactly one.
//! Every failure is the same `invalid_client`; the reason is logged.

use axum::http::{header, HeaderMap};
use base64::Engine;

use super::client_ip;
use super::error::TokenError;
use crate::app::AppState;
use crate::oauth::error::OAuthError;
use crate::oauth::params::{has_control, Params};
use crate::store::{AuthMethod, ClientRecord};

/// How the request tried to authenticate.
enum Presented {
    Basic { id: String, secret: String },
    Post { id: String, secret: String },
    None { id: String },
}

/// RFC 6749 §2.3.1 / Appendix B: each half is form-urlencoded before Basic encoding.
fn form_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Public only for the fuzz targets (`fuzz/`); not an API.
#[doc(hidden)]
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let (id, secret) = (form_decode(id)?, form_decode(secret)?);
    // Same rule as form parameters: no control characters (Postgres refuses NUL in text).
    if has_control(&id) || has_control(&secret) {
        return None;
    }
    Some((id, secret))
}

fn presented(headers: &HeaderMap, params: &Params) -> Result<Presented, TokenError> {
    let basic = headers.get(header::AUTHORIZATION);
    let body_secret = params.get("client_secret");
    match (basic, body_secret) {
        (Some(_), Some(_)) => Err(TokenError {
            // RFC 6749 §2.3: "MUST NOT use more than one authentication method".
            error: OAuthError::invalid_request("use one client authentication method, not two"),
            basic: true,
            limit: None,
        }),
        (Some(value), None) => {
            let (id, secret) =
                value
                    .to_str()
                    .ok()
                    .and_then(parse_basic)
                    .ok_or_else(|| TokenError {
                        error: OAuthError::invalid_client("malformed Basic credentials"),
                        basic: true,
                        limit: None,
                    })?;
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(TokenError {
                    error: OAuthError::invalid_client("client_id in body differs from Basic"),
                    basic: true,
                    limit: None,
                });
            }
            Ok(Presented::Basic { id, secret })
        }
        (None, Some(secret)) => Ok(Presented::Post {
            id: params.required("client_id")?.to_owned(),
            secret: secret.to_owned(),
        }),
        (None, None) => match params.get("client_id") {
            Some(id) => Ok(Presented::None { id: id.to_owned() }),
            None => Err(OAuthError::invalid_client("no client authentication").into()),
        },
    }
}

/// A form POST to a client endpoint (token, introspection, revocation): the body must be
/// form-encoded (RFC 6749 §3.2), no allowed parameter repeated, and the client must
/// authenticate. Returns the parameters (from `allowed`) and the client.
pub async fn authenticated_form(
    app: &AppState,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
    body: &[u8],
    allowed: &[&str],
) -> Result<(Params, ClientRecord), TokenError> {
    if !super::error::is_form(headers) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        )
        .into());
    }
    let params = Params::parse(body, allowed);
    params.reject_malformed()?;
    let client = match authenticate(app, headers, &params).await {
        Ok(client) => client,
        // Unauthenticated calls count against the caller's address, so guessing secrets
        // (or ids) is rate limited too.
        Err(e) => {
            let addr = client_ip::client_ip(&app.config.trusted_proxies, headers, peer);
            if let Err(exceeded) = app.rate_limits.check_address(addr) {
                return Err(TokenError::rate_limited(exceeded));
            }
            return Err(e);
        }
    };
    // A public client proves nothing but its (public) id: keyed by id alone, anyone could
    // spend its whole allowance and lock its users out, so each address gets its own.
    let key = if client.is_public() {
        let addr = crate::net::address_key(client_ip::client_ip(
            &app.config.trusted_proxies,
            headers,
            peer,
        ));
        format!("{}@{addr}", client.id)
    } else {
        client.id.clone()
    };
    app.rate_limits
        .check_client(&key, client.rate_limit_per_sec)
        .map_err(TokenError::rate_limited)?;
    Ok((params, client))
}

/// The authenticated client, or `invalid_client`.
pub async fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<ClientRecord, TokenError> {
    let presented = presented(headers, params)?;
    let (id, secret, method, basic) = match &presented {
        Presented::Basic { id, secret } => (id, Some(secret), AuthMethod::ClientSecretBasic, true),
        Presented::Post { id, secret } => (id, Some(secret), AuthMethod::ClientSecretPost, false),
        Presented::None { id } => (id, None, AuthMethod::None, false),
    };
    let fail = |why| TokenError {
        error: OAuthError::invalid_client(why),
        basic,
        limit: None,
    };
    let client = app
        .clients
        .get(app.store.as_ref(), id)
        .await?
        .ok_or_else(|| fail("unknown client"))?;
    let client = ClientRecord::clone(&client);
    if client.token_endpoint_auth_method != method {
        return Err(fail(
            "client used an authentication method it is not registered for",
        ));
    }
    match (secret, client.secret_digest) {
        (None, None) => Ok(client),
        (Some(secret), Some(digest)) if digest.verify(secret) => Ok(client),
        _ => Err(fail("wrong client secret")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_halves_are_form_urldecoded_rfc6749_2_3_1() {
        // id "my client", secret "a:b+c%d" as a conforming client encodes them.
        let raw = "my+client:a%3Ab%2Bc%25d";
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        assert_eq!(
            parse_basic(&header),
            Some(("my client".to_owned(), "a:b+c%d".to_owned()))
        );
    }

    #[test]
    fn basic_splits_at_the_first_colon_and_rejects_garbage() {
        let header = format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode("id:se:cret")
        );
        assert_eq!(
            parse_basic(&header),
            Some(("id".to_owned(), "se:cret".to_owned()))
        );
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Bearer abc"), None);
        let no_colon = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("idsecret")
        );
        assert_eq!(parse_basic(&no_colon), None);
        let nul = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("a%00b:secret")
        );
        assert_eq!(parse_basic(&nul), None);
    }
}
