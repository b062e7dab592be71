//! Setting a person's standard claims (OIDC Core §5.1, §5.1.1): one way to change them and
//! one set of rules they must keep, shared by the operator's CLI (`tessera user create` and
//! `update`) and the person's own profile page (`/account/profile`), so that what one
//! accepts the other accepts too.

use crate::store::{Address, StandardClaims};

/// A standard claim held as a string, by its Core §5.1 name; the address parts by their
/// §5.1.1 member names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Name,
    GivenName,
    FamilyName,
    MiddleName,
    Nickname,
    PreferredUsername,
    Profile,
    Picture,
    Website,
    Email,
    Gender,
    Birthdate,
    Zoneinfo,
    Locale,
    PhoneNumber,
    Formatted,
    StreetAddress,
    Locality,
    Region,
    PostalCode,
    Country,
}

impl Claim {
    pub const ALL: &'static [Claim] = &[
        Claim::Name,
        Claim::GivenName,
        Claim::FamilyName,
        Claim::MiddleName,
        Claim::Nickname,
        Claim::PreferredUsername,
        Claim::Profile,
        Claim::Picture,
        Claim::Website,
        Claim::Email,
        Claim::Gender,
        Claim::Birthdate,
        Claim::Zoneinfo,
        Claim::Locale,
        Claim::PhoneNumber,
        Claim::Formatted,
        Claim::StreetAddress,
        Claim::Locality,
        Claim::Region,
        Claim::PostalCode,
        Claim::Country,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Claim::Name => "name",
            Claim::GivenName => "given_name",
            Claim::FamilyName => "family_name",
            Claim::MiddleName => "middle_name",
            Claim::Nickname => "nickname",
            Claim::PreferredUsername => "preferred_username",
            Claim::Profile => "profile",
            Claim::Picture => "picture",
            Claim::Website => "website",
            Claim::Email => "email",
            Claim::Gender => "gender",
            Claim::Birthdate => "birthdate",
            Claim::Zoneinfo => "zoneinfo",
            Claim::Locale => "locale",
            Claim::PhoneNumber => "phone_number",
            Claim::Formatted => "formatted",
            Claim::StreetAddress => "street_address",
            Claim::Locality => "locality",
            Claim::Region => "region",
            Claim::PostalCode => "postal_code",
            Claim::Country => "country",
        }
    }

    /// Whether a person may set it on themselves: everything but the e-mail address and the
    /// phone number, whose `_verified` flags are the operator's word that they belong to the
    /// person.
    pub fn is_self_editable(self) -> bool {
        !matches!(self, Claim::Email | Claim::PhoneNumber)
    }

    /// Core §5.1.1: the whole address and the street part "MAY contain multiple lines,
    /// separated by newlines"; every other claim is one line.
    pub fn is_multiline(self) -> bool {
        matches!(self, Claim::Formatted | Claim::StreetAddress)
    }

    /// The longest value kept, in characters: enough for any real name, URL or address, and
    /// a bound on what every ID token and userinfo answer carries.
    pub fn max_chars(self) -> usize {
        match self {
            Claim::Profile | Claim::Picture | Claim::Website => 2048,
            Claim::Formatted | Claim::StreetAddress => 512,
            Claim::Zoneinfo | Claim::Locale | Claim::Birthdate => 64,
            _ => 256,
        }
    }

    /// The claim's value in `claims`, if it has one.
    pub fn value(self, claims: &StandardClaims) -> Option<&str> {
        let address = claims.address.as_ref();
        let part = |f: fn(&Address) -> &Option<String>| address.and_then(|a| f(a).as_deref());
        match self {
            Claim::Name => claims.name.as_deref(),
            Claim::GivenName => claims.given_name.as_deref(),
            Claim::FamilyName => claims.family_name.as_deref(),
            Claim::MiddleName => claims.middle_name.as_deref(),
            Claim::Nickname => claims.nickname.as_deref(),
            Claim::PreferredUsername => claims.preferred_username.as_deref(),
            Claim::Profile => claims.profile.as_deref(),
            Claim::Picture => claims.picture.as_deref(),
            Claim::Website => claims.website.as_deref(),
            Claim::Email => claims.email.as_deref(),
            Claim::Gender => claims.gender.as_deref(),
            Claim::Birthdate => claims.birthdate.as_deref(),
            Claim::Zoneinfo => claims.zoneinfo.as_deref(),
            Claim::Locale => claims.locale.as_deref(),
            Claim::PhoneNumber => claims.phone_number.as_deref(),
            Claim::Formatted => part(|a| &a.formatted),
            Claim::StreetAddress => part(|a| &a.street_address),
            Claim::Locality => part(|a| &a.locality),
            Claim::Region => part(|a| &a.region),
            Claim::PostalCode => part(|a| &a.postal_code),
            Claim::Country => part(|a| &a.country),
        }
    }

    fn slot(self, claims: &mut StandardClaims) -> &mut Option<String> {
        match self {
            Claim::Name => &mut claims.name,
            Claim::GivenName => &mut claims.given_name,
            Claim::FamilyName => &mut claims.family_name,
            Claim::MiddleName => &mut claims.middle_name,
            Claim::Nickname => &mut claims.nickname,
            Claim::PreferredUsername => &mut claims.preferred_username,
            Claim::Profile => &mut claims.profile,
            Claim::Picture => &mut claims.picture,
            Claim::Website => &mut claims.website,
            Claim::Email => &mut claims.email,
            Claim::Gender => &mut claims.gender,
            Claim::Birthdate => &mut claims.birthdate,
            Claim::Zoneinfo => &mut claims.zoneinfo,
            Claim::Locale => &mut claims.locale,
            Claim::PhoneNumber => &mut claims.phone_number,
            Claim::Formatted => &mut address(claims).formatted,
            Claim::StreetAddress => &mut address(claims).street_address,
            Claim::Locality => &mut address(claims).locality,
            Claim::Region => &mut address(claims).region,
            Claim::PostalCode => &mut address(claims).postal_code,
            Claim::Country => &mut address(claims).country,
        }
    }
}

