//! How a change reaches the instance that holds the person's streams.
//!
//! Alone (the embedded store), everything happens in this process. With
//! `DATA_STORE=redis`, several instances share Redis: a notification that
//! reaches any instance is published ("this person's Inbox changed"); every
//! instance hears it, the one holding the person's streams (if several, the
//! one that takes a short Redis lock) reads the delta, and publishes the
//! new rows, numbered by Redis, to every instance's streams. When Redis
//! goes away and comes back, each instance reads its people's delta again:
//! nothing is lost, and nothing reaches a page twice (ids, and the page's
//! own check of the rows it shows).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::live::{Live, LiveEvent};
use crate::session_store::Redis;
use crate::state::AppState;

const CHANNEL: &str = "outlook-inbox:live";

/// How long one instance may read a person's delta before another may.
const LOCK_MS: u64 = 15_000;

#[derive(Serialize, Deserialize)]
enum Message {
    Changed { person: String },
    Rows { person: String, event: LiveEvent },
}

/// The right to read a person's delta now.
pub enum Lock {
    Local,
    Redis { key: String, token: String },
}

pub struct Bus {
    redis: Option<Arc<Redis>>,
    /// Redis's pub/sub connection is up (else changes stay on this instance).
    up: AtomicBool,
}

impl Bus {
    pub fn local() -> Self {
        Self {
            redis: None,
            up: AtomicBool::new(false),
        }
    }

    pub fn redis(redis: Arc<Redis>) -> Self {
        Self {
            redis: Some(redis),
            up: AtomicBool::new(false),
        }
    }

    /// Redis pub/sub is connected (always false without Redis).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    async fn publish(&self, message: &Message) -> bool {
        let Some(redis) = &self.redis else {
            return false;
        };
        if !self.up.load(Ordering::SeqCst) {
            return false;
        }
        let Ok(payload) = serde_json::to_string(message) else {
            return false;
        };
        let Ok(mut conn) = redis.pool().get().await else {
            return false;
        };
        redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .is_ok()
    }

    /// `person`'s Inbox changed: whoever holds their streams reads the delta.
    pub async fn changed(&self, state: &Arc<AppState>, person: &str) {
        let message = Message::Changed {
            person: person.to_owned(),
        };
        if !self.publish(&message).await {
            changed_here(state, person);
        }
    }

    /// Sends new rows to `person`'s streams on every instance (this one at once).
    pub async fn publish_rows(&self, live: &Live, person: &str, event: LiveEvent) {
        if let Some(feed) = live.feed(person) {
            feed.deliver(Arc::new(event.clone()));
        }
        let message = Message::Rows {
            person: person.to_owned(),
            event,
        };
        self.publish(&message).await;
    }

    /// An id for the next event: Redis numbers them for every instance.
    pub async fn next_event_id(&self, live: &Live) -> u64 {
        if let Some(redis) = &self.redis
            && let Ok(mut conn) = redis.pool().get().await
            && let Ok(id) = redis::cmd("INCR")
                .arg("outlook-inbox:live-event")
                .query_async::<u64>(&mut conn)
                .await
        {
            return id;
        }
        live.next_local_event()
    }

    /// The right to read `person`'s delta: `None` while another instance
    /// has it. Without Redis (or when Redis cannot be asked), this instance
    /// goes ahead.
    pub async fn lock_delta(&self, person: &str) -> Option<Lock> {
        let Some(redis) = &self.redis else {
            return Some(Lock::Local);
        };
        let key = format!("outlook-inbox:delta-lock:{person}");
        let token = uuid::Uuid::new_v4().simple().to_string();
        let Ok(mut conn) = redis.pool().get().await else {
            return Some(Lock::Local);
        };
        let set: Result<Option<String>, _> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_MS)
            .query_async(&mut conn)
            .await;
        match set {
            Ok(Some(_)) => Some(Lock::Redis { key, token }),
            Ok(None) => None,
            Err(_) => Some(Lock::Local),
        }
    }

    pub async fn unlock_delta(&self, lock: Lock) {
        let (Some(redis), Lock::Redis { key, token }) = (&self.redis, lock) else {
            return;
        };
        // Only our own lock (it may have expired and been taken since).
        const SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
        if let Ok(mut conn) = redis.pool().get().await {
            let _ = redis::cmd("EVAL")
                .arg(SCRIPT)
                .arg(1)
                .arg(key)
                .arg(token)
                .query_async::<i64>(&mut conn)
                .await;
        }
    }

    /// Listens to Redis for as long as the app runs, reconnecting after a
    /// loss; after every (re)connection this instance's feeds read their
    /// delta, for what was missed meanwhile.
    pub async fn listen(state: Arc<AppState>) {
        let Some(redis) = state.live.bus.redis.clone() else {
            return;
        };
        let mut pause = Duration::from_millis(200);
        let mut down_logged = false;
        loop {
            let connected = async {
                let mut pubsub = redis.pubsub().await?;
                pubsub.subscribe(CHANNEL).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(pubsub)
            }
            .await;
            match connected {
                Ok(pubsub) => {
                    state.live.bus.up.store(true, Ordering::SeqCst);
                    if down_logged {
                        tracing::info!("live Inbox: Redis is back; reading what was missed");
                        down_logged = false;
                    }
                    pause = Duration::from_millis(200);
                    for feed in state.live.feeds() {
                        tokio::spawn(Live::refresh(state.clone(), feed));
                    }
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<Message>(&payload) {
                            Ok(Message::Changed { person }) => changed_here(&state, &person),
                            Ok(Message::Rows { person, event }) => {
                                if let Some(feed) = state.live.feed(&person) {
                                    feed.deliver(Arc::new(event));
                                }
                            }
                            Err(_) => {}
                        }
                    }
                    state.live.bus.up.store(false, Ordering::SeqCst);
                }
                Err(reason) => {
                    state.live.bus.up.store(false, Ordering::SeqCst);
                    if !down_logged {
                        tracing::warn!(%reason, "live Inbox: Redis pub/sub is unavailable; retrying");
                        down_logged = true;
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

/// A change for `person`, handled by this instance: their feed here (if
/// they have streams here) reads the delta.
fn changed_here(state: &Arc<AppState>, person: &str) {
    if let Some(feed) = state.live.feed(person) {
        tokio::spawn(Live::refresh(state.clone(), feed));
    }
}
