//! Logging in to OpenStack Swift, the four ways OpenStack clients do: a
//! pre-authenticated storage URL and token (`OS_STORAGE_URL` + `OS_AUTH_TOKEN`,
//! what Trove hands its backup jobs), Keystone v3 application credentials,
//! Keystone v3 password (the object-store endpoint then comes from the token's
//! catalog, by region and interface), and TempAuth / v1 (`ST_AUTH`, `ST_USER`,
//! `ST_KEY`). Tokens know when they expire so they can be renewed in time,
//! except a pre-authenticated one, which cannot be. Passwords and tokens stay
//! in `Secret`s and never reach a message or a log line.
//!
//! The endpoints are not trusted further than their answers: a redirect is
//! an error, never followed (ureq would carry our headers along); an account
//! URL from a catalog or TempAuth must be a plain http(s) URL without user
//! info, query or fragment, and never plain http after an https log-in.
//! Plain http at all needs `swift_allow_http`.

use crate::error::{Error, Result};
use crate::secret::Secret;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroize;

/// How to get a token, from the settings (lower-case OpenStack names).
#[derive(Debug)]
pub enum Credentials {
    PreAuthenticated {
        storage_url: String,
        token: Secret,
    },
    Keystone {
        auth_url: String,
        identity: KeystoneIdentity,
        region: Option<String>,
        interface: String,
    },
    TempAuth {
        auth_url: String,
        user: String,
        key: Secret,
    },
}

#[derive(Debug)]
pub enum KeystoneIdentity {
    Password {
        user: String,
        user_domain: String,
        password: Secret,
        project: String,
        project_domain: String,
    },
    ApplicationCredential {
        id: String,
        secret: Secret,
    },
}

/// A token and the account URL it is good for.
#[derive(Debug, Clone)]
pub struct Session {
    pub storage_url: String,
    pub token: Secret,
    /// When the token stops working, if the auth service said.
    pub expires: Option<SystemTime>,
}

