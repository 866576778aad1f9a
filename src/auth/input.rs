//! Request bodies of the auth endpoints, validated into domain values.
//! Every refusal names its field.

use crate::api::{ApiError, JsonFields};
use crate::store::{Purpose, Registration};

use super::session::LogoutScope;
use crate::mobile;

/// How a submitted mobile is read: `otp.default_country_code` and
/// `otp.allowed_country_codes`.
#[derive(Debug, Clone, Default)]
pub struct MobileRules {
    pub default_country_code: Option<String>,
    /// Empty allows every number.
    pub allowed_country_codes: Vec<u16>,
}

pub struct Inputs<'a> {
    pub mobiles: &'a MobileRules,
}

impl Inputs<'_> {
    /// The normalized mobile; one outside the allowed countries is refused
    /// here, before any counter or SMS.
    pub fn mobile(&self, fields: &JsonFields) -> Result<String, ApiError> {
        let rules = self.mobiles;
        let mobile = mobile::normalize(
            fields.required("mobile")?,
            rules.default_country_code.as_deref(),
        )?;
        if !rules.allowed_country_codes.is_empty()
            && !mobile::calling_code(&mobile)
                .is_some_and(|code| rules.allowed_country_codes.contains(&code))
        {
            return Err(ApiError::CountryNotAllowed);
        }
        Ok(mobile)
    }

    pub fn registration(&self, fields: &JsonFields) -> Result<Registration, ApiError> {
        Ok(Registration {
            mobile: self.mobile(fields)?,
            first_name: name(fields, "first_name")?,
            last_name: name(fields, "last_name")?,
            email: email(fields.required("email")?)?,
        })
    }
}

/// A submitted OTP: required and non-empty (an empty one never matches).
pub fn otp(fields: &JsonFields) -> Result<String, ApiError> {
    let otp = fields.required("otp")?.trim();
    if otp.is_empty() {
        return Err(ApiError::invalid("otp", "must not be empty"));
    }
    if otp.len() > 32 {
        return Err(ApiError::invalid("otp", "is too long"));
    }
    Ok(otp.to_owned())
}

/// The login OTP if one was given: empty or absent means "send me one".
pub fn login_otp(fields: &JsonFields) -> Result<Option<String>, ApiError> {
    match fields.optional("otp")?.map(str::trim) {
        None | Some("") => Ok(None),
        Some(_) => otp(fields).map(Some),
    }
}

/// A refresh token as issued: 64 hex digits. Anything else cannot be one.
pub fn refresh_token(fields: &JsonFields) -> Result<String, ApiError> {
    let token = fields.required("refresh_token")?.trim();
    if token.is_empty() {
        return Err(ApiError::invalid("refresh_token", "must not be empty"));
    }
    if token.len() > 256 {
        return Err(ApiError::invalid("refresh_token", "is too long"));
    }
    Ok(token.to_owned())
}

/// `scope` of a logout: `local` (the default), `global` or `others`.
pub fn logout_scope(fields: &JsonFields) -> Result<LogoutScope, ApiError> {
    match fields.optional("scope")? {
        None | Some("local") => Ok(LogoutScope::Local),
        Some("global") => Ok(LogoutScope::Global),
        Some("others") => Ok(LogoutScope::Others),
        Some(_) => Err(ApiError::invalid(
            "scope",
            "must be \"local\", \"global\" or \"others\"",
        )),
    }
}

pub fn purpose(fields: &JsonFields) -> Result<Purpose, ApiError> {
    match fields.required("purpose")? {
        "register" => Ok(Purpose::Register),
        "login" => Ok(Purpose::Login),
        _ => Err(ApiError::invalid(
            "purpose",
            "must be \"register\" or \"login\"",
        )),
    }
}

fn name(fields: &JsonFields, field: &str) -> Result<String, ApiError> {
    let value = fields.required(field)?.trim();
    if value.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > 100 {
        return Err(ApiError::invalid(field, "must be at most 100 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// A practical email check (one `@`, a dotted domain, no spaces), lower-cased
/// so that uniqueness does not depend on letter case.
fn email(value: &str) -> Result<String, ApiError> {
    let value = value.trim().to_lowercase();
    let bad = || ApiError::invalid("email", "must be a valid email address");
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = value.split_once('@').ok_or_else(bad)?;
    let domain_ok = domain.contains('.')
        && !domain.contains('@')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(bad());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        assert!(email("a.b+tag@mail.example.co").is_ok());
        for bad in [
            "", "a", "a@", "@b.co", "a@b", "a@@b.co", "a b@c.co", "a@b..co", "a@-b.co",
        ] {
            assert!(email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_and_otps() {
        let f = JsonFields::parse(
            br#"{"first_name": "  Ann ", "last_name": "", "otp": "", "long": "x"}"#,
        )
        .unwrap();
        assert_eq!(name(&f, "first_name").unwrap(), "Ann");
        assert_eq!(
            name(&f, "last_name").unwrap_err(),
            ApiError::invalid("last_name", "must not be empty")
        );
        assert_eq!(
            otp(&f).unwrap_err(),
            ApiError::invalid("otp", "must not be empty")
        );
        assert_eq!(login_otp(&f).unwrap(), None);
        let long =
            JsonFields::parse(format!(r#"{{"first_name": "{}"}}"#, "é".repeat(101)).as_bytes())
                .unwrap();
        assert!(name(&long, "first_name").is_err());
        let ok =
            JsonFields::parse(format!(r#"{{"first_name": "{}"}}"#, "é".repeat(100)).as_bytes())
                .unwrap();
        assert!(name(&ok, "first_name").is_ok());
    }
}
