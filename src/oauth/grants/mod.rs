//! One module per `grant_type` (STYLE.md §1), and what they issue.

pub mod authorization_code;

use crate::crypto::token::PlainSecret;

/// What the token endpoint hands back. Refresh and ID tokens arrive with later grants'
/// work; the fields are here so the response shape does not change then.
#[derive(Debug)]
pub struct Issued {
    pub access_token: PlainSecret,
    pub expires_in: i64,
    pub scope: String,
    pub refresh_token: Option<PlainSecret>,
    pub id_token: Option<String>,
}