impl Credentials {
    pub fn from_settings(
        openstack: &BTreeMap<String, Secret>,
        allow_http: bool,
    ) -> Result<Credentials> {
        let get = |key: &str| openstack.get(key).filter(|v| !v.expose().is_empty());
        let endpoint = |key: &str| -> Result<()> {
            let Some(url) = get(key) else { return Ok(()) };
            let name = key.to_ascii_uppercase();
            let scheme = check_endpoint(url.expose())
                .map_err(|why| Error::usage(format!("{name} {why}")))?;
            match (scheme, allow_http) {
                (Scheme::Http, false) => Err(Error::usage(format!(
                    "{name} is plain http: tokens and passwords would cross the network in clear; use https, or set swift_allow_http = yes for a test cloud"
                ))),
                (Scheme::Http, true) => {
                    // Once a run: the settings are checked before the work
                    // and read again to open the storage.
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| log::warn!("{name} is plain http (swift_allow_http): credentials cross the network in clear"));
                    Ok(())
                }
                (Scheme::Https, _) => Ok(()),
            }
        };
        for key in ["os_storage_url", "os_auth_url", "st_auth"] {
            endpoint(key)?;
        }
        if let (Some(url), Some(token)) = (get("os_storage_url"), get("os_auth_token")) {
            return Ok(Credentials::PreAuthenticated {
                storage_url: url.expose().trim_end_matches('/').to_string(),
                token: token.clone(),
            });
        }
        if let Some(auth_url) = get("os_auth_url") {
            let text = |key: &str| get(key).map(|v| v.expose().to_string());
            let identity = match (get("os_application_credential_id"), get("os_application_credential_secret")) {
                (Some(id), Some(secret)) => KeystoneIdentity::ApplicationCredential {
                    id: id.expose().to_string(),
                    secret: secret.clone(),
                },
                _ => match (text("os_username"), get("os_password"), text("os_project_name")) {
                    (Some(user), Some(password), Some(project)) => KeystoneIdentity::Password {
                        user,
                        user_domain: text("os_user_domain_name").unwrap_or_else(|| "Default".into()),
                        password: password.clone(),
                        project,
                        project_domain: text("os_project_domain_name").unwrap_or_else(|| "Default".into()),
                    },
                    _ => return Err(Error::usage(
                        "OS_AUTH_URL is set but neither OS_APPLICATION_CREDENTIAL_ID + OS_APPLICATION_CREDENTIAL_SECRET nor OS_USERNAME + OS_PASSWORD + OS_PROJECT_NAME are",
                    )),
                },
            };
            return Ok(Credentials::Keystone {
                auth_url: v3_url(auth_url.expose()),
                identity,
                region: text("os_region_name"),
                interface: text("os_interface").unwrap_or_else(|| "public".into()),
            });
        }
        if let Some(auth_url) = get("st_auth") {
            let (Some(user), Some(key)) = (get("st_user"), get("st_key")) else {
                return Err(Error::usage(
                    "ST_AUTH is set but ST_USER or ST_KEY is missing; set all three (environment or settings file)",
                ));
            };
            return Ok(Credentials::TempAuth {
                auth_url: auth_url.expose().to_string(),
                user: user.expose().to_string(),
                key: key.clone(),
            });
        }
        Err(Error::usage(
            "swift storage needs credentials: OS_STORAGE_URL + OS_AUTH_TOKEN, OS_AUTH_URL with a user or an application credential, or ST_AUTH + ST_USER + ST_KEY (environment or settings file)",
        ))
    }

    /// The account URL a log-in handed back, accepted only as a plain
    /// http(s) URL, and only as https if the log-in was over https (or if
    /// plain http is allowed at all).
    pub fn check_storage_url(&self, url: &str, allow_http: bool) -> Result<()> {
        let auth_url = match self {
            Credentials::PreAuthenticated { .. } => return Ok(()),
            Credentials::Keystone { auth_url, .. } | Credentials::TempAuth { auth_url, .. } => {
                auth_url
            }
        };
        let scheme = check_endpoint(url).map_err(|why| {
            Error::storage_refused(format!("the account URL from {auth_url} {why}"))
        })?;
        let auth_scheme = check_endpoint(auth_url).ok();
        match (scheme, auth_scheme, allow_http) {
            (Scheme::Http, Some(Scheme::Https), _) => Err(Error::storage_refused(format!(
                "{auth_url} is https but names a plain http account URL ({}): the token would cross the network in clear; fix the catalog or the proxy's storage URL",
                without_path(url)
            ))),
            (Scheme::Http, _, false) => Err(Error::storage_refused(format!(
                "{auth_url} names a plain http account URL ({}); set swift_allow_http = yes for a test cloud",
                without_path(url)
            ))),
            _ => Ok(()),
        }
    }

    /// Whether a new token can be had when the current one expires.
    pub fn renewable(&self) -> bool {
        !matches!(self, Credentials::PreAuthenticated { .. })
    }

    /// A new session; the log-in request, answer included, takes at most
    /// `deadline`.
    pub fn log_in(&self, agent: &ureq::Agent, deadline: Duration) -> Result<Session> {
        match self {
            Credentials::PreAuthenticated { storage_url, token } => Ok(Session {
                storage_url: storage_url.clone(),
                token: token.clone(),
                expires: None,
            }),
            Credentials::Keystone {
                auth_url,
                identity,
                region,
                interface,
            } => keystone(
                agent,
                deadline,
                auth_url,
                identity,
                region.as_deref(),
                interface,
            ),
            Credentials::TempAuth {
                auth_url,
                user,
                key,
            } => temp_auth(agent, deadline, auth_url, user, key),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// An endpoint we send credentials to: `http://` or `https://`, a host, and
/// no user info, query or fragment (which would change what a path appended
/// to it means). Says what is wrong in words otherwise.
fn check_endpoint(url: &str) -> std::result::Result<Scheme, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err("is not an http:// or https:// URL".into());
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err("names no host".into());
    }
    if authority.contains('@') {
        return Err("carries user info (user@host); put credentials in their settings".into());
    }
    if url.contains(['?', '#']) {
        return Err(
            "has a query or fragment (? or #), which would change every request made under it"
                .into(),
        );
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err("contains spaces, backslashes or control characters".into());
    }
    Ok(scheme)
}