fn address(claims: &mut StandardClaims) -> &mut Address {
    claims.address.get_or_insert_with(Address::default)
}

/// Claims to set: each to its value, or removed when the value is empty. Surrounding white
/// space is dropped, so a field of spaces removes its claim too.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimEdit {
    changes: Vec<(Claim, String)>,
}

impl ClaimEdit {
    /// Sets `claim` to `value` (`None`: leave it as it is). The last value for a claim wins.
    pub fn set(&mut self, claim: Claim, value: Option<String>) {
        if let Some(value) = value {
            self.changes.retain(|(c, _)| *c != claim);
            self.changes.push((claim, value.trim().to_owned()));
        }
    }

    /// The value this edit gives `claim`, if it names it (empty: removed).
    pub fn get(&self, claim: Claim) -> Option<&str> {
        self.changes
            .iter()
            .find(|(c, _)| *c == claim)
            .map(|(_, v)| v.as_str())
    }

    /// `claims` with this edit made. An address with no part left is no address (Core
    /// §5.1.1 has no empty one), and a verification flag goes with the value it vouched for.
    pub fn applied_to(&self, claims: &StandardClaims) -> StandardClaims {
        let mut out = claims.clone();
        for (claim, value) in &self.changes {
            *claim.slot(&mut out) = (!value.is_empty()).then(|| value.clone());
        }
        out.address = out.address.filter(|a| *a != Address::default());
        if out.email.is_none() {
            out.email_verified = None;
        }
        if out.phone_number.is_none() {
            out.phone_number_verified = None;
        }
        out
    }
}

/// The claims whose value differs between `before` and `after`, by name: what an audit event
/// says changed (never to what).
pub fn changed(before: &StandardClaims, after: &StandardClaims) -> Vec<Claim> {
    Claim::ALL
        .iter()
        .copied()
        .filter(|c| c.value(before) != c.value(after))
        .collect()
}

/// A fingerprint of `claims`, for a form to carry the claims it was filled from: a save from
/// a form filled before the claims changed elsewhere is asked again, not let overwrite them.
pub fn version(claims: &StandardClaims) -> String {
    use base64::Engine;
    // Serialising these plain fields cannot fail; were it to, every form would just be stale.
    let json = serde_json::to_string(claims).unwrap_or_default();
    let digest = crate::crypto::token::Digest::of(&json);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_bytes()[..16])
}

