//! Logging in to OpenStack Swift, as OpenStack clients do. This slice knows
//! two ways: a pre-authenticated storage URL and token (`OS_STORAGE_URL` +
//! `OS_AUTH_TOKEN`, what Trove hands its backup jobs) and TempAuth / v1
//! (`ST_AUTH`, `ST_USER`, `ST_KEY`). A token is renewed when Swift says it
//! expired, except a pre-authenticated one, which cannot be. Passwords and
//! tokens stay in `Secret`s and never reach a message or a log line.

use crate::error::{Error, Result};
use crate::secret::Secret;
use std::collections::BTreeMap;

/// How to get a token, from the settings (lower-case OpenStack names).
#[derive(Debug)]
pub enum Credentials {
    PreAuthenticated {
        storage_url: String,
        token: Secret,
    },
    TempAuth {
        auth_url: String,
        user: String,
        key: Secret,
    },
}

/// A token and the account URL it is good for.
#[derive(Debug, Clone)]
pub struct Session {
    pub storage_url: String,
    pub token: Secret,
}

impl Credentials {
    pub fn from_settings(openstack: &BTreeMap<String, Secret>) -> Result<Credentials> {
        let get = |key: &str| openstack.get(key).filter(|v| !v.expose().is_empty());
        if let (Some(url), Some(token)) = (get("os_storage_url"), get("os_auth_token")) {
            return Ok(Credentials::PreAuthenticated {
                storage_url: url.expose().trim_end_matches('/').to_string(),
                token: token.clone(),
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
        if get("os_auth_url").is_some() {
            return Err(Error::usage(
                "Keystone (OS_AUTH_URL) is not supported by this build yet; use OS_STORAGE_URL + OS_AUTH_TOKEN or ST_AUTH/ST_USER/ST_KEY",
            ));
        }
        Err(Error::usage(
            "swift storage needs credentials: OS_STORAGE_URL + OS_AUTH_TOKEN, or ST_AUTH + ST_USER + ST_KEY (environment or settings file)",
        ))
    }

    /// Whether a new token can be had when the current one expires.
    pub fn renewable(&self) -> bool {
        !matches!(self, Credentials::PreAuthenticated { .. })
    }

    pub fn log_in(&self, agent: &ureq::Agent) -> Result<Session> {
        match self {
            Credentials::PreAuthenticated { storage_url, token } => Ok(Session {
                storage_url: storage_url.clone(),
                token: token.clone(),
            }),
            Credentials::TempAuth {
                auth_url,
                user,
                key,
            } => temp_auth(agent, auth_url, user, key),
        }
    }
}

fn temp_auth(agent: &ureq::Agent, auth_url: &str, user: &str, key: &Secret) -> Result<Session> {
    let response = agent
        .get(auth_url)
        .set("X-Auth-User", user)
        .set("X-Auth-Key", key.expose())
        .call();
    let response = match response {
        Ok(response) => response,
        Err(ureq::Error::Status(401 | 403, _)) => {
            return Err(Error::storage(format!(
                "Swift auth at {auth_url} rejected user {user}; check ST_USER and ST_KEY"
            )))
        }
        Err(ureq::Error::Status(code, _)) => {
            return Err(Error::storage(format!(
                "Swift auth at {auth_url} answered {code}"
            )))
        }
        Err(ureq::Error::Transport(t)) => {
            return Err(Error::storage(format!(
                "cannot reach Swift auth at {auth_url}: {}",
                t.kind()
            )))
        }
    };
    let storage_url = response.header("X-Storage-Url").map(str::to_string);
    let token = response.header("X-Auth-Token").map(Secret::new);
    match (storage_url, token) {
        (Some(storage_url), Some(token)) => Ok(Session {
            storage_url: storage_url.trim_end_matches('/').to_string(),
            token,
        }),
        _ => Err(Error::storage(format!(
            "Swift auth at {auth_url} answered without X-Storage-Url and X-Auth-Token"
        ))),
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
    fn pre_authenticated_wins_and_is_not_renewable() {
        let creds = Credentials::from_settings(&settings(&[
            ("os_storage_url", "http://s/v1/AUTH_x/"),
            ("os_auth_token", "tok"),
            ("st_auth", "http://a/auth/v1.0"),
        ]))
        .unwrap();
        assert!(!creds.renewable());
        assert!(
            matches!(creds, Credentials::PreAuthenticated { ref storage_url, .. } if storage_url == "http://s/v1/AUTH_x")
        );
    }

    #[test]
    fn incomplete_or_missing_credentials_are_usage_errors_without_secrets() {
        let err = Credentials::from_settings(&settings(&[
            ("st_auth", "http://a/auth/v1.0"),
            ("st_key", "sekrit"),
        ]))
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(!err.message().contains("sekrit"));
        assert_eq!(
            Credentials::from_settings(&settings(&[]))
                .unwrap_err()
                .exit_code(),
            2
        );
    }
}