/// `scheme://host[:port]` of a URL, for messages.
fn without_path(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find('/') {
        Some(end) => &url[..start + end],
        None => url,
    }
}

/// A 2xx answer, or an error: a 3xx from an auth service is refused (not
/// followed, and not retried), naming where it pointed.
fn answered(response: ureq::Response, what: &str) -> Result<ureq::Response> {
    match response.status() {
        200..=299 => Ok(response),
        code => Err(Error::storage_refused(format!(
            "{what} answered {code}{}; redirects are not followed, so that credentials go only where they were meant to; set the final URL",
            response
                .header("Location")
                .map(|to| format!(" pointing to {}", without_path(to)))
                .unwrap_or_default()
        ))),
    }
}

fn temp_auth(
    agent: &ureq::Agent,
    deadline: Duration,
    auth_url: &str,
    user: &str,
    key: &Secret,
) -> Result<Session> {
    let response = agent
        .get(auth_url)
        .timeout(deadline)
        .set("X-Auth-User", user)
        .set("X-Auth-Key", key.expose())
        .call();
    let response = match response {
        Ok(response) => answered(response, &format!("Swift auth at {auth_url}"))?,
        Err(ureq::Error::Status(401 | 403, _)) => {
            return Err(Error::storage_refused(format!(
                "Swift auth at {auth_url} rejected user {user}; check ST_USER and ST_KEY"
            )))
        }
        Err(ureq::Error::Status(code, _)) => {
            return Err(Error::storage(format!(
                "Swift auth at {auth_url} answered {code}"
            )))
        }
        Err(ureq::Error::Transport(t)) => {
            return Err(transport_error(
                format!("cannot reach Swift auth at {auth_url}"),
                &t,
            ))
        }
    };
    let storage_url = response.header("X-Storage-Url").map(str::to_string);
    let token = response.header("X-Auth-Token").map(Secret::new);
    // Seconds the token has left, as TempAuth reports it.
    let expires = response
        .header("X-Auth-Token-Expires")
        // Whole seconds ("86399" or "86399.5"): no float parsing needed.
        .and_then(|s| s.trim().split('.').next()?.parse::<u64>().ok())
        .map(Duration::from_secs)
        .and_then(|left| SystemTime::now().checked_add(left));
    match (storage_url, token) {
        (Some(storage_url), Some(token)) => Ok(Session {
            storage_url: storage_url.trim_end_matches('/').to_string(),
            token,
            expires,
        }),
        _ => Err(Error::storage(format!(
            "Swift auth at {auth_url} answered without X-Storage-Url and X-Auth-Token"
        ))),
    }
}

/// `…/v3` whether or not the setting named the version.
fn v3_url(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    match base.ends_with("/v3") {
        true => base.to_string(),
        false => format!("{base}/v3"),
    }
}

/// Keystone's largest answers are tokens with a big catalog; far below this.
const MAX_TOKEN_BODY: u64 = 4 << 20;

