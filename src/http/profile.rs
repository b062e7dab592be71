//! `/account/profile`: a person edits their own standard claims (OIDC Core §5.1, §5.1.1),
//! behind the account page's login session. The rules are `oauth::profile`'s, the CLI's too;
//! the e-mail address and the phone number are shown but stay the operator's to change,
//! since their `_verified` flags vouch for them.
//!
//! The form is read strictly: a field the page does not show, or a field sent twice, refuses
//! the whole form, and nothing is written. A refused value shows the form again with the
//! person's entries and what is wrong next to each; so does a form filled in before the
//! claims changed elsewhere, rather than undo that change (decision 0030).

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use url::form_urlencoded;

use super::forms::{expired_form, request_meta, see_other};
use super::{error, pages, session};
use crate::app::AppState;
use crate::audit::{AuditEvent, AuditKind};
use crate::oauth::params::{MAX_PAIRS, MAX_VALUE_LEN};
use crate::oauth::profile::{self, Claim, ClaimEdit, ClaimError};
use crate::paths;
use crate::store::{AccountRecord, StoreError};

/// Where a save lands: the account page, with a query saying what happened, which it matches
/// to fixed words (never text from the request).
pub const SAVED: &str = "profile=saved";
pub const UNCHANGED: &str = "profile=unchanged";

/// One input of the form.
struct Field {
    claim: Claim,
    label: &'static str,
    /// The HTML autofill token, so that browsers and password managers fill the right value.
    autocomplete: &'static str,
    /// `text` or `url`.
    kind: &'static str,
    hint: &'static str,
}

const fn field(claim: Claim, label: &'static str, autocomplete: &'static str) -> Field {
    Field {
        claim,
        label,
        autocomplete,
        kind: "text",
        hint: "",
    }
}

impl Field {
    const fn hint(self, hint: &'static str) -> Field {
        Field { hint, ..self }
    }

    const fn url(self) -> Field {
        Field {
            kind: "url",
            ..self
        }
    }
}

/// The form's fieldsets, in the order shown: together, each self-editable claim once.
const GROUPS: &[(&str, &[Field])] = &[
    (
        "Name",
        &[
            field(Claim::Name, "Full name", "name"),
            field(Claim::GivenName, "Given name", "given-name"),
            field(Claim::MiddleName, "Middle name", "additional-name"),
            field(Claim::FamilyName, "Family name", "family-name"),
            field(Claim::Nickname, "Nickname", "nickname"),
            // Its hint names the username, so it is written where the page is made.
            field(Claim::PreferredUsername, "Preferred username", "username"),
        ],
    ),
    (
        "About you",
        &[
            field(Claim::Profile, "Profile page", "off")
                .url()
                .hint("A page about you, e.g. https://example.com/ada"),
            field(Claim::Picture, "Picture", "photo")
                .url()
                .hint("The address of an image of you"),
            field(Claim::Website, "Website", "url")
                .url()
                .hint("Your web site or blog"),
            field(Claim::Gender, "Gender", "sex")
                .hint("e.g. female, male, or as you describe yourself"),
            field(Claim::Birthdate, "Birthdate", "bday")
                .hint("YYYY-MM-DD; the year alone (YYYY); or 0000-MM-DD to leave the year out"),
            field(Claim::Zoneinfo, "Time zone", "off")
                .hint("e.g. Europe/Paris or America/New_York"),
            field(Claim::Locale, "Language", "language").hint("e.g. en-GB or fr"),
        ],
    ),
    (
        "Address",
        &[
            field(Claim::StreetAddress, "Street address", "street-address"),
            field(Claim::Locality, "City or town", "address-level2"),
            field(Claim::Region, "State, province or region", "address-level1"),
            field(Claim::PostalCode, "Postal code", "postal-code"),
            field(Claim::Country, "Country", "country-name"),
            field(Claim::Formatted, "Whole address as printed", "off")
                .hint("Only if applications should show your address exactly so"),
        ],
    ),
];

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage<'a> {
    username: &'a str,
    csrf_token: &'a str,
    /// `oauth::profile::version` of the claims the form is filled from.
    version: String,
    problem: Option<&'a str>,
    errors: Vec<ErrorView>,
    groups: Vec<GroupView>,
    email: Option<ContactView>,
    phone: Option<ContactView>,
}

struct GroupView {
    legend: &'static str,
    fields: Vec<FieldView>,
}

struct FieldView {
    name: &'static str,
    label: &'static str,
    autocomplete: &'static str,
    kind: &'static str,
    multiline: bool,
    max_chars: usize,
    value: String,
    hint: String,
    error: Option<String>,
    /// The ids of the hint and the error, for `aria-describedby`.
    described_by: String,
}