/// Why a claim's value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    TooLong(usize),
    ControlCharacter,
    NotEmail,
    NotHttpUrl,
    NotBirthdate,
    NotTimeZone,
    NotLanguageTag,
    /// Marked verified without a value to verify.
    VerifiedWithoutValue,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::TooLong(max) => write!(f, "is longer than {max} characters"),
            Problem::ControlCharacter => f.write_str("contains a control character"),
            Problem::NotEmail => f.write_str("is not an e-mail address"),
            Problem::NotHttpUrl => {
                f.write_str("is not an http(s) URL (such as https://example.com/)")
            }
            Problem::NotBirthdate => {
                f.write_str("must be YYYY-MM-DD, YYYY, or 0000-MM-DD (OIDC Core §5.1)")
            }
            Problem::NotTimeZone => {
                f.write_str("is not a time zone name (such as Europe/Paris or America/New_York)")
            }
            Problem::NotLanguageTag => f.write_str("is not a language tag (such as en-GB or fr)"),
            Problem::VerifiedWithoutValue => f.write_str("cannot be verified without a value"),
        }
    }
}

/// A claim whose value is refused, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimError {
    pub claim: Claim,
    pub problem: Problem,
}

/// Every claim that `after` changes from `before` and breaks a rule, in [`Claim::ALL`]
/// order. Unchanged values are not judged again, so that a value kept from before a rule
/// existed does not stop its owner from changing another claim.
pub fn check(before: &StandardClaims, after: &StandardClaims) -> Vec<ClaimError> {
    let mut errors: Vec<ClaimError> = changed(before, after)
        .into_iter()
        .filter_map(|claim| {
            let value = claim.value(after)?;
            check_value(claim, value)
                .err()
                .map(|problem| ClaimError { claim, problem })
        })
        .collect();
    let unvouched = [
        (
            Claim::Email,
            after.email.is_none() && after.email_verified == Some(true),
        ),
        (
            Claim::PhoneNumber,
            after.phone_number.is_none() && after.phone_number_verified == Some(true),
        ),
    ];
    for (claim, refused) in unvouched {
        if refused {
            errors.push(ClaimError {
                claim,
                problem: Problem::VerifiedWithoutValue,
            });
        }
    }
    errors
}

fn check_value(claim: Claim, value: &str) -> Result<(), Problem> {
    if value.chars().count() > claim.max_chars() {
        return Err(Problem::TooLong(claim.max_chars()));
    }
    // Postgres refuses NUL in text, and no claim is displayed well with a control character;
    // the multi-line address parts keep their newlines.
    let control = |c: char| c.is_control() && !(claim.is_multiline() && c == '\n');
    if value.chars().any(control) {
        return Err(Problem::ControlCharacter);
    }
    let ok = match claim {
        Claim::Email => email_ok(value),
        // Core §5.1: URLs a relying party will link to or load; nothing but http(s).
        Claim::Profile | Claim::Picture | Claim::Website => url::Url::parse(value)
            .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some()),
        Claim::Birthdate => birthdate_ok(value),
        Claim::Zoneinfo => zoneinfo_ok(value),
        Claim::Locale => locale_ok(value),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    Err(match claim {
        Claim::Email => Problem::NotEmail,
        Claim::Birthdate => Problem::NotBirthdate,
        Claim::Zoneinfo => Problem::NotTimeZone,
        Claim::Locale => Problem::NotLanguageTag,
        _ => Problem::NotHttpUrl,
    })
}

fn email_ok(email: &str) -> bool {
    email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace)
}

/// Core §5.1 `birthdate`: ISO 8601 YYYY-MM-DD, a year alone, or 0000 for an undisclosed
/// year. The day must exist in that month (29 February in any undisclosed year).
pub fn birthdate_ok(value: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_digit());
    match value.split('-').collect::<Vec<_>>()[..] {
        [y] => digits(y, 4),
        [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2) => {
            let year = match y.parse::<i32>() {
                Ok(0) => 2000, // a leap year stands in for the undisclosed one
                Ok(year) => year,
                Err(_) => return false,
            };
            let month = m
                .parse::<u8>()
                .ok()
                .and_then(|m| time::Month::try_from(m).ok());
            let day = d.parse::<u8>().unwrap_or(0);
            month.is_some_and(|month| time::Date::from_calendar_date(year, month, day).is_ok())
        }
        _ => false,
    }
}

/// Core §5.1 `zoneinfo`: a name from the IANA time zone database. Tessera carries no copy of
/// it, so this checks the shape of one (`Europe/Paris`, `America/Argentina/Buenos_Aires`,
/// `Etc/GMT+2`, `UTC`).
fn zoneinfo_ok(value: &str) -> bool {
    value.split('/').all(|part| {
        part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
    })
}