fn keystone(
    agent: &ureq::Agent,
    deadline: Duration,
    auth_url: &str,
    identity: &KeystoneIdentity,
    region: Option<&str>,
    interface: &str,
) -> Result<Session> {
    let (body, who) = match identity {
        KeystoneIdentity::Password {
            user,
            user_domain,
            password,
            project,
            project_domain,
        } => (
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": user, "domain": {"name": user_domain}, "password": password.expose()}}},
                "scope": {"project": {"name": project, "domain": {"name": project_domain}}}}}),
            format!("user {user}"),
        ),
        KeystoneIdentity::ApplicationCredential { id, secret } => (
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": id, "secret": secret.expose()}}}}),
            format!("application credential {id}"),
        ),
    };
    let url = format!("{auth_url}/auth/tokens");
    let mut body = serde_json::to_vec(&body)
        .map_err(|e| Error::other(format!("encoding the token request: {e}")))?;
    let sent = agent
        .post(&url)
        .timeout(deadline)
        .set("Content-Type", "application/json")
        .send_bytes(&body);
    body.zeroize(); // it holds the password or secret
    let response = match sent {
        Ok(response) => answered(response, &format!("Keystone at {auth_url}"))?,
        Err(ureq::Error::Status(401 | 403, _)) => {
            return Err(Error::storage_refused(format!(
                "Keystone at {auth_url} rejected {who}; check the OpenStack credentials"
            )))
        }
        Err(ureq::Error::Status(code, _)) => {
            return Err(Error::storage(format!(
                "Keystone at {auth_url} answered {code}"
            )))
        }
        Err(ureq::Error::Transport(t)) => {
            return Err(transport_error(
                format!("cannot reach Keystone at {auth_url}"),
                &t,
            ))
        }
    };
    let token = response
        .header("X-Subject-Token")
        .map(Secret::new)
        .ok_or_else(|| {
            Error::storage(format!("Keystone at {auth_url} issued no X-Subject-Token"))
        })?;
    let mut text = Vec::new();
    response
        .into_reader()
        .take(MAX_TOKEN_BODY + 1)
        .read_to_end(&mut text)
        .map_err(|e| Error::storage(format!("reading Keystone's token: {e}")))?;
    // Final: logging in again (sending the password again) gets the same.
    if text.len() as u64 > MAX_TOKEN_BODY {
        text.zeroize();
        return Err(Error::storage_refused(format!(
            "Keystone at {auth_url} sent a token larger than {} MiB (its catalog); that is not a token this tool can use",
            MAX_TOKEN_BODY >> 20
        )));
    }
    session_from_token(&text, token, auth_url, region, interface)
}

/// The session a Keystone token body describes: Swift's URL from the
/// catalog, and when the token expires.
fn session_from_token(
    text: &[u8],
    token: Secret,
    auth_url: &str,
    region: Option<&str>,
    interface: &str,
) -> Result<Session> {
    let body: Value = serde_json::from_slice(text).map_err(|_| {
        Error::storage(format!(
            "Keystone at {auth_url} sent a token that is not JSON"
        ))
    })?;
    let storage_url = object_store_url(&body["token"]["catalog"], region, interface).ok_or_else(|| {
        Error::storage_refused(format!(
            "Keystone's catalog has no object-store endpoint for region {} and interface {interface}; check OS_REGION_NAME and OS_INTERFACE",
            region.unwrap_or("(any)")
        ))
    })?;
    let expires = body["token"]["expires_at"]
        .as_str()
        .and_then(crate::units::parse_rfc3339)
        .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)));
    Ok(Session {
        storage_url: storage_url.trim_end_matches('/').to_string(),
        token,
        expires,
    })
}

/// The object-store endpoint of the catalog for `region` (any if unset) and
/// `interface` (public, internal or admin).
fn object_store_url(catalog: &Value, region: Option<&str>, interface: &str) -> Option<String> {
    let interface = interface.trim_end_matches("URL");
    catalog
        .as_array()?
        .iter()
        .filter(|service| service["type"] == "object-store")
        .flat_map(|service| service["endpoints"].as_array().into_iter().flatten())
        .find(|endpoint| {
            endpoint["interface"] == interface
                && region.is_none_or(|r| endpoint["region"] == r || endpoint["region_id"] == r)
        })
        .and_then(|endpoint| endpoint["url"].as_str().map(str::to_string))
}

