//! Per-person feeds of new Inbox rows, and the streams that carry them.
//!
//! Each person with an open Inbox (one or more `/mail/events` streams) has
//! a [`Feed`] on the instance that holds the streams. When the app learns
//! that the person's Inbox changed (a Graph notification, a poll, a
//! lifecycle `missed`), the feed reads the delta query once, with a token
//! from one of the person's own sessions, and sends the new rows to every
//! stream. With Redis, the change and the rows travel between instances
//! (see [`super::bus`]), and one instance at a time reads a person's delta.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::mail::MailError;
use crate::state::AppState;
use crate::store::SubscriptionStore as _;

/// Streams one browser session may hold open; a new one beyond them ends
/// that session's oldest (most likely a page the person already left: a
/// closed page is noticed only at the next heartbeat).
pub const STREAMS_PER_SESSION: usize = 5;

/// Events kept per feed for `Last-Event-ID` to resume from.
const RECENT: usize = 50;

/// Message ids a feed remembers having sent (so a changed message is not
/// announced as new again).
const SEEN: usize = 1_000;

/// Delta rounds read at most per change (50 messages each).
const MAX_DELTA_PAGES: usize = 20;

/// A deltaLink made more than this long before the page was loaded is not
/// reused: it would announce what the page already shows.
const STALE_BASELINE_SECS: i64 = 600;

/// What a stream is sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LiveEvent {
    /// New Inbox rows, newest first.
    Rows {
        id: u64,
        /// The table rows, rendered as the Inbox renders them.
        html: String,
        /// Their message ids (the page skips those it already shows).
        ids: Vec<String>,
        /// What the page announces (`aria-live`).
        announce: String,
    },
    /// The token this instance reads with was refused: reload to sign in.
    Expired,
}

/// A session's token, for reading the delta on the person's behalf.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub token: String,
    pub mailbox: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// When the page with the open Inbox was made (Unix seconds).
    pub since: i64,
}

/// One person's feed on this instance.
pub struct Feed {
    pub person: String,
    tx: broadcast::Sender<Arc<LiveEvent>>,
    streams: AtomicUsize,
    credentials: Mutex<Option<Credentials>>,
    recent: Mutex<VecDeque<Arc<LiveEvent>>>,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
    running: tokio::sync::Mutex<()>,
    again: AtomicBool,
    /// The newest event id delivered (events from the bus arrive once per
    /// instance, but Redis may repeat one after a reconnection).
    last: AtomicU64,
}

impl Feed {
    fn new(person: &str) -> Self {
        Self {
            person: person.to_owned(),
            tx: broadcast::channel(64).0,
            streams: AtomicUsize::new(0),
            credentials: Mutex::new(None),
            recent: Mutex::new(VecDeque::new()),
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
            running: tokio::sync::Mutex::new(()),
            again: AtomicBool::new(false),
            last: AtomicU64::new(0),
        }
    }

    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// The freshest credentials any of the person's streams brought.
    pub fn credentials(&self, now: i64) -> Option<Credentials> {
        let c = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        c.clone().filter(|c| c.expires_at > now + 30)
    }

    fn offer(&self, fresh: Credentials) {
        let mut c = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        let better = match &*c {
            None => true,
            Some(old) => fresh.expires_at >= old.expires_at || old.token != fresh.token,
        };
        if better {
            let since = c
                .as_ref()
                .map_or(fresh.since, |old| old.since.min(fresh.since));
            *c = Some(Credentials { since, ..fresh });
        }
    }