/// Core §5.1 `locale`: a BCP 47 language tag (RFC 5646), whose subtags are 1–8 letters or
/// digits, the first 2–8 letters; `_` is accepted in place of `-`, as §5.1 allows.
fn locale_ok(value: &str) -> bool {
    let mut subtags = value.split(['-', '_']);
    let language = subtags.next().unwrap_or("");
    (2..=8).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_alphabetic())
        && subtags
            .all(|s| (1..=8).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(pairs: &[(Claim, &str)]) -> ClaimEdit {
        let mut e = ClaimEdit::default();
        for (claim, value) in pairs {
            e.set(*claim, Some((*value).to_owned()));
        }
        e
    }

    #[test]
    fn birthdates_as_oidc_5_1_allows() {
        for ok in [
            "1815-12-10",
            "1815",
            "0000-12-10",
            "0000-02-29",
            "2000-02-29",
        ] {
            assert!(birthdate_ok(ok), "{ok}");
        }
        for bad in [
            "10/12/1815",
            "1815-13-10",
            "1815-02-30",
            "1815-02-29",
            "1815-12",
            "18151210",
            "1815-12-1x",
            "",
        ] {
            assert!(!birthdate_ok(bad), "{bad}");
        }
    }

    #[test]
    fn time_zones_and_locales_have_their_shape_oidc_5_1() {
        for ok in [
            "Europe/Paris",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+2",
            "UTC",
        ] {
            assert!(zoneinfo_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "Europe/",
            "/Paris",
            "Europe Paris",
            "+02:00",
            "Europe/../x",
        ] {
            assert!(!zoneinfo_ok(bad), "{bad}");
        }
        for ok in ["en", "en-GB", "en_US", "zh-Hant-TW", "de-CH-1996"] {
            assert!(locale_ok(ok), "{ok}");
        }
        for bad in ["", "e", "englishlanguage-GB", "en-", "en GB", "12-GB"] {
            assert!(!locale_ok(bad), "{bad}");
        }
    }

    #[test]
    fn an_edit_sets_trims_and_removes_and_an_empty_address_is_none_oidc_5_1_1() {
        let before = StandardClaims {
            name: Some("Ada".into()),
            email: Some("ada@example.com".into()),
            email_verified: Some(true),
            ..Default::default()
        };
        let after = edit(&[
            (Claim::Name, ""),
            (Claim::Nickname, "  Countess "),
            (Claim::Locality, "London"),
        ])
        .applied_to(&before);
        assert_eq!(after.name, None);
        assert_eq!(after.nickname.as_deref(), Some("Countess"));
        assert_eq!(after.email_verified, Some(true), "untouched claims stay");
        let address = after.address.clone().unwrap_or_default();
        assert_eq!(address.locality.as_deref(), Some("London"));
        assert_eq!(
            changed(&before, &after),
            [Claim::Name, Claim::Nickname, Claim::Locality]
        );
        let cleared = edit(&[(Claim::Locality, " "), (Claim::Email, "")]).applied_to(&after);
        assert_eq!(cleared.address, None);
        assert_eq!(cleared.email_verified, None, "the flag goes with the value");
        assert!(changed(&after, &edit(&[(Claim::Name, "")]).applied_to(&after)).is_empty());
    }

    #[test]
    fn only_changed_claims_are_judged_and_each_problem_is_named() {
        let legacy = StandardClaims {
            website: Some("not a url".into()),
            ..Default::default()
        };
        let ok = edit(&[(Claim::Name, "Ada")]).applied_to(&legacy);
        assert!(check(&legacy, &ok).is_empty());
        let bad = edit(&[
            (Claim::Website, "javascript:alert(1)"),
            (Claim::Birthdate, "10/12/1815"),
            (Claim::Nickname, &"x".repeat(257)),
            (Claim::GivenName, "A\u{0}da"),
            (Claim::StreetAddress, "12 St James's Square\nSt James's"),
        ])
        .applied_to(&legacy);
        let found: Vec<(Claim, Problem)> = check(&legacy, &bad)
            .iter()
            .map(|e| (e.claim, e.problem))
            .collect();
        assert_eq!(
            found,
            [
                (Claim::GivenName, Problem::ControlCharacter),
                (Claim::Nickname, Problem::TooLong(256)),
                (Claim::Website, Problem::NotHttpUrl),
                (Claim::Birthdate, Problem::NotBirthdate),
            ]
        );
        let unvouched = StandardClaims {
            phone_number_verified: Some(true),
            ..Default::default()
        };
        assert_eq!(
            check(&StandardClaims::default(), &unvouched)[0].problem,
            Problem::VerifiedWithoutValue
        );
    }
}