/// `context: <the transport error in words>`; a TLS handshake the server
/// refused is not worth retrying.
pub fn transport_error(context: String, t: &ureq::Transport) -> Error {
    let text = format!("{context}: {}", describe_transport(t));
    match super::tls::handshake_refused(t) {
        true => Error::storage_refused(text),
        false => Error::storage(text),
    }
}

/// A transport error in words, certificate problems named as such.
fn describe_transport(t: &ureq::Transport) -> String {
    let text = t.to_string();
    // Only an unknown issuer is fixed by OS_CACERT; an expired certificate
    // or one for another name is the server's to fix.
    if text.contains("UnknownIssuer") || text.to_lowercase().contains("unknown issuer") {
        format!("{text} (TLS certificate not trusted: set OS_CACERT to the CA that signed it)")
    } else if text.to_lowercase().contains("certificate") {
        format!("{text} (the server's TLS certificate was refused)")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect()
    }

    #[test]
    fn the_catalog_gives_the_object_store_for_region_and_interface() {
        let catalog = json!([
            {"type": "identity", "endpoints": [{"interface": "public", "region": "R1", "url": "http://k"}]},
            {"type": "object-store", "endpoints": [
                {"interface": "internal", "region": "R1", "url": "http://int/v1/AUTH_p"},
                {"interface": "public", "region": "R2", "url": "http://r2/v1/AUTH_p"},
                {"interface": "public", "region": "R1", "url": "http://pub/v1/AUTH_p"}]}
        ]);
        assert_eq!(
            object_store_url(&catalog, Some("R1"), "public").as_deref(),
            Some("http://pub/v1/AUTH_p")
        );
        assert_eq!(
            object_store_url(&catalog, Some("R1"), "internalURL").as_deref(),
            Some("http://int/v1/AUTH_p")
        );
        assert_eq!(
            object_store_url(&catalog, Some("R2"), "public").as_deref(),
            Some("http://r2/v1/AUTH_p")
        );
        assert_eq!(object_store_url(&catalog, Some("R3"), "public"), None);
        assert_eq!(v3_url("http://k:5000/"), "http://k:5000/v3");
        assert_eq!(v3_url("http://k:5000/v3/"), "http://k:5000/v3");
    }

    #[test]
    fn endpoints_are_plain_http_or_https_urls() {
        assert_eq!(check_endpoint("https://k:5000/v3"), Ok(Scheme::Https));
        assert_eq!(check_endpoint("http://s/v1/AUTH_x"), Ok(Scheme::Http));
        for bad in [
            "ftp://s/v1",
            "https://",
            "https://u:p@s/v1/AUTH_x",
            "https://s/v1/AUTH_x?x=1",
            "https://s/v1/AUTH_x#frag",
            "https://s/v1/AUTH x",
            "https://good\\evil.example/v1",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        // From the settings: a usage error before anything is sent.
        let err = Credentials::from_settings(
            &settings(&[
                ("os_storage_url", "https://s/v1/AUTH_x?x=1"),
                ("os_auth_token", "t"),
            ]),
            false,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Credentials::from_settings(
            &settings(&[
                ("os_storage_url", "http://s/v1/AUTH_x"),
                ("os_auth_token", "t"),
            ]),
            false,
        )
        .unwrap_err();
        assert!(err.message().contains("swift_allow_http"), "{err}");
    }

    #[test]
    fn an_account_url_never_downgrades_an_https_log_in() {
        let over = |auth: &str| {
            Credentials::from_settings(
                &settings(&[("st_auth", auth), ("st_user", "u"), ("st_key", "k")]),
                true,
            )
            .unwrap()
        };
        let https = over("https://auth/v1.0");
        let err = https
            .check_storage_url("http://s/v1/AUTH_x", true)
            .unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert!(!err.worth_retrying(), "final");
        assert!(https
            .check_storage_url("https://s/v1/AUTH_x", false)
            .is_ok());
        assert!(https
            .check_storage_url("https://s/v1/AUTH_x?y", false)
            .is_err());
        let http = over("http://auth/v1.0");
        assert!(http.check_storage_url("http://s/v1/AUTH_x", true).is_ok());
        assert!(http.check_storage_url("http://s/v1/AUTH_x", false).is_err());
    }

    #[test]
    fn keystone_identities_from_settings() {
        let app = Credentials::from_settings(
            &settings(&[
                ("os_auth_url", "http://k:5000/v3"),
                ("os_application_credential_id", "id1"),
                ("os_application_credential_secret", "s"),
                ("os_username", "u"),
                ("os_password", "p"),
                ("os_project_name", "pr"),
            ]),
            true,
        )
        .unwrap();
        assert!(matches!(
            app,
            Credentials::Keystone {
                identity: KeystoneIdentity::ApplicationCredential { .. },
                ..
            }
        ));
        assert!(app.renewable());
        let password = Credentials::from_settings(
            &settings(&[
                ("os_auth_url", "http://k:5000"),
                ("os_username", "u"),
                ("os_password", "p"),
                ("os_project_name", "pr"),
            ]),
            true,
        )
        .unwrap();
        match password {
            Credentials::Keystone {
                auth_url,
                identity: KeystoneIdentity::Password { user_domain, .. },
                interface,
                ..
            } => {
                assert_eq!(auth_url, "http://k:5000/v3");
                assert_eq!(user_domain, "Default");
                assert_eq!(interface, "public");
            }
            other => panic!("{other:?}"),
        }
        let err = Credentials::from_settings(
            &settings(&[("os_auth_url", "http://k"), ("os_password", "hunter2")]),
            true,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(!err.message().contains("hunter2"));
    }

    #[test]
    fn pre_authenticated_wins_and_is_not_renewable() {
        let creds = Credentials::from_settings(
            &settings(&[
                ("os_storage_url", "http://s/v1/AUTH_x/"),
                ("os_auth_token", "tok"),
                ("st_auth", "http://a/auth/v1.0"),
            ]),
            true,
        )
        .unwrap();
        assert!(!creds.renewable());
        assert!(
            matches!(creds, Credentials::PreAuthenticated { ref storage_url, .. } if storage_url == "http://s/v1/AUTH_x")
        );
    }

    #[test]
    fn incomplete_or_missing_credentials_are_usage_errors_without_secrets() {
        let err = Credentials::from_settings(
            &settings(&[("st_auth", "http://a/auth/v1.0"), ("st_key", "sekrit")]),
            true,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(!err.message().contains("sekrit"));
        assert_eq!(
            Credentials::from_settings(&settings(&[]), true)
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    mod hostile_tokens {
        use super::*;
        use crate::testing::{arbitrary_json as any_json, proptest_config as config};
        use proptest::prelude::*;

        fn check(text: &[u8]) -> std::result::Result<(), TestCaseError> {
            let token = Secret::new("tok-secret");
            match session_from_token(text, token, "http://ks", Some("r1"), "public") {
                Ok(session) => prop_assert!(!session.storage_url.ends_with('/')),
                Err(e) => {
                    prop_assert_eq!(e.exit_code(), 4);
                    prop_assert!(!e.to_string().contains("tok-secret"));
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(config(256))]

            #[test]
            fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                check(&bytes)?;
            }

            #[test]
            fn arbitrary_json(value in any_json()) {
                check(&serde_json::to_vec(&value).unwrap())?;
            }

            #[test]
            fn token_shaped_json(catalog in any_json(), expires in any_json()) {
                let body = json!({"token": {"catalog": catalog, "expires_at": expires}});
                check(&serde_json::to_vec(&body).unwrap())?;
            }
        }
    }
}
