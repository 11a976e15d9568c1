//! Keeping each person's one Graph subscription alive (webhook mode), and
//! polling the delta query (poll mode).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use time::OffsetDateTime;

use super::graph::GraphError;
use super::live::{Feed, Live, hex, sha256};
use crate::session::SignedInUser;
use crate::settings::Notifications;
use crate::state::AppState;
use crate::store::{Subscription, SubscriptionStore as _};

/// A subscription with less than this left is renewed.
const RENEW_WITHIN_SECS: i64 = 24 * 3600;

/// Makes sure `user` has a live subscription to their Inbox: created when
/// there is none, renewed when under a day is left. Runs in the
/// background (Graph checks our endpoint before it answers); concurrent
/// calls for one person make one subscription.
pub async fn ensure_subscription(state: Arc<AppState>, user: SignedInUser) {
    if state.settings.notifications != Notifications::Webhook {
        return;
    }
    let owner = user.person_key();
    if !state.live.start_ensuring(&owner) {
        return;
    }
    let result = ensure(&state, &user, &owner).await;
    // A failure too: the next attempt waits a minute (see `Live::looked`).
    state.live.looked(&owner);
    state.live.done_ensuring(&owner);
    if let Err(why) = result {
        crate::metrics::notification("subscription_failed");
        tracing::warn!(%why, "the Inbox subscription could not be made or renewed");
    }
}

async fn ensure(state: &AppState, user: &SignedInUser, owner: &str) -> Result<(), String> {
    let now = OffsetDateTime::now_utc();
    let existing = state
        .store
        .subscription_of(owner)
        .await
        .map_err(|e| e.to_string())?;
    let subs = &state.live.subscriptions;
    if let Some(mut s) = existing {
        if s.expires_at - now.unix_timestamp() > RENEW_WITHIN_SECS {
            state.live.know(&s.id, &s.owner, &s.client_state_hash);
            return Ok(());
        }
        match subs
            .renew(&user.access_token, &user.email, &s.id, now)
            .await
        {
            Ok(expires_at) => {
                s.expires_at = expires_at;
                state
                    .store
                    .put_subscription(&s)
                    .await
                    .map_err(|e| e.to_string())?;
                state.live.know(&s.id, &s.owner, &s.client_state_hash);
                tracing::info!("the Inbox subscription was renewed");
                return Ok(());
            }
            Err(GraphError::Gone) => state.live.forget_subscription(&s.id),
            Err(e) => return Err(e.to_string()),
        }
    }
    // A fresh secret per subscription, kept only as a hash.
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|_| "no randomness".to_owned())?;
    let client_state = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let base = state.settings.public_base();
    let created = subs
        .create(
            &user.access_token,
            &user.email,
            &format!("{base}/notifications"),
            &format!("{base}/notifications/lifecycle"),
            &client_state,
            now,
        )
        .await
        .map_err(|e| e.to_string())?;
    let s = Subscription {
        owner: owner.to_owned(),
        id: created.id,
        client_state_hash: hex(&sha256(&client_state)),
        expires_at: created.expires_at,
        mailbox: user.email.clone(),
    };
    state
        .store
        .put_subscription(&s)
        .await
        .map_err(|e| e.to_string())?;
    state.live.know(&s.id, &s.owner, &s.client_state_hash);
    crate::metrics::notification("subscribed");
    tracing::info!("the Inbox subscription was created");
    Ok(())
}

/// At sign-out: deletes the person's subscription at Graph and here.
pub async fn drop_subscription(state: Arc<AppState>, user: SignedInUser) {
    let owner = user.person_key();
    state.live.unsure(&owner);
    let Ok(Some(s)) = state.store.subscription_of(&owner).await else {
        return;
    };
    if let Err(e) = state
        .live
        .subscriptions
        .delete(&user.access_token, &user.email, &s.id)
        .await
    {
        tracing::warn!(error = %e, "the Inbox subscription could not be deleted at Graph; it expires by itself");
    }
    state.live.forget_subscription(&s.id);
    if let Err(e) = state.store.delete_subscription(&owner).await {
        tracing::warn!(error = %e, "the Inbox subscription could not be forgotten");
    }
    let _ = state.store.set_delta_link(&owner, None).await;
}

/// `reauthorizationRequired`: reauthorize with a token of the person's if
/// one is at hand here; else the next Inbox open renews it.
pub async fn reauthorize(state: Arc<AppState>, owner: String, id: String) {
    let creds = state
        .live
        .feed(&owner)
        .and_then(|f| f.credentials(crate::clock::now()));
    if let Some(c) = creds {
        match state
            .live
            .subscriptions
            .reauthorize(&c.token, &c.mailbox, &id)
            .await
        {
            Ok(()) => {
                tracing::info!("the Inbox subscription was reauthorized");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "reauthorizing the Inbox subscription failed"),
        }
    }
    // Due for renewal at the next Inbox open.
    state.live.unsure(&owner);
    if let Ok(Some(mut s)) = state.store.subscription_of(&owner).await {
        s.expires_at = crate::clock::now();
        let _ = state.store.put_subscription(&s).await;
    }
}

/// `subscriptionRemoved`: forget it; the next Inbox open makes a new one.
pub async fn removed(state: Arc<AppState>, owner: String, id: String) {
    state.live.forget_subscription(&id);
    state.live.unsure(&owner);
    if let Ok(Some(s)) = state.store.subscription_of(&owner).await
        && s.id == id
    {
        let _ = state.store.delete_subscription(&owner).await;
    }
}

/// Poll mode: while `feed`'s person has a stream here, the delta query
/// every `POLL` period (a throttled read waits as Graph asks, inside
/// [`Live::refresh`]).
pub async fn poll(state: Arc<AppState>, feed: std::sync::Weak<Feed>) {
    let period: Duration = state.settings.poll_period;
    loop {
        tokio::time::sleep(period).await;
        let Some(feed) = feed.upgrade() else { return };
        if feed.streams() == 0 {
            return;
        }
        Live::refresh(state.clone(), feed).await;
    }
}
