//! Which user claims each scope releases: OIDC Core §5.4.

use serde_json::{json, Map, Value};

use crate::store::AccountRecord;

/// `sub` plus the standard claims the granted `scope` covers, leaving out claims the user
/// does not have.
pub fn for_scope(account: &AccountRecord, scope: &[&str]) -> Map<String, Value> {
    let c = &account.claims;
    let mut out = Map::new();
    out.insert("sub".into(), json!(account.id));
    let mut put = |name: &str, value: Value| {
        if !value.is_null() {
            out.insert(name.to_owned(), value);
        }
    };
    if scope.contains(&"profile") {
        put("name", json!(c.name));
        put("given_name", json!(c.given_name));
        put("family_name", json!(c.family_name));
        put("middle_name", json!(c.middle_name));
        put("nickname", json!(c.nickname));
        // Core §5.1: the name the person wants to be shown as; the username until they say.
        put(
            "preferred_username",
            json!(c.preferred_username.as_ref().unwrap_or(&account.username)),
        );
        put("profile", json!(c.profile));
        put("picture", json!(c.picture));
        put("website", json!(c.website));
        put("gender", json!(c.gender));
        put("birthdate", json!(c.birthdate));
        put("zoneinfo", json!(c.zoneinfo));
        put("locale", json!(c.locale));
        put("updated_at", json!(account.updated_at));
    }
    if scope.contains(&"email") {
        put("email", json!(c.email));
        put("email_verified", json!(c.email_verified));
    }
    if scope.contains(&"address") {
        put("address", json!(c.address));
    }
    if scope.contains(&"phone") {
        put("phone_number", json!(c.phone_number));
        put("phone_number_verified", json!(c.phone_number_verified));
    }
    out
}

/// The user's roles and groups (RFC 9068 §2.2.3.1, after SCIM), for introspection answers
/// and JWT access tokens whose scope includes `roles` (`scope::ROLES`).
pub fn roles(account: &AccountRecord) -> [(&'static str, Value); 2] {
    [
        ("roles", json!(account.roles)),
        ("groups", json!(account.groups)),
    ]
}

/// Every claim `for_scope` can release, for discovery's `claims_supported`.
pub const SUPPORTED: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "amr",
    "at_hash",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "updated_at",
    "email",
    "email_verified",
    "address",
    "phone_number",
    "phone_number_verified",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StandardClaims;

    fn ada() -> AccountRecord {
        AccountRecord {
            id: "sub-1".into(),
            username: "ada".into(),
            password_hash: None,
            claims: StandardClaims {
                name: Some("Ada".into()),
                email: Some("ada@example.com".into()),
                email_verified: Some(true),
                phone_number: Some("+1 555".into()),
                ..Default::default()
            },
            disabled: false,
            failed_login_count: 0,
            roles: Vec::new(),
            groups: Vec::new(),
            created_at: 1,
            updated_at: 2,
        }
    }

    #[test]
    fn each_scope_releases_only_its_claims_oidc_5_4() {
        let openid = for_scope(&ada(), &["openid"]);
        assert_eq!(openid.keys().collect::<Vec<_>>(), ["sub"]);
        let email = for_scope(&ada(), &["openid", "email"]);
        assert_eq!(email["email"], "ada@example.com");
        assert_eq!(email["email_verified"], true);
        assert!(!email.contains_key("name") && !email.contains_key("phone_number"));
        let profile = for_scope(&ada(), &["openid", "profile"]);
        assert_eq!(profile["name"], "Ada");
        assert_eq!(profile["updated_at"], 2);
        assert!(
            !profile.contains_key("nickname"),
            "absent claims are left out"
        );
        let phone = for_scope(&ada(), &["phone"]);
        assert_eq!(phone["phone_number"], "+1 555");
    }

    #[test]
    fn preferred_username_defaults_to_the_username_oidc_5_1() {
        assert_eq!(for_scope(&ada(), &["profile"])["preferred_username"], "ada");
        let mut chosen = ada();
        chosen.claims.preferred_username = Some("Countess".into());
        assert_eq!(
            for_scope(&chosen, &["profile"])["preferred_username"],
            "Countess"
        );
        assert!(!for_scope(&ada(), &["email"]).contains_key("preferred_username"));
    }

    #[test]
    fn the_address_scope_releases_the_structured_address_oidc_5_1_1() {
        let mut a = ada();
        a.claims.address = Some(crate::store::Address {
            locality: Some("London".into()),
            country: Some("GB".into()),
            ..Default::default()
        });
        let out = for_scope(&a, &["address"]);
        assert_eq!(
            out["address"],
            json!({ "locality": "London", "country": "GB" })
        );
        assert!(!for_scope(&a, &["profile"]).contains_key("address"));
    }
}
