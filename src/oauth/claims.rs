//! Which user claims are released, and where: by scope (OIDC Core §5.4) and, one by one,
//! through the `claims` request parameter (Core §5.5).

use oxide_auth::primitives::scope::Scope;
use serde_json::{json, Map, Value};

use crate::store::{AccountRecord, RequestedClaims};

/// The claims each scope releases (Core §5.4), in the order they are listed.
const BY_SCOPE: &[(&str, &[&str])] = &[
    (
        "profile",
        &[
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
        ],
    ),
    ("email", &["email", "email_verified"]),
    ("address", &["address"]),
    ("phone", &["phone_number", "phone_number_verified"]),
];

/// The user's value of one standard claim, if they have it.
fn value_of(account: &AccountRecord, claim: &str) -> Option<Value> {
    let c = &account.claims;
    let text = |v: &Option<String>| v.as_ref().map(|s| json!(s));
    match claim {
        "name" => text(&c.name),
        "given_name" => text(&c.given_name),
        "family_name" => text(&c.family_name),
        "middle_name" => text(&c.middle_name),
        "nickname" => text(&c.nickname),
        // Core §5.1: the name the person wants to be shown as; the username until they say.
        "preferred_username" => Some(json!(c
            .preferred_username
            .as_ref()
            .unwrap_or(&account.username))),
        "profile" => text(&c.profile),
        "picture" => text(&c.picture),
        "website" => text(&c.website),
        "gender" => text(&c.gender),
        "birthdate" => text(&c.birthdate),
        "zoneinfo" => text(&c.zoneinfo),
        "locale" => text(&c.locale),
        "updated_at" => Some(json!(account.updated_at)),
        "email" => text(&c.email),
        "email_verified" => c.email_verified.map(|v| json!(v)),
        "address" => c.address.as_ref().map(|a| json!(a)),
        "phone_number" => text(&c.phone_number),
        "phone_number_verified" => c.phone_number_verified.map(|v| json!(v)),
        _ => None,
    }
}

/// The scope whose consent covers releasing `claim`, if it is a user claim.
pub fn scope_of(claim: &str) -> Option<&'static str> {
    BY_SCOPE
        .iter()
        .find(|(_, claims)| claims.contains(&claim))
        .map(|(scope, _)| *scope)
}

/// `sub` plus the standard claims the granted `scope` covers, leaving out claims the user
/// does not have.
pub fn for_scope(account: &AccountRecord, scope: &[&str]) -> Map<String, Value> {
    let names = BY_SCOPE
        .iter()
        .filter(|(s, _)| scope.contains(s))
        .flat_map(|(_, claims)| claims.iter().copied());
    named(account, names)
}

/// `sub` plus the named claims the user has (a scope's, or the `claims` parameter's, which
/// [`requested`] has limited to those the grant may release).
pub fn named<'a>(
    account: &AccountRecord,
    names: impl IntoIterator<Item = &'a str>,
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("sub".into(), json!(account.id));
    for name in names {
        if let Some(value) = value_of(account, name) {
            out.insert(name.to_owned(), value);
        }
    }
    out
}

/// Userinfo's answer (Core §5.3.2): the claims of the token's scope and those the
/// authorization request asked for by name for userinfo (Core §5.5).
pub fn for_userinfo(
    account: &AccountRecord,
    scope: &[&str],
    requested: &RequestedClaims,
) -> Map<String, Value> {
    let mut out = for_scope(account, scope);
    out.extend(named(
        account,
        requested.userinfo.iter().map(String::as_str),
    ));
    out
}

/// The user claims a `claims` request parameter (Core §5.5, shape checked by
/// `acr::parse_claims`) asks for, per member, kept only where the client is registered for
/// the scope that would release them: the parameter picks claims, it never widens what the
/// operator allows a client. Other names (`acr`, `auth_time`, unknown claims) are not user
/// claims; the ID token's own claims are always present and `acr` is `acr.rs`'s business.
pub fn requested(claims: Option<&Value>, allowed: &Scope) -> RequestedClaims {
    let names = |member: &str| -> Vec<String> {
        let Some(Value::Object(asked)) = claims.and_then(|c| c.get(member)) else {
            return Vec::new();
        };
        BY_SCOPE
            .iter()
            .filter(|(scope, _)| allowed.iter().any(|a| a == *scope))
            .flat_map(|(_, claims)| claims.iter())
            .filter(|claim| asked.contains_key(**claim))
            .map(|claim| (*claim).to_owned())
            .collect()
    };
    RequestedClaims {
        id_token: names("id_token"),
        userinfo: names("userinfo"),
    }
}

/// Core §5.5.1: a `sub` asked for with a value in the ID token names the only person a
/// positive answer may be for.
pub fn requested_subject(claims: Option<&Value>) -> Option<String> {
    claims?
        .get("id_token")?
        .get("sub")?
        .get("value")?
        .as_str()
        .map(str::to_owned)
}

/// The user's roles and groups (RFC 9068 §2.2.3.1, after SCIM), for introspection answers
/// and JWT access tokens whose scope includes `roles` (`scope::ROLES`).
pub fn roles(account: &AccountRecord) -> [(&'static str, Value); 2] {
    [
        ("roles", json!(account.roles)),
        ("groups", json!(account.groups)),
    ]
}

/// The claims of the ID token itself (Core §2, Front-/Back-Channel Logout §2 `sid`).
const PROTOCOL: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "sid",
    "at_hash",
];

/// Every claim Tessera can return, for discovery's `claims_supported`.
pub fn supported() -> Vec<&'static str> {
    PROTOCOL
        .iter()
        .chain(BY_SCOPE.iter().flat_map(|(_, claims)| claims.iter()))
        .copied()
        .collect()
}

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

    #[test]
    fn named_claims_stay_within_the_clients_scopes_oidc_5_5() {
        let allowed = crate::oauth::scope::parse("openid profile email").unwrap();
        let asked = json!({
            "id_token": { "email": { "essential": true }, "acr": null, "sub": null },
            "userinfo": { "phone_number": null, "name": null, "no_such_claim": null },
        });
        let r = requested(Some(&asked), &allowed);
        assert_eq!(r.id_token, ["email"]);
        assert_eq!(
            r.userinfo,
            ["name"],
            "phone is not registered; unknown names dropped"
        );
        assert!(requested(None, &allowed).is_empty());
        assert_eq!(scope_of("email_verified"), Some("email"));
        assert_eq!(scope_of("updated_at"), Some("profile"));
        assert_eq!(scope_of("acr"), None);
    }

    #[test]
    fn userinfo_adds_the_claims_asked_for_by_name_oidc_5_5() {
        let asked = RequestedClaims {
            id_token: vec!["name".into()],
            userinfo: vec!["email".into()],
        };
        let out = for_userinfo(&ada(), &["openid"], &asked);
        assert_eq!(out["email"], "ada@example.com");
        assert!(!out.contains_key("name"), "asked for in the ID token only");
        assert!(
            !out.contains_key("email_verified"),
            "asked for by name, not by scope"
        );
    }

    #[test]
    fn a_sub_with_a_value_names_the_only_acceptable_user_oidc_5_5_1() {
        let asked = json!({ "id_token": { "sub": { "value": "sub-1" } } });
        assert_eq!(requested_subject(Some(&asked)).as_deref(), Some("sub-1"));
        let by_name = json!({ "id_token": { "sub": null } });
        assert_eq!(requested_subject(Some(&by_name)), None);
        let userinfo = json!({ "userinfo": { "sub": { "value": "sub-1" } } });
        assert_eq!(requested_subject(Some(&userinfo)), None);
    }
}
