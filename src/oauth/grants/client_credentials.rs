//! `grant_type=client_credentials`: RFC 6749 §4.4. A confidential client gets a token for
//! itself (`sub` is the client): no user, no grant, no refresh token (§4.4.3). The cost is
//! the client's digest check and one transaction (the token and its audit row); no slow hash.

use super::{mint, token_write_error, GrantType, Issued, Plan};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::params::Params;
use crate::oauth::scope;
use crate::oauth::Context;
use crate::store::ClientRecord;

pub async fn issue(
    ctx: Context<'_>,
    client: &ClientRecord,
    params: &Params,
    now: i64,
) -> Result<Issued, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client_credentials needs a confidential client",
        ));
    }
    let allowed = scope::parse(&client.scope).map_err(OAuthError::server)?;
    let granted = match params.get("scope") {
        Some(requested) => {
            scope::check_within(requested, &allowed)
                .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?;
            if let Some(person) = requested.split(' ').find(|s| scope::describes_person(s)) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope `{person}` describes a person and is not granted to a client acting for itself"),
                ));
            }
            requested.to_owned()
        }
        // RFC 6749 §3.3: without a scope, the client's registered non-person scopes.
        None => {
            let mut own: Vec<&str> = allowed
                .iter()
                .filter(|s| !scope::describes_person(s))
                .collect();
            own.sort_unstable();
            if own.is_empty() {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "this client has no scope to grant itself",
                ));
            }
            own.join(" ")
        }
    };
    let minted = mint(
        ctx,
        Plan {
            grant_type: GrantType::ClientCredentials,
            client,
            account_id: None,
            grant_id: None,
            scope: &granted,
            refresh: None,
            id_token: None,
        },
        now,
    )
    .await?;
    ctx.store
        .insert_tokens(&minted.rows, &minted.audit)
        .await
        .map_err(token_write_error)?;
    Ok(minted.issued)
}
