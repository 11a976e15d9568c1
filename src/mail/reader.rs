//! Reading a message body: sanitized on the blocking pool behind a small
//! concurrency limit, its inline images (`cid:`) embedded as `data:` URIs
//! within a budget, and kept in a bounded per-person memory so that opening
//! it again costs no sanitizing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::model::{AttachmentKind, Body};
use super::sanitize::Sanitizer;
use super::{InlineImage, MailClient, MailError};

/// Bodies sanitized at once: each one holds a core, and a person who opens
/// many large messages in parallel must not take every one.
pub const SANITIZE_PERMITS: usize = 2;

/// How long a body waits for a permit before the page says "busy".
const PERMIT_WAIT: Duration = Duration::from_secs(10);

/// Inline images embedded per message (decoded bytes); past it, a
/// placeholder says how big each remaining image is.
pub const INLINE_BUDGET: u64 = 5 * 1024 * 1024;

/// Inline images fetched per message at most (one call each).
pub const MAX_INLINE_IMAGES: usize = 20;

/// What the memory of bodies holds at most, in packed bytes (see [`Kept`]):
/// about what 4 and 8 MiB of ordinary HTML mail packs to.
const MAX_TOTAL_BYTES: usize = 3 * 1024 * 1024;
const MAX_PERSON_BYTES: usize = 3 * 512 * 1024;
const MAX_PERSON_ENTRIES: usize = 64;
const MAX_PEOPLE: usize = 1_000;

/// A body larger than this is packed and unpacked on the blocking pool
/// (LZ4 takes about a microsecond a kilobyte: 256 KiB is a quarter of a
/// millisecond, below that a hop to the pool costs more than it saves).
const PACK_ON_POOL: usize = 256 * 1024;

/// A body as the memory keeps it: its text compressed with LZ4 (about 2.5
/// times smaller for ordinary HTML mail, far more for template-built
/// newsletters), in an allocation of exactly its length. Unpacking 50 KB
/// takes about 20 µs, far less than sanitizing it again.
struct Kept {
    packed: Box<[u8]>,
    /// The text's length: what unpacking costs.
    len: usize,
    /// `None`: a text body; `Some(flattened)`: sanitized HTML.
    html: Option<bool>,
}

impl Kept {
    fn pack(rendered: &Rendered) -> Self {
        let (text, html) = match rendered {
            Rendered::Html { html, flattened } => (html, Some(*flattened)),
            Rendered::Text(text) => (text, None),
        };
        Self {
            packed: lz4_flex::compress_prepend_size(text.as_bytes()).into_boxed_slice(),
            len: text.len(),
            html,
        }
    }

    /// The body again; `None` only if the packed bytes were not ours (a
    /// miss: the body is read and sanitized again).
    fn unpack(&self) -> Option<Rendered> {
        let bytes = lz4_flex::decompress_size_prepended(&self.packed).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        Some(match self.html {
            Some(flattened) => Rendered::Html {
                html: text,
                flattened,
            },
            None => Rendered::Text(text),
        })
    }

    fn bytes(&self) -> usize {
        self.packed.len()
    }
}

/// Runs `work` here when `size` is small, else on the blocking pool;
/// `None` when the pool's task failed.
async fn off_runtime_if_large<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if size <= PACK_ON_POOL {
        Some(work())
    } else {
        tokio::task::spawn_blocking(work).await.ok()
    }
}

/// A body ready for the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// Sanitized HTML, inline images embedded.
    Html { html: String, flattened: bool },
    /// A text body (escaped by the page).
    Text(String),
}

impl Rendered {
    fn bytes(&self) -> usize {
        match self {
            Rendered::Html { html, .. } => html.len(),
            Rendered::Text(t) => t.len(),
        }
    }
}

/// What a cached body is kept under: never shared between people, and a
/// changed message (new `changeKey`) is a new entry.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    message: String,
    change_key: String,
    remote_images: bool,
}