    fn forget_credentials(&self) {
        *self.credentials.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Sends `event` to this instance's streams of the person, once.
    pub fn deliver(&self, event: Arc<LiveEvent>) {
        if let LiveEvent::Rows { id, .. } = &*event {
            if self.last.fetch_max(*id, Ordering::SeqCst) >= *id {
                return;
            }
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.len() >= RECENT {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        let _ = self.tx.send(event);
    }

    /// Events after `last_id` (for a stream that resumes).
    fn since(&self, last_id: u64) -> Vec<Arc<LiveEvent>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .iter()
            .filter(|e| matches!(&***e, LiveEvent::Rows { id, .. } if *id > last_id))
            .cloned()
            .collect()
    }

    /// True the first time `id` is offered.
    fn first_time(&self, id: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *seen;
        if !set.insert(id.to_owned()) {
            return false;
        }
        order.push_back(id.to_owned());
        if order.len() > SEEN
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }
}

/// Why a stream could not be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// This instance holds `LIVE_MAX_STREAMS`.
    Full,
}

/// A stream's place among its session's: ended by a newer one when full.
struct Place {
    id: u64,
    end: Arc<tokio::sync::Notify>,
}

/// What keeps a stream counted; dropped when the stream ends (the client
/// went away, the token expired, the server stops).
pub struct StreamGuard {
    live: Weak<Live>,
    feed: Arc<Feed>,
    session: String,
    id: u64,
    /// Notified when a newer stream of the same session takes this one's place.
    pub ended: Arc<tokio::sync::Notify>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(live) = self.live.upgrade() {
            live.close(&self.feed, &self.session, self.id);
        }
    }
}

/// A subscription a notification is checked against.
#[derive(Clone)]
struct Known {
    owner: String,
    client_state_hash: [u8; 32],
}

