//! One answer to "is this credential valid, and whose is it?", for every place that is
//! shown a token: introspection (RFC 7662), userinfo (OIDC Core §5.3), revocation
//! (RFC 7009), the refresh grant (RFC 6749 §6) and API keys.
//!
//! A credential is active when it exists, is neither revoked (itself or its grant) nor
//! expired, is not a spent refresh token, and its user (if any) exists and is enabled. Each
//! caller adds only its own rule on top (who may see it, which kind it must be).

use crate::crypto::api_key;
use crate::crypto::token::Digest;
use crate::store::{
    AccountRecord, GrantRecord, Store, StoreError, StoredCredential, TokenKind, TokenRecord,
};

/// A credential that may be used now, and the user it speaks for.
#[derive(Debug, Clone)]
pub struct ActiveCredential {
    pub token: TokenRecord,
    /// `None` for a client's own token (client_credentials).
    pub account: Option<AccountRecord>,
    /// The grant it was issued under (unrevoked); `None` for client_credentials and API keys.
    pub grant: Option<GrantRecord>,
}

/// What a presented value is.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// Not a credential Tessera issued (or one since deleted).
    Unknown,
    /// Issued here, but not usable now; the record says why (for the refresh grant's reuse
    /// detection and for revocation, which also accepts dead tokens).
    Inactive(Box<TokenRecord>),
    Active(Box<ActiveCredential>),
}

impl Resolution {
    /// The record, active or not.
    pub fn record(&self) -> Option<&TokenRecord> {
        match self {
            Resolution::Unknown => None,
            Resolution::Inactive(t) => Some(t),
            Resolution::Active(c) => Some(&c.token),
        }
    }

    /// The active credential, if there is one.
    pub fn active(self) -> Option<ActiveCredential> {
        match self {
            Resolution::Active(c) => Some(*c),
            _ => None,
        }
    }
}

/// One indexed lookup by digest, which also reads the grant and the user. No cache here (a
/// revocation shows at the next call); introspection keeps its answers under the bound of
/// decision 0022. A value with the API key prefix whose checksum fails
/// is unknown without a lookup.
pub async fn resolve(
    store: &dyn Store,
    presented: &str,
    now: i64,
) -> Result<Resolution, StoreError> {
    if api_key::looks_like(presented) && !api_key::is_well_formed(presented) {
        return Ok(Resolution::Unknown);
    }
    let Some(StoredCredential {
        token,
        grant,
        account,
    }) = store.credential(&Digest::of(presented)).await?
    else {
        return Ok(Resolution::Unknown);
    };
    let spent = token.kind == TokenKind::Refresh && token.used_at.is_some();
    if !token.is_active(now) || spent {
        return Ok(Resolution::Inactive(Box::new(token)));
    }
    let account = match (&token.account_id, account) {
        (None, _) => None,
        (Some(_), Some(a)) if !a.disabled => Some(a),
        (Some(_), _) => return Ok(Resolution::Inactive(Box::new(token))),
    };
    // `token.is_active` has checked the grant's revocation (the token's `revoked_at`
    // includes it).
    Ok(Resolution::Active(Box::new(ActiveCredential {
        token,
        account,
        grant,
    })))
}