#[derive(Default)]
struct PersonBodies {
    entries: HashMap<Key, Arc<Kept>>,
    order: VecDeque<Key>,
    bytes: usize,
}

#[derive(Default)]
struct Memory {
    people: HashMap<String, PersonBodies>,
    /// People in the order they were first remembered (the oldest go first).
    order: VecDeque<String>,
    bytes: usize,
}

/// The reading pipeline's shared parts.
pub struct Reader {
    sanitizer: Arc<Sanitizer>,
    permits: Arc<Semaphore>,
    memory: Mutex<Memory>,
}

/// Why a body could not be shown.
#[derive(Debug)]
pub enum ReadError {
    Mail(MailError),
    /// Every sanitizing permit stayed taken for [`PERMIT_WAIT`].
    Busy,
    /// Sanitizing failed (a panic in the sanitizer, caught).
    Failed,
}

impl Reader {
    pub fn new(sanitizer: Arc<Sanitizer>) -> Self {
        Self {
            sanitizer,
            permits: Arc::new(Semaphore::new(SANITIZE_PERMITS)),
            memory: Mutex::default(),
        }
    }

    /// Message `id`'s body for `person`, ready for the frame, and whether
    /// it was cut at the size cap.
    pub async fn read(
        &self,
        mail: &MailClient,
        token: &str,
        mailbox: &str,
        person: &str,
        id: &str,
        remote_images: bool,
    ) -> Result<(Arc<Rendered>, bool), ReadError> {
        let answer = mail
            .body(token, mailbox, id)
            .await
            .map_err(ReadError::Mail)?;
        let key = answer.change_key.clone().map(|change_key| Key {
            message: id.to_owned(),
            change_key,
            remote_images,
        });
        if let Some(key) = &key
            && let Some(kept) = self.recall(person, key)
            && let Some(hit) = off_runtime_if_large(kept.len, move || kept.unpack())
                .await
                .flatten()
        {
            return Ok((Arc::new(hit), answer.truncated));
        }
        let rendered = match answer.body {
            Body::Text(text) => Rendered::Text(text),
            Body::Html(raw) => {
                let cleaned = self.sanitize(raw, remote_images).await?;
                let html = if cleaned.html.contains(CID_SRC) {
                    let images = inline_images(mail, token, mailbox, id, &cleaned.html).await;
                    embed(&cleaned.html, &images)
                } else {
                    cleaned.html
                };
                Rendered::Html {
                    html,
                    flattened: cleaned.flattened,
                }
            }
        };
        let rendered = Arc::new(rendered);
        if let Some(key) = key {
            let body = rendered.clone();
            if let Some(kept) =
                off_runtime_if_large(rendered.bytes(), move || Kept::pack(&body)).await
            {
                self.remember(person, key, kept);
            }
        }
        Ok((rendered, answer.truncated))
    }

