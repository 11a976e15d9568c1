//! Refreshing an expired access token with the refresh token (Redis store only),
//! one refresh per refresh token at a time within this instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};

use super::oidc::{OidcError, Provider};

/// How long a refresh result is handed to requests that waited for it.
const SHARE_FOR: Duration = Duration::from_secs(60);

/// The new tokens from a refresh.
#[derive(Clone)]
pub struct Refreshed {
    pub access_token: String,
    pub expires_at: i64,
    /// Microsoft rotates refresh tokens: keep the new one.
    pub refresh_token: Option<String>,
}

type Outcome = Result<Refreshed, String>;
type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Outcome)>>>;

/// Single-flight refreshes: concurrent requests of one person (same refresh
/// token) wait for the first one's result instead of redeeming the token twice.
#[derive(Default)]
pub struct Refresher {
    slots: Mutex<HashMap<Vec<u8>, Slot>>,
}

impl Refresher {
    pub async fn refresh(
        &self,
        provider: &Provider,
        refresh_token: &str,
        scopes: &[String],
    ) -> Result<Refreshed, OidcError> {
        // Keyed by a hash: the map never holds the refresh token itself.
        let key = digest(&SHA256, refresh_token.as_bytes()).as_ref().to_vec();
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            prune(&mut slots);
            slots.entry(key).or_default().clone()
        };
        let mut done = slot.lock().await;
        if let Some((at, outcome)) = done.as_ref()
            && at.elapsed() < SHARE_FOR
        {
            return outcome.clone().map_err(|error| OidcError::Refused {
                error,
                description: None,
            });
        }
        let discovered = provider.discovered().await?;
        match provider.refresh(&discovered, refresh_token, scopes).await {
            Ok(tokens) => {
                use oauth2::TokenResponse as _;
                let refreshed = Refreshed {
                    access_token: tokens.access_token().secret().clone(),
                    expires_at: super::oidc::token_expiry(tokens.expires_in()),
                    refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
                };
                *done = Some((Instant::now(), Ok(refreshed.clone())));
                Ok(refreshed)
            }
            Err(OidcError::Refused { error, description }) => {
                *done = Some((Instant::now(), Err(error.clone())));
                Err(OidcError::Refused { error, description })
            }
            Err(other) => Err(other),
        }
    }
}

/// Drops the slots no request holds whose result is older than
/// [`SHARE_FOR`] (or that never got one), so the map stays as small as the
/// refreshes of the last minute.
fn prune(slots: &mut HashMap<Vec<u8>, Slot>) {
    slots.retain(|_, s| {
        Arc::strong_count(s) > 1
            || s.try_lock()
                .is_ok_and(|g| g.as_ref().is_some_and(|(t, _)| t.elapsed() < SHARE_FOR))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(age: Option<Duration>) -> Slot {
        let outcome = age.map(|a| (Instant::now() - a, Err::<Refreshed, _>("x".to_owned())));
        Arc::new(tokio::sync::Mutex::new(outcome))
    }

    #[test]
    fn only_slots_nobody_holds_with_an_old_or_no_result_are_dropped() {
        let held = slot(Some(Duration::from_secs(120)));
        let mut slots = HashMap::from([
            (b"old".to_vec(), slot(Some(Duration::from_secs(120)))),
            (b"empty".to_vec(), slot(None)),
            (b"fresh".to_vec(), slot(Some(Duration::from_secs(5)))),
            (b"held".to_vec(), held.clone()),
        ]);
        prune(&mut slots);
        let mut left: Vec<_> = slots
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["fresh", "held"]);
        drop(held);
        prune(&mut slots);
        assert_eq!(slots.len(), 1);
    }
}
