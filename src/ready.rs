//! Ready means ready: the app says it can serve (`/healthz` 200) only once
//! everything a request may need from the network is loaded — v2 and v1
//! discovery and the signing keys — and a request that arrives before that
//! waits for it, briefly, instead of failing.

use std::time::Duration;

use tokio::sync::watch;

/// The longest a request waits for start-up loading before it answers as
/// it can (an action then gets 503, a sign-in its usual page).
pub const WAIT: Duration = Duration::from_secs(2);

/// Whether start-up loading is done. Cheap to read on every request.
pub struct Readiness {
    loaded: watch::Sender<bool>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            loaded: watch::Sender::new(false),
        }
    }
}

impl Readiness {
    /// True once discovery and keys are loaded.
    pub fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    /// Marks loading done (once; later calls change nothing).
    pub fn set_loaded(&self) {
        self.loaded
            .send_if_modified(|loaded| !std::mem::replace(loaded, true));
    }

    /// Waits until loading is done, at most `max`; true when it is.
    pub async fn wait(&self, max: Duration) -> bool {
        if self.is_loaded() {
            return true;
        }
        let mut rx = self.loaded.subscribe();
        matches!(
            tokio::time::timeout(max, rx.wait_for(|loaded| *loaded)).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_is_released_when_loading_ends_and_not_before() {
        let r = std::sync::Arc::new(Readiness::default());
        assert!(!r.is_loaded());
        assert!(!r.wait(Duration::from_millis(20)).await);
        let waiter = tokio::spawn({
            let r = r.clone();
            async move { r.wait(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        r.set_loaded();
        assert!(waiter.await.unwrap());
        assert!(r.is_loaded());
        assert!(r.wait(Duration::ZERO).await);
    }
}