    /// Sanitizes on the blocking pool, at most [`SANITIZE_PERMITS`] at once.
    async fn sanitize(
        &self,
        raw: String,
        remote_images: bool,
    ) -> Result<super::sanitize::Cleaned, ReadError> {
        let permit = tokio::time::timeout(PERMIT_WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| ReadError::Busy)?
            .map_err(|_| ReadError::Busy)?;
        let sanitizer = self.sanitizer.clone();
        let cleaned = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            sanitizer.clean(&raw, remote_images)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "sanitizing a body failed");
            ReadError::Failed
        })?;
        Ok(cleaned)
    }

    fn recall(&self, person: &str, key: &Key) -> Option<Arc<Kept>> {
        let memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        memory.people.get(person)?.entries.get(key).cloned()
    }

    fn remember(&self, person: &str, key: Key, kept: Kept) {
        let size = kept.bytes();
        if size > MAX_PERSON_BYTES {
            return;
        }
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        let memory = &mut *memory;
        if !memory.people.contains_key(person) {
            if memory.people.len() >= MAX_PEOPLE
                && let Some(oldest) = memory.order.pop_front()
                && let Some(gone) = memory.people.remove(&oldest)
            {
                memory.bytes -= gone.bytes;
            }
            memory.order.push_back(person.to_owned());
        }
        let mine = memory.people.entry(person.to_owned()).or_default();
        if let Some(old) = mine.entries.insert(key.clone(), Arc::new(kept)) {
            mine.bytes -= old.bytes();
            memory.bytes -= old.bytes();
            mine.order.retain(|k| k != &key);
        }
        mine.order.push_back(key);
        mine.bytes += size;
        memory.bytes += size;
        // This person's oldest bodies first, then other people's.
        while mine.bytes > MAX_PERSON_BYTES || mine.entries.len() > MAX_PERSON_ENTRIES {
            let Some(k) = mine.order.pop_front() else {
                break;
            };
            if let Some(old) = mine.entries.remove(&k) {
                mine.bytes -= old.bytes();
                memory.bytes -= old.bytes();
            }
        }
        while memory.bytes > MAX_TOTAL_BYTES {
            let Some(oldest) = memory.order.pop_front() else {
                break;
            };
            if oldest == person {
                memory.order.push_back(oldest);
                if memory.order.len() == 1 {
                    break;
                }
                continue;
            }
            if let Some(gone) = memory.people.remove(&oldest) {
                memory.bytes -= gone.bytes;
            }
        }
    }

    /// Forgets what is kept for `person` (at sign-out).
    pub fn forget(&self, person: &str) {
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(gone) = memory.people.remove(person) {
            memory.bytes -= gone.bytes;
        }
        memory.order.retain(|p| p != person);
    }

    /// Bytes of bodies kept now (for tests and metrics).
    pub fn kept_bytes(&self) -> usize {
        self.memory
            .lock()
            .map(|m| m.bytes)
            .unwrap_or_else(|p| p.into_inner().bytes)
    }
}

/// How an inline image reference is written in sanitized HTML.
const CID_SRC: &str = "src=\"cid:";

/// The inline images of a message: those shown (by content id), and those
/// past the budget (by attachment name, with their size: the list of
/// attachments does not say their content id).
#[derive(Debug, Default)]
struct Inline {
    shown: HashMap<String, String>,
    too_big: Vec<(String, u64)>,
}

impl Inline {
    /// The size of the image past the budget that `cid` names: an Outlook
    /// content id starts with the file's name (`image001.png@01DB…`).
    fn size_of(&self, cid: &str) -> Option<u64> {
        self.too_big
            .iter()
            .find(|(name, _)| cid == name || cid.starts_with(&format!("{name}@")))
            .map(|(_, size)| *size)
    }
}

/// The content ids the sanitized body refers to (`src="cid:…"`), as written.
fn referenced(html: &str) -> Vec<String> {
    let mut cids = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(CID_SRC) {
        rest = &rest[at + CID_SRC.len()..];
        let end = rest.find('"').unwrap_or(rest.len());
        cids.push(unescape(&rest[..end]));
        rest = &rest[end..];
    }
    cids
}

/// The attribute value as the serializer wrote it, unescaped.
fn unescape(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// A content id as a key: without the angle brackets MIME puts around it,
/// and without case.
fn cid_key(cid: &str) -> String {
    cid.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

/// Image types shown inline (as `data:` URIs in the sandboxed frame).
fn image_type(content_type: &str) -> Option<&'static str> {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match t.as_str() {
        "image/png" => Some("image/png"),
        "image/jpeg" | "image/jpg" | "image/pjpeg" => Some("image/jpeg"),
        "image/gif" => Some("image/gif"),
        "image/webp" => Some("image/webp"),
        "image/bmp" => Some("image/bmp"),
        _ => None,
    }
}