struct ErrorView {
    field: &'static str,
    message: String,
}

struct ContactView {
    value: String,
    verified: bool,
}

/// GET /account/profile: the form, filled with the stored claims; without a session, the
/// account page's sign-in.
pub async fn get(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match session::current(&app, &headers, app.clock.now()).await {
        Ok(Some((_, account))) => page(&app, &headers, &account, Shown::Stored),
        Ok(None) => see_other(paths::ACCOUNT),
        Err(e) => store_failed(e),
    }
}

/// POST /account/profile: checks and saves the form, then back to the account page.
pub async fn post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(form) = error::is_form(&headers).then(|| parse(&body)).flatten() else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "The form was not sent correctly",
            "Go back to your profile and try again.",
        );
    };
    if !session::Csrf::verify(&app, &headers, form.csrf_token.as_deref()) {
        return expired_form();
    }
    let now = app.clock.now();
    let account = match session::current(&app, &headers, now).await {
        Ok(Some((_, account))) => account,
        Ok(None) => return see_other(paths::ACCOUNT),
        Err(e) => return store_failed(e),
    };
    let edit = &form.edit;
    let before = &account.claims;
    // Filled in before the claims changed elsewhere (another tab, the operator): saving it
    // would undo that change unseen, so the person looks again.
    if form.version.as_deref() != Some(profile::version(before).as_str()) {
        return page(&app, &headers, &account, Shown::Stale(edit));
    }
    let after = edit.applied_to(before);
    let errors = profile::check(before, &after);
    if !errors.is_empty() {
        return page(&app, &headers, &account, Shown::Refused(edit, &errors));
    }
    let changed = profile::changed(before, &after);
    if changed.is_empty() {
        return see_other(&format!("{}?{UNCHANGED}", paths::ACCOUNT));
    }
    let (source_ip, user_agent) = request_meta(&app, &headers, peer);
    let names: Vec<&str> = changed.iter().map(|c| c.as_str()).collect();
    let audit = AuditEvent::new(AuditKind::UserUpdated, format!("user:{}", account.id), now)
        .account(&account.id)
        .from_request(source_ip, user_agent)
        .details(json!({ "claims": names }));
    let store = app.store.as_ref();
    match store
        .update_account_claims(&account.id, before, &after, now, &audit)
        .await
    {
        Ok(true) => see_other(&format!("{}?{SAVED}", paths::ACCOUNT)),
        Ok(false) => page(&app, &headers, &account, Shown::Stale(edit)),
        // Disabled or deleted since the session was read: the account page says what is left.
        Err(StoreError::NotFound(_)) => see_other(paths::ACCOUNT),
        Err(e) => store_failed(e),
    }
}

/// The profile form as sent.
struct Form {
    csrf_token: Option<String>,
    version: Option<String>,
    edit: ClaimEdit,
}

/// The form's fields; `None` if it is not the form this page sends: a field it does not have
/// (the e-mail address, a verification flag), a field twice, too many fields or an overlong
/// value. Browsers send a textarea's line breaks as CRLF; the address keeps them as LF (Core
/// §5.1.1).
fn parse(body: &[u8]) -> Option<Form> {
    let mut form = Form {
        csrf_token: None,
        version: None,
        edit: ClaimEdit::default(),
    };
    let mut seen: Vec<String> = Vec::new();
    for (i, (name, value)) in form_urlencoded::parse(body).enumerate() {
        if i == MAX_PAIRS || value.len() > MAX_VALUE_LEN || seen.iter().any(|s| *s == name) {
            return None;
        }
        seen.push(name.to_string());
        match name.as_ref() {
            "csrf_token" => {
                form.csrf_token = Some(value.into_owned());
                continue;
            }
            "version" => {
                form.version = Some(value.into_owned());
                continue;
            }
            _ => {}
        }
        let claim = Claim::ALL
            .iter()
            .copied()
            .find(|c| c.is_self_editable() && c.as_str() == name)?;
        let value = if claim.is_multiline() {
            value.replace("\r\n", "\n").replace('\r', "\n")
        } else {
            value.into_owned()
        };
        form.edit.set(claim, Some(value));
    }
    Some(form)
}

/// What the form shows.
enum Shown<'a> {
    /// The claims as stored.
    Stored,
    /// The person's entries, refused for these reasons (400).
    Refused(&'a ClaimEdit, &'a [ClaimError]),
    /// The person's entries, not saved because the stored claims changed since the form
    /// was filled (409).
    Stale(&'a ClaimEdit),
}

