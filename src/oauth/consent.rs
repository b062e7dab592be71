//! Consent, OIDC Core §3.1.2.4: remembered per user, client and scope. Approving adds the
//! requested scopes to what was approved before (the store merges, atomically); denying ends
//! the request with `access_denied` (RFC 6749 §4.1.2.1).

use super::authorize::AuthorizeRequest;
use super::error::{ErrorCode, OAuthError};
use crate::audit::{AuditEvent, AuditKind};
use crate::store::{ConsentGiven, Store};

/// The person's answer on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn parse(value: Option<&str>) -> Option<Decision> {
        match value {
            Some("approve") => Some(Decision::Approve),
            Some("deny") => Some(Decision::Deny),
            _ => None,
        }
    }
}

/// Where a request came from, for the audit trail: source address and user agent.
pub type Origin = (Option<String>, Option<String>);

/// Acts on the decision. A denial is recorded with its audit event, and the error is the
/// answer for the client. An approval is handed back to be recorded (with the code it leads
/// to, in one write; alone if the request goes another way), and the request carries on
/// with the scopes just consented to.
pub async fn decide(
    store: &dyn Store,
    request: &AuthorizeRequest,
    account_id: &str,
    decision: Decision,
    now: i64,
    (ip, agent): Origin,
) -> Result<ConsentGiven, OAuthError> {
    // The scopes whose claims the request asked for by name are consented to with the rest.
    let scope = request.consent_scope.iter().collect::<Vec<_>>().join(" ");
    let audit = |kind| {
        AuditEvent::new(kind, format!("user:{account_id}"), now)
            .account(account_id)
            .client(&request.client.id)
            .from_request(ip.clone(), agent.clone())
            .details(serde_json::json!({ "scope": scope }))
    };
    match decision {
        Decision::Approve => Ok(ConsentGiven {
            account_id: account_id.to_owned(),
            client_id: request.client.id.clone(),
            audit: audit(AuditKind::ConsentGranted),
            scope,
            now,
        }),
        Decision::Deny => {
            store.append_audit(&audit(AuditKind::ConsentDenied)).await?;
            Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "the user denied the request",
            ))
        }
    }
}