/// Fetches the inline images `html` refers to, smallest first, within
/// [`INLINE_BUDGET`] and [`MAX_INLINE_IMAGES`]. A failure is logged and
/// leaves placeholders (it never fails the body).
async fn inline_images(
    mail: &MailClient,
    token: &str,
    mailbox: &str,
    id: &str,
    html: &str,
) -> Inline {
    let wanted: std::collections::HashSet<String> =
        referenced(html).iter().map(|c| cid_key(c)).collect();
    let mut found = Inline::default();
    let list = match mail.attachments(token, mailbox, id).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "the inline images could not be listed");
            return found;
        }
    };
    let mut candidates: Vec<_> = list
        .into_iter()
        .filter(|a| a.inline && a.kind == AttachmentKind::File && a.id.is_some())
        .filter(|a| a.content_type.as_deref().and_then(image_type).is_some())
        .collect();
    candidates.sort_by_key(|a| a.size.unwrap_or(u64::MAX));
    let mut spent = 0u64;
    for (n, a) in candidates.into_iter().enumerate() {
        let (Some(aid), Some(size)) = (a.id.as_deref(), a.size) else {
            continue;
        };
        if n >= MAX_INLINE_IMAGES || spent + size > INLINE_BUDGET {
            found.too_big.push((a.name.to_ascii_lowercase(), size));
            continue;
        }
        // The JSON answer holds the image in base64 (4/3 of it) and a little more.
        let limit = (size as usize).saturating_mul(4) / 3 + 64 * 1024;
        match mail.inline_image(token, mailbox, id, aid, limit).await {
            Ok(Some(InlineImage {
                content_id,
                content_type,
                base64,
            })) => {
                let key = cid_key(&content_id);
                if !wanted.contains(&key) {
                    continue;
                }
                let Some(t) = image_type(&content_type) else {
                    continue;
                };
                if !base64
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                {
                    continue;
                }
                spent += size;
                found.shown.insert(key, format!("data:{t};base64,{base64}"));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "an inline image could not be read");
                if matches!(e, MailError::Throttled { .. }) {
                    break;
                }
            }
        }
    }
    found
}