fn page(
    app: &AppState,
    headers: &HeaderMap,
    account: &AccountRecord,
    shown: Shown<'_>,
) -> Response {
    let (status, edit, refused, problem) = match shown {
        Shown::Stored => (StatusCode::OK, None, &[][..], None),
        Shown::Refused(edit, errors) => (
            StatusCode::BAD_REQUEST,
            Some(edit),
            errors,
            Some("Your profile was not saved. Please correct what is marked below."),
        ),
        Shown::Stale(edit) => (
            StatusCode::CONFLICT,
            Some(edit),
            &[][..],
            Some(
                "Your profile was not saved: it was changed elsewhere (another tab, or your administrator) while you edited it. Check your entries below and save again.",
            ),
        ),
    };
    let message = |e: &ClaimError, label: &str| format!("{label} {}", e.problem);
    let groups = GROUPS
        .iter()
        .map(|(legend, fields)| GroupView {
            legend,
            fields: fields
                .iter()
                .map(|f| {
                    let value = edit
                        .and_then(|e| e.get(f.claim))
                        .or_else(|| f.claim.value(&account.claims))
                        .unwrap_or("");
                    let hint = if f.claim == Claim::PreferredUsername {
                        format!(
                            "How applications show you; if empty, “{}”",
                            account.username
                        )
                    } else {
                        f.hint.to_owned()
                    };
                    let error = refused
                        .iter()
                        .find(|e| e.claim == f.claim)
                        .map(|e| message(e, f.label));
                    let described_by = [
                        (!hint.is_empty()).then(|| format!("{}-hint", f.claim.as_str())),
                        error
                            .as_ref()
                            .map(|_| format!("{}-error", f.claim.as_str())),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                    FieldView {
                        name: f.claim.as_str(),
                        label: f.label,
                        autocomplete: f.autocomplete,
                        kind: f.kind,
                        multiline: f.claim.is_multiline(),
                        max_chars: f.claim.max_chars(),
                        value: value.to_owned(),
                        hint,
                        error,
                        described_by,
                    }
                })
                .collect(),
        })
        .collect();
    let errors = refused
        .iter()
        .map(|e| {
            let label = GROUPS
                .iter()
                .flat_map(|(_, fields)| fields.iter())
                .find(|f| f.claim == e.claim)
                .map_or(e.claim.as_str(), |f| f.label);
            ErrorView {
                field: e.claim.as_str(),
                message: message(e, label),
            }
        })
        .collect();
    let c = &account.claims;
    let contact = |value: &Option<String>, verified: Option<bool>| {
        value.as_ref().map(|v| ContactView {
            value: v.clone(),
            verified: verified == Some(true),
        })
    };
    session::form_page(app, headers, status, "", |csrf_token| {
        ProfilePage {
            username: &account.username,
            csrf_token,
            version: profile::version(&account.claims),
            problem,
            errors,
            groups,
            email: contact(&c.email, c.email_verified),
            phone: contact(&c.phone_number, c.phone_number_verified),
        }
        .render()
    })
}

fn store_failed(e: StoreError) -> Response {
    super::account::store_failed_saying(e, "Your profile was not changed. Please try again later.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_shows_exactly_the_claims_a_person_may_set() {
        let shown: Vec<Claim> = GROUPS
            .iter()
            .flat_map(|(_, fields)| fields.iter().map(|f| f.claim))
            .collect();
        for claim in Claim::ALL {
            let times = usize::from(claim.is_self_editable());
            assert_eq!(
                shown.iter().filter(|c| *c == claim).count(),
                times,
                "{claim:?}"
            );
        }
    }

    #[test]
    fn the_form_is_read_strictly() {
        let form =
            parse(b"csrf_token=t&version=v&name=Ada&street_address=1+Main%0D%0AFlat+2").unwrap();
        assert_eq!(form.csrf_token.as_deref(), Some("t"));
        assert_eq!(form.version.as_deref(), Some("v"));
        let edit = form.edit;
        assert_eq!(edit.get(Claim::Name), Some("Ada"));
        assert_eq!(edit.get(Claim::StreetAddress), Some("1 Main\nFlat 2"));
        assert_eq!(
            edit.get(Claim::Nickname),
            None,
            "a field not sent is left alone"
        );
        for refused in [
            &b"csrf_token=t&email=eve%40example.com"[..],
            b"csrf_token=t&email_verified=true",
            b"csrf_token=t&phone_number=1",
            b"csrf_token=t&name=A&name=B",
            b"csrf_token=t&csrf_token=u",
            b"version=v&version=w",
            b"csrf_token=t&extra=1",
        ] {
            assert!(
                parse(refused).is_none(),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
        let long = format!("name={}", "x".repeat(MAX_VALUE_LEN + 1));
        assert!(parse(long.as_bytes()).is_none());
    }
}