/// The live Inbox of this instance.
pub struct Live {
    feeds: Mutex<HashMap<String, Arc<Feed>>>,
    streams: AtomicUsize,
    per_session: Mutex<HashMap<String, VecDeque<Place>>>,
    next_stream: AtomicU64,
    max_streams: usize,
    known: Mutex<HashMap<String, Known>>,
    /// People whose subscription is being made or renewed right now.
    ensuring: Mutex<HashSet<String>>,
    /// People whose subscription was looked at lately (found live, made, or
    /// tried and failed): their Inbox views need no store read or Graph call
    /// for it until [`LOOK_AGAIN_AFTER`] passes.
    looked: Mutex<HashMap<String, Instant>>,
    next_event: AtomicU64,
    /// Notifications that are not ours are logged at a bounded rate.
    pub refusals: crate::logging::RefusalLog,
    pub bus: super::bus::Bus,
    pub subscriptions: super::graph::Subscriptions,
    /// True once the server stops: every stream ends, so that browsers
    /// reconnect to another instance and the drain is not held by them.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// Subscriptions remembered at once; when full, the memory starts over
/// (the store has them all).
const KNOWN_CAPACITY: usize = 50_000;

/// How long after a look at a subscription the next Inbox view looks again.
/// Renewal is due a day before expiry, so a minute costs nothing there;
/// a subscription another instance deleted (its person signed out there,
/// or Graph removed it) is made again at most this much later; and when
/// making one fails (Graph refuses, the validation never reaches us), each
/// person costs Graph one attempt and the log one warning a minute, not one
/// every Inbox view.
const LOOK_AGAIN_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

impl Live {
    pub fn new(
        max_streams: usize,
        bus: super::bus::Bus,
        subscriptions: super::graph::Subscriptions,
    ) -> Self {
        Self {
            feeds: Mutex::default(),
            streams: AtomicUsize::new(0),
            per_session: Mutex::default(),
            next_stream: AtomicU64::new(0),
            max_streams,
            known: Mutex::default(),
            ensuring: Mutex::default(),
            looked: Mutex::default(),
            // Unique across restarts of a single instance; Redis numbers
            // events itself across instances.
            next_event: AtomicU64::new(
                u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
                    .unwrap_or(1)
                    * 1_000,
            ),
            refusals: crate::logging::RefusalLog::new(),
            bus,
            subscriptions,
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Ends every stream, now and later: the server is stopping.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once the server is stopping.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stopping.subscribe();
        async move {
            // An error means the sender is gone: the server is gone too.
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }

    /// Streams open on this instance.
    pub fn open_streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// `person`'s feed on this instance, if they have a stream here.
    pub fn feed(&self, person: &str) -> Option<Arc<Feed>> {
        self.feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(person)
            .cloned()
    }

    /// Every feed on this instance (to resynchronise after the bus was down).
    pub fn feeds(&self) -> Vec<Arc<Feed>> {
        self.feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Opens a stream for `person` in browser session `session`: the
    /// events to send first (after `last_id`, when resuming), the receiver
    /// of later ones, and the guard that counts it. `first` is true when
    /// this is the person's first stream on this instance.
    #[allow(clippy::type_complexity)]
    pub fn open(
        self: &Arc<Self>,
        person: &str,
        session: &str,
        credentials: Credentials,
        last_id: Option<u64>,
    ) -> Result<
        (
            Vec<Arc<LiveEvent>>,
            broadcast::Receiver<Arc<LiveEvent>>,
            StreamGuard,
            bool,
        ),
        OpenError,
    > {
        let id = self.next_stream.fetch_add(1, Ordering::SeqCst);
        let ended = Arc::new(tokio::sync::Notify::new());
        {
            let mut per = self.per_session.lock().unwrap_or_else(|p| p.into_inner());
            let places = per.entry(session.to_owned()).or_default();
            if places.len() < STREAMS_PER_SESSION
                && self.streams.fetch_add(1, Ordering::SeqCst) >= self.max_streams
            {
                self.streams.fetch_sub(1, Ordering::SeqCst);
                if places.is_empty() {
                    per.remove(session);
                }
                return Err(OpenError::Full);
            }
            if places.len() >= STREAMS_PER_SESSION {
                // The oldest ends, and this one counts in its place.
                if let Some(oldest) = places.pop_front() {
                    oldest.end.notify_one();
                }
                self.streams.fetch_add(1, Ordering::SeqCst);
            }
            places.push_back(Place {
                id,
                end: ended.clone(),
            });
        }
        let feed = {
            let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
            feeds
                .entry(person.to_owned())
                .or_insert_with(|| Arc::new(Feed::new(person)))
                .clone()
        };
        let first = feed.streams.fetch_add(1, Ordering::SeqCst) == 0;
        feed.offer(credentials);
        let backlog = last_id.map(|id| feed.since(id)).unwrap_or_default();
        let rx = feed.tx.subscribe();
        crate::metrics::live_streams(self.open_streams());
        Ok((
            backlog,
            rx,
            StreamGuard {
                live: Arc::downgrade(self),
                feed,
                session: session.to_owned(),
                id,
                ended,
            },
            first,
        ))
    }

    fn close(&self, feed: &Arc<Feed>, session: &str, id: u64) {
        self.streams.fetch_sub(1, Ordering::SeqCst);
        {
            let mut per = self.per_session.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(places) = per.get_mut(session) {
                places.retain(|p| p.id != id);
                if places.is_empty() {
                    per.remove(session);
                }
            }
        }
        if feed.streams.fetch_sub(1, Ordering::SeqCst) == 1 {
            let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
            if feeds
                .get(&feed.person)
                .is_some_and(|f| Arc::ptr_eq(f, feed) && f.streams() == 0)
            {
                feeds.remove(&feed.person);
            }
        }
        crate::metrics::live_streams(self.open_streams());
    }

    /// The next event id on this instance (without Redis).
    pub fn next_local_event(&self) -> u64 {
        self.next_event.fetch_add(1, Ordering::SeqCst)
    }

    /// Remembers a subscription a notification may name.
    pub fn know(&self, id: &str, owner: &str, client_state_hash: &str) {
        let mut hash = [0u8; 32];
        if hex_into(client_state_hash, &mut hash).is_none() {
            return;
        }
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= KNOWN_CAPACITY {
            known.clear();
        }
        known.insert(
            id.to_owned(),
            Known {
                owner: owner.to_owned(),
                client_state_hash: hash,
            },
        );
    }

    /// True when no one else is making `owner`'s subscription right now.
    pub fn start_ensuring(&self, owner: &str) -> bool {
        self.ensuring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(owner.to_owned())
    }

    pub fn done_ensuring(&self, owner: &str) {
        self.ensuring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(owner);
    }

    /// True when `owner`'s subscription was looked at here less than
    /// [`LOOK_AGAIN_AFTER`] ago.
    pub fn looked_lately(&self, owner: &str) -> bool {
        self.looked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(owner)
            .is_some_and(|at| at.elapsed() < LOOK_AGAIN_AFTER)
    }

    /// `owner`'s subscription was looked at just now: found live, made, or
    /// an attempt failed.
    pub fn looked(&self, owner: &str) {
        let mut looked = self.looked.lock().unwrap_or_else(|p| p.into_inner());
        if looked.len() >= KNOWN_CAPACITY {
            looked.clear();
        }
        looked.insert(owner.to_owned(), Instant::now());
    }

    /// `owner`'s subscription must be looked at on the next Inbox view.
    pub fn unsure(&self, owner: &str) {
        self.looked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(owner);
    }

    pub fn forget_subscription(&self, id: &str) {
        let known = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Some(known) = known {
            self.unsure(&known.owner);
        }
    }

    /// Whose Inbox notification `id` with `client_state` is about, if the
    /// subscription is ours and the state matches (compared in constant
    /// time, as hashes). `lookups` limits store reads for unknown ids.
    pub async fn owner_of(
        &self,
        state: &AppState,
        id: &str,
        client_state: &str,
        lookups: &mut usize,
    ) -> Verdict {
        let known = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        let known = match known {
            Some(k) => k,
            None => {
                if *lookups == 0 || !crate::mail::model::valid_id(id) {
                    return Verdict::Unknown;
                }
                *lookups -= 1;
                match state.store.subscription(id).await {
                    Ok(Some(s)) => {
                        self.know(&s.id, &s.owner, &s.client_state_hash);
                        let mut hash = [0u8; 32];
                        if hex_into(&s.client_state_hash, &mut hash).is_none() {
                            return Verdict::Unknown;
                        }
                        Known {
                            owner: s.owner,
                            client_state_hash: hash,
                        }
                    }
                    Ok(None) => return Verdict::Unknown,
                    Err(e) => {
                        tracing::warn!(error = %e, "a notification's subscription could not be looked up");
                        return Verdict::Unknown;
                    }
                }
            }
        };
        let presented = sha256(client_state);
        match aws_lc_rs::constant_time::verify_slices_are_equal(
            &presented,
            &known.client_state_hash,
        ) {
            Ok(()) => Verdict::Owner(known.owner),
            Err(_) => Verdict::Forged,
        }
    }

    /// Reads `feed`'s person's new Inbox messages and sends them: once at a
    /// time per instance (a change during a read causes one more read), and
    /// across instances one at a time (the bus's lock).
    pub async fn refresh(state: Arc<AppState>, feed: Arc<Feed>) {
        let Ok(_running) = feed.running.try_lock() else {
            feed.again.store(true, Ordering::SeqCst);
            return;
        };
        loop {
            feed.again.store(false, Ordering::SeqCst);
            let now = crate::clock::now();
            let Some(creds) = feed.credentials(now) else {
                feed.deliver(Arc::new(LiveEvent::Expired));
                return;
            };
            let live = &state.live;
            let Some(lock) = live.bus.lock_delta(&feed.person).await else {
                // Another instance is reading it; its rows come over the bus.
                return;
            };
            let read = read_new(&state, &feed, &creds).await;
            live.bus.unlock_delta(lock).await;
            match read {
                Ok(rows) if rows.is_empty() => {}
                Ok(rows) => {
                    let id = live.bus.next_event_id(live).await;
                    match render_rows(&rows, id) {
                        Some(event) => live.bus.publish_rows(live, &feed.person, event).await,
                        None => tracing::error!("new Inbox rows could not be rendered"),
                    }
                }
                Err(ReadError::Expired) => {
                    feed.forget_credentials();
                    feed.deliver(Arc::new(LiveEvent::Expired));
                    return;
                }
                Err(ReadError::Throttled(secs)) => {
                    crate::metrics::notification("throttled");
                    tokio::time::sleep(Duration::from_secs(secs.clamp(1, 60))).await;
                    feed.again.store(true, Ordering::SeqCst);
                }
                Err(ReadError::Failed(why)) => {
                    tracing::warn!(%why, "the Inbox delta could not be read");
                }
            }
            if !feed.again.load(Ordering::SeqCst) {
                return;
            }
        }
    }
}

/// What a notification's subscription and `clientState` come to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Owner(String),
    Unknown,
    Forged,
}

enum ReadError {
    Expired,
    Throttled(u64),
    Failed(String),
}

/// The stored deltaLink and the time its round started from.
fn parse_stored(value: &str) -> Option<(i64, &str)> {
    let (since, link) = value.split_once('|')?;
    Some((since.parse().ok()?, link))
}

/// The Inbox messages that arrived since the last read, newest first,
/// each offered once.
async fn read_new(
    state: &AppState,
    feed: &Feed,
    creds: &Credentials,
) -> Result<Vec<crate::mail::Message>, ReadError> {
    let stored = state
        .store
        .delta_link(&feed.person)
        .await
        .map_err(|e| ReadError::Failed(e.to_string()))?;
    let usable = stored
        .as_deref()
        .and_then(parse_stored)
        .filter(|(since, _)| *since >= creds.since - STALE_BASELINE_SECS)
        .map(|(since, link)| (since, link.to_owned()));
    let (mut since, mut link) = match usable {
        Some((since, link)) => (since, Some(link)),
        None => (creds.since - 60, None),
    };
    let mut found = Vec::new();
    let mut reset = false;
    for _ in 0..MAX_DELTA_PAGES {
        let at = OffsetDateTime::from_unix_timestamp(since).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        match state
            .mail
            .client
            .delta(&creds.token, &creds.mailbox, link.as_deref(), at)
            .await
        {
            Ok(page) => {
                found.extend(page.messages);
                if let Some(next) = page.next_link {
                    link = Some(next);
                    continue;
                }
                if let Some(delta) = page.delta_link
                    && let Err(e) = state
                        .store
                        .set_delta_link(&feed.person, Some(&format!("{since}|{delta}")))
                        .await
                {
                    tracing::warn!(error = %e, "the Inbox deltaLink could not be kept");
                }
                break;
            }
            // The delta state is gone: start again from the page's time
            // (what arrived since is read anew; what was sent, is not again).
            Err(MailError::SyncReset { .. }) if !reset => {
                reset = true;
                link = None;
                since = creds.since - 60;
                crate::metrics::notification("resync");
            }
            Err(MailError::Unauthorized { .. }) => return Err(ReadError::Expired),
            Err(MailError::Throttled {
                retry_after_secs, ..
            }) => return Err(ReadError::Throttled(retry_after_secs.unwrap_or(30))),
            Err(e) => return Err(ReadError::Failed(e.to_string())),
        }
    }
    let mut fresh: Vec<_> = found
        .into_iter()
        .filter(|m| m.id.as_deref().is_some_and(|id| feed.first_time(id)))
        .collect();
    fresh.sort_by_key(|m| std::cmp::Reverse(m.received));
    Ok(fresh)
}

/// New rows as the Inbox table renders them, and what to announce.
fn render_rows(messages: &[crate::mail::Message], id: u64) -> Option<LiveEvent> {
    use askama::Template as _;
    let now = OffsetDateTime::now_utc();
    let ids = messages.iter().filter_map(|m| m.id.clone()).collect();
    let announce = match messages {
        [one] => format!(
            "New message from {}: {}",
            one.from_name
                .as_deref()
                .or(one.from_address.as_deref())
                .unwrap_or("an unknown sender"),
            one.subject.as_deref().unwrap_or("(no subject)")
        ),
        many => format!("{} new messages", many.len()),
    };
    let rows = crate::pages::RowsView {
        rows: messages
            .iter()
            .cloned()
            .map(|m| crate::pages::MessageRow::new(m, now))
            .collect(),
    };
    Some(LiveEvent::Rows {
        id,
        html: rows.render().ok()?,
        ids,
        announce,
    })
}

pub fn sha256(text: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_into(text: &str, out: &mut [u8; 32]) -> Option<()> {
    if text.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_sends_each_event_once_and_resumes_after_an_id() {
        let feed = Feed::new("tid/oid");
        let mut rx = feed.tx.subscribe();
        let rows = |id: u64| {
            Arc::new(LiveEvent::Rows {
                id,
                html: String::new(),
                ids: vec![],
                announce: String::new(),
            })
        };
        feed.deliver(rows(5));
        feed.deliver(rows(5));
        feed.deliver(rows(4));
        feed.deliver(rows(6));
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let LiveEvent::Rows { id, .. } = &*e {
                got.push(*id);
            }
        }
        assert_eq!(got, vec![5, 6]);
        assert_eq!(feed.since(5).len(), 1);
        assert_eq!(feed.since(0).len(), 2);
        assert!(feed.first_time("m1") && !feed.first_time("m1"));
    }

    #[test]
    fn stored_delta_links_keep_their_start() {
        assert_eq!(
            parse_stored(
                "1796300000|https://graph.microsoft.com/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=a|b"
            ),
            Some((
                1_796_300_000,
                "https://graph.microsoft.com/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=a|b"
            ))
        );
        assert_eq!(parse_stored("no-separator"), None);
        assert_eq!(parse_stored("x|link"), None);
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = sha256("client-state");
        let mut back = [0u8; 32];
        assert!(hex_into(&hex(&h), &mut back).is_some());
        assert_eq!(back, h);
        assert!(hex_into("zz", &mut back).is_none());
    }

    #[test]
    fn streams_are_bounded_per_session_and_per_instance() {
        let live = Arc::new(Live::new(
            6,
            super::super::bus::Bus::local(),
            super::super::graph::Subscriptions::new(
                reqwest::Client::new(),
                &url::Url::parse("https://graph.microsoft.com/v1.0").unwrap(),
            ),
        ));
        let creds = || Credentials {
            token: "t".into(),
            mailbox: "m".into(),
            expires_at: i64::MAX,
            since: 0,
        };
        let mut guards = Vec::new();
        for i in 0..STREAMS_PER_SESSION {
            let (_, _, g, first) = live.open("p1", "s1", creds(), None).unwrap();
            assert_eq!(first, i == 0);
            guards.push(g);
        }
        // A sixth in the same session ends the oldest, in whose place it counts.
        let oldest = guards[0].ended.clone();
        let (_, _, g, _) = live.open("p1", "s1", creds(), None).unwrap();
        assert!(
            futures_util::FutureExt::now_or_never(oldest.notified()).is_some(),
            "the oldest stream was not ended"
        );
        guards.remove(0);
        guards.push(g);
        assert_eq!(live.open_streams(), STREAMS_PER_SESSION);
        let (_, _, g, _) = live.open("p1", "s2", creds(), None).unwrap();
        guards.push(g);
        assert_eq!(
            live.open("p2", "s3", creds(), None).err(),
            Some(OpenError::Full)
        );
        // A full instance still lets a browser replace its own oldest stream.
        let (_, _, g, _) = live.open("p1", "s1", creds(), None).unwrap();
        guards.remove(0);
        guards.push(g);
        assert_eq!(live.open_streams(), 6);
        guards.clear();
        assert_eq!(live.open_streams(), 0);
        assert!(
            live.feed("p1").is_none(),
            "a feed without streams is dropped"
        );
    }
}