/// `html` with every `src="cid:…"` replaced: by the image, or by a
/// placeholder (that says the size when the image was past the budget).
fn embed(html: &str, images: &Inline) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find(CID_SRC) {
        out.push_str(&rest[..at]);
        rest = &rest[at + CID_SRC.len()..];
        let end = rest.find('"').unwrap_or(rest.len());
        let cid = cid_key(&unescape(&rest[..end]));
        // Not shown: over the budget (say how big), or not found.
        let src = match images.shown.get(&cid) {
            Some(uri) => uri.clone(),
            None => placeholder(images.size_of(&cid)),
        };
        out.push_str("src=\"");
        out.push_str(&src);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A grey box, with the image's size when it was not shown for being big.
fn placeholder(size: Option<u64>) -> String {
    match size {
        None => super::sanitize::IMAGE_PLACEHOLDER.to_owned(),
        Some(bytes) => {
            let text = format!("Image not shown: {}", super::model::readable_size(bytes));
            format!(
                "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='240' height='40'%3E%3Crect width='100%25' height='100%25' fill='%23e5e7eb'/%3E%3Ctext x='50%25' y='55%25' text-anchor='middle' font-family='sans-serif' font-size='13' fill='%23374151'%3E{}%3C/text%3E%3C/svg%3E",
                text.replace(' ', "%20")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_body_unpacks_to_itself_and_a_repetitive_one_packs_small() {
        let newsletter =
            "<tr><td class=\"item\"><a href=\"https://example.com/\">Item</a></td></tr>\n"
                .repeat(700);
        for body in [
            Rendered::Html {
                html: newsletter.clone(),
                flattened: true,
            },
            Rendered::Html {
                html: newsletter.clone(),
                flattened: false,
            },
            Rendered::Text("plain words, ünïcode and all".into()),
            Rendered::Text(String::new()),
        ] {
            let kept = Kept::pack(&body);
            assert_eq!(kept.unpack().as_ref(), Some(&body));
        }
        let kept = Kept::pack(&Rendered::Text(newsletter.clone()));
        assert!(
            kept.bytes() * 10 < newsletter.len(),
            "{} packed to {}",
            newsletter.len(),
            kept.bytes()
        );
        // Bytes that are not a packed body are a miss, not a panic.
        let broken = Kept {
            packed: vec![0xff; 16].into_boxed_slice(),
            len: 16,
            html: None,
        };
        assert_eq!(broken.unpack(), None);
    }

    #[test]
    fn cid_references_are_found_and_replaced_by_images_or_placeholders() {
        let html = r#"<p><img src="cid:Logo@01D" alt="Logo"> <img src="cid:photo.jpg@01D&amp;1"> <img src="cid:gone"></p>"#;
        assert_eq!(
            referenced(html),
            vec!["Logo@01D", "photo.jpg@01D&1", "gone"]
        );
        let images = Inline {
            shown: HashMap::from([(
                "logo@01d".to_owned(),
                "data:image/png;base64,AAAA".to_owned(),
            )]),
            too_big: vec![("photo.jpg".to_owned(), 7_300_000)],
        };
        let out = embed(html, &images);
        assert!(
            out.contains(r#"<img src="data:image/png;base64,AAAA" alt="Logo">"#),
            "{out}"
        );
        assert!(out.contains("Image%20not%20shown:%207.3%20MB"), "{out}");
        assert!(out.contains(super::super::sanitize::IMAGE_PLACEHOLDER));
        assert!(!out.contains("cid:"));
        assert_eq!(cid_key("<Image001.PNG@01D>"), "image001.png@01d");
    }

    #[test]
    fn only_raster_images_are_embedded() {
        assert_eq!(image_type("image/PNG; name=a.png"), Some("image/png"));
        assert_eq!(image_type("image/jpg"), Some("image/jpeg"));
        for no in ["image/svg+xml", "text/html", "application/octet-stream", ""] {
            assert_eq!(image_type(no), None, "{no}");
        }
    }

    /// A kept body of `n` bytes that LZ4 cannot shrink: packed, it is a
    /// little over `n` bytes.
    fn rendered(n: usize) -> Kept {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let text: String = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'!' + (state % 90) as u8)
            })
            .collect();
        let kept = Kept::pack(&Rendered::Text(text));
        assert!(kept.bytes() >= n, "packed {n} bytes to {}", kept.bytes());
        kept
    }

    fn key(m: &str) -> Key {
        Key {
            message: m.into(),
            change_key: "ck1".into(),
            remote_images: false,
        }
    }

    #[test]
    fn the_memory_of_bodies_is_per_person_and_bounded() {
        let reader = Reader::new(Arc::new(Sanitizer::new(None)));
        reader.remember("tid/adele", key("m1"), rendered(100));
        assert!(reader.recall("tid/adele", &key("m1")).is_some());
        assert!(
            reader.recall("tid/alex", &key("m1")).is_none(),
            "shared between people"
        );
        let other_change = Key {
            change_key: "ck2".into(),
            ..key("m1")
        };
        assert!(reader.recall("tid/adele", &other_change).is_none());
        let with_images = Key {
            remote_images: true,
            ..key("m1")
        };
        assert!(reader.recall("tid/adele", &with_images).is_none());
        // One person's bodies stay within their share, the oldest leave first.
        for i in 0..10 {
            reader.remember("tid/adele", key(&format!("big{i}")), rendered(1024 * 1024));
        }
        assert!(reader.kept_bytes() <= MAX_PERSON_BYTES);
        assert!(reader.recall("tid/adele", &key("big9")).is_some());
        assert!(reader.recall("tid/adele", &key("big0")).is_none());
        // Everyone's together stay within the total.
        for p in 0..20 {
            reader.remember(&format!("tid/p{p}"), key("m"), rendered(1024 * 1024));
        }
        assert!(reader.kept_bytes() <= MAX_TOTAL_BYTES);
        // A body larger than a person's share is not kept at all.
        reader.remember("tid/huge", key("m"), rendered(MAX_PERSON_BYTES));
        assert!(reader.recall("tid/huge", &key("m")).is_none());
        reader.forget("tid/p19");
        assert!(reader.recall("tid/p19", &key("m")).is_none());
    }
}
