//! The depth guard: a linear pass over a message's HTML before it reaches
//! the HTML5 tree builder, which is quadratic in some shapes an attacker can
//! email anyone:
//!
//! - every start tag checks scopes by walking the stack of open elements,
//!   so 2 MiB of `<div>` or `<ul><li>` (hundreds of thousands of levels)
//!   costs minutes;
//! - every formatting element (`<b>`, `<font>`, …) scans the list of active
//!   formatting elements, and each run of text after a block closes
//!   re-opens all of them (a few hundred `<b id=…>` and then `<div>x</div>`
//!   again and again grow the tree by that many elements per run);
//! - every attribute of a tag is compared with all earlier ones.
//!
//! So this pass keeps a cheap, conservative model of the builder (its stack
//! of open elements and its formatting list; where the model cannot tell,
//! it assumes more nesting, never less) and drops the start tags that would
//! go past [`MAX_DEPTH`] levels or [`MAX_FORMATTING`] open formatting
//! elements, and the attributes past [`MAX_ATTRIBUTES`] on one tag. Text is
//! never dropped. Real mail (Outlook's nested tables included) stays well
//! inside these limits and passes through untouched, without a copy.
//!
//! This pass is not a security boundary: what it outputs is parsed and
//! sanitized like any other body.

use std::borrow::Cow;

/// Levels of nesting kept; deeper start tags are dropped (their text stays).
pub const MAX_DEPTH: usize = 256;

/// Open formatting elements kept (per table cell, as the builder counts them).
pub const MAX_FORMATTING: usize = 24;

/// Attributes kept on one tag.
pub const MAX_ATTRIBUTES: usize = 64;

/// Elements the builder gets to make, reconstructed formatting included;
/// later start tags are dropped (their text stays). The sanitizer costs
/// about a microsecond an element: this keeps any 2 MiB body within about
/// 100 ms, and is twice what a 1 MB quoted thread needs.
pub const MAX_ELEMENTS: usize = 40_000;

/// Steps the builder may take walking its stack (scope checks of start and
/// end tags); past them, the rest of the body keeps its text and no tags.
/// An ordinary 1 MB thread takes under a tenth of it.
pub const MAX_WORK: usize = 6_000_000;

/// Formatting elements the builder may re-open in one run of text (after a
/// block closed around them); more are closed instead, so that no run of
/// text can make it insert hundreds of elements.
pub const MAX_REOPENED: usize = 8;

/// A body after the guard.
#[derive(Debug)]
pub struct Guarded<'a> {
    pub html: Cow<'a, str>,
    /// True when markup was dropped past a limit (the page says the layout
    /// was simplified). Comments, which are never shown, are dropped always.
    pub flattened: bool,
}

const VOID: u16 = 1;
const FORMATTING: u16 = 1 << 1;
/// Pushes a marker on the formatting list (cells, captions, objects).
const MARKER: u16 = 1 << 2;
/// An end tag does not close elements beyond one of these.
const BOUNDARY: u16 = 1 << 3;
/// The builder's "special" category: a formatting end tag leaves these open.
const SPECIAL: u16 = 1 << 4;
/// A start tag of this kind closes an open `<p>` on top.
const CLOSES_P: u16 = 1 << 5;
const RAWTEXT: u16 = 1 << 6;
const FOREIGN: u16 = 1 << 7;
/// Table parts: not a boundary for a table closer.
const TABLE_PART: u16 = 1 << 8;
/// `html`, `head`, `body`: never pushed.
const DOCUMENT: u16 = 1 << 9;
const HEADING: u16 = 1 << 10;
const PLAINTEXT: u16 = 1 << 11;

/// What the model knows of a tag name (compared without ASCII case).
fn kind(name: &[u8]) -> u16 {
    let mut buf = [0u8; 16];
    if name.len() > buf.len() {
        return 0;
    }
    for (b, n) in buf.iter_mut().zip(name) {
        *b = n.to_ascii_lowercase();
    }
    match &buf[..name.len()] {
        b"area" | b"base" | b"basefont" | b"bgsound" | b"embed" | b"img" | b"image" | b"input"
        | b"keygen" | b"link" | b"meta" | b"param" | b"source" | b"track" | b"wbr" | b"frame" => {
            VOID | SPECIAL
        }
        b"br" | b"col" => VOID | SPECIAL,
        b"hr" => VOID | SPECIAL | CLOSES_P,
        b"a" | b"b" | b"big" | b"code" | b"em" | b"font" | b"i" | b"nobr" | b"s" | b"small"
        | b"strike" | b"strong" | b"tt" | b"u" => FORMATTING,
        b"td" | b"th" => MARKER | BOUNDARY | SPECIAL | TABLE_PART,
        b"caption" => MARKER | BOUNDARY | SPECIAL | TABLE_PART,
        b"applet" | b"object" | b"marquee" | b"template" => MARKER | BOUNDARY | SPECIAL,
        b"html" => BOUNDARY | SPECIAL | DOCUMENT,
        b"head" | b"body" => SPECIAL | DOCUMENT,
        b"table" => BOUNDARY | SPECIAL | CLOSES_P,
        b"tr" | b"tbody" | b"thead" | b"tfoot" | b"colgroup" => SPECIAL | TABLE_PART,
        b"ol" | b"ul" => BOUNDARY | SPECIAL | CLOSES_P,
        b"button" | b"select" => BOUNDARY | SPECIAL,
        b"svg" | b"math" => BOUNDARY | FOREIGN,
        b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" => SPECIAL | CLOSES_P | HEADING,
        b"address" | b"article" | b"aside" | b"blockquote" | b"center" | b"details" | b"dialog"
        | b"dir" | b"div" | b"dl" | b"fieldset" | b"figcaption" | b"figure" | b"footer"
        | b"header" | b"hgroup" | b"main" | b"menu" | b"nav" | b"p" | b"section" | b"summary"
        | b"pre" | b"listing" | b"form" | b"search" | b"dd" | b"dt" | b"li" => SPECIAL | CLOSES_P,
        b"xmp" => SPECIAL | CLOSES_P | RAWTEXT,
        b"script" | b"style" | b"iframe" | b"noembed" | b"noframes" | b"noscript" | b"textarea"
        | b"title" => SPECIAL | RAWTEXT,
        b"plaintext" => SPECIAL | CLOSES_P | PLAINTEXT,
        b"frameset" => SPECIAL,
        _ => 0,
    }
}

/// An open element of the model: where its name is (in the input, or in
/// [`IMPLIED`] for elements the builder inserts by itself).
#[derive(Clone, Copy)]
struct Open {
    at: usize,
    len: usize,
    kind: u16,
}

/// An entry of the model's list of active formatting elements.
#[derive(Clone, Copy)]
enum Entry {
    Marker,
    Formatting {
        at: usize,
        len: usize,
        /// Its element is on the stack; when not (a block end tag popped
        /// it), the builder re-opens it before the next text.
        open: bool,
    },
}

/// Names of elements the builder inserts by itself (an [`Open`] with
/// `at == usize::MAX` has the index of its name here in `len`).
const IMPLIED: [&[u8]; 3] = [b"tbody", b"tr", b"colgroup"];

/// The model of the tree builder: its stack of open elements and its list
/// of active formatting elements, over the output so far.
struct Model<'a> {
    src: &'a [u8],
    stack: Vec<Open>,
    formatting: Vec<Entry>,
    /// Formatting entries after the last marker.
    active: usize,
    foreign: usize,
    /// Elements the builder has made so far.
    elements: usize,
    /// Stack steps the builder has walked so far (see [`MAX_WORK`]).
    work: usize,
}

impl Model<'_> {
    fn name(&self, at: usize, len: usize) -> &[u8] {
        if at == usize::MAX {
            return IMPLIED.get(len).copied().unwrap_or(b"");
        }
        &self.src[at..at + len]
    }

    fn top_is(&self, names: &[&[u8]]) -> bool {
        self.stack.last().is_some_and(|o| {
            let n = self.name(o.at, o.len);
            names.iter().any(|x| n.eq_ignore_ascii_case(x))
        })
    }

    fn pop(&mut self) {
        let Some(o) = self.stack.pop() else {
            return;
        };
        if o.kind & MARKER != 0 {
            // Closing a cell clears the formatting list up to its marker.
            while let Some(e) = self.formatting.pop() {
                if matches!(e, Entry::Marker) {
                    break;
                }
            }
            self.active = self
                .formatting
                .iter()
                .rev()
                .take_while(|e| !matches!(e, Entry::Marker))
                .count();
        }
        if o.kind & FOREIGN != 0 {
            self.foreign = self.foreign.saturating_sub(1);
        }
        if o.kind & FORMATTING != 0 {
            // Popped by another element's end tag: it stays active, closed.
            for e in self.formatting.iter_mut().rev() {
                match e {
                    Entry::Marker => break,
                    Entry::Formatting { at, open, .. } if *at == o.at => {
                        *open = false;
                        break;
                    }
                    Entry::Formatting { .. } => {}
                }
            }
        }
    }

    /// The closes the builder makes before inserting a start tag, as far as
    /// the model can be sure of them (only ever at the top of the stack).
    fn implied_closes(&mut self, name: &[u8], k: u16) {
        if k & CLOSES_P != 0 && self.top_is(&[b"p"]) {
            self.pop();
        }
        let mut buf = [0u8; 8];
        let lower: &[u8] = if name.len() <= buf.len() {
            for (b, n) in buf.iter_mut().zip(name) {
                *b = n.to_ascii_lowercase();
            }
            &buf[..name.len()]
        } else {
            b""
        };
        match lower {
            b"li" if self.top_is(&[b"li"]) => self.pop(),
            b"dd" | b"dt" if self.top_is(&[b"dd", b"dt"]) => self.pop(),
            b"option" if self.top_is(&[b"option"]) => self.pop(),
            b"optgroup" => {
                if self.top_is(&[b"option"]) {
                    self.pop();
                }
                if self.top_is(&[b"optgroup"]) {
                    self.pop();
                }
            }
            b"td" | b"th" if self.top_is(&[b"td", b"th"]) => self.pop(),
            b"tr" => {
                if self.top_is(&[b"td", b"th"]) {
                    self.pop();
                }
                if self.top_is(&[b"tr"]) {
                    self.pop();
                }
            }
            b"tbody" | b"thead" | b"tfoot" => {
                if self.top_is(&[b"td", b"th"]) {
                    self.pop();
                }
                if self.top_is(&[b"tr"]) {
                    self.pop();
                }
                if self.top_is(&[b"tbody", b"thead", b"tfoot"]) {
                    self.pop();
                }
            }
            b"rb" | b"rp" | b"rt" | b"rtc" if self.top_is(&[b"rb", b"rp", b"rt", b"rtc"]) => {
                self.pop()
            }
            _ if k & HEADING != 0 && self.top_is(&[b"h1", b"h2", b"h3", b"h4", b"h5", b"h6"]) => {
                self.pop()
            }
            b"a" => {
                // An open <a> is closed by the next one: off the list, and
                // off the stack when it is on top (else it stays: more depth).
                if let Some(i) = self.last_formatting(name) {
                    self.remove_entry(i);
                    if self.top_is(&[b"a"]) {
                        self.stack.pop();
                    }
                }
            }
            _ => {}
        }
    }

    /// The latest formatting entry named `name` after the last marker.
    fn last_formatting(&self, name: &[u8]) -> Option<usize> {
        for (i, e) in self.formatting.iter().enumerate().rev() {
            match e {
                Entry::Marker => return None,
                Entry::Formatting { at, len, .. }
                    if self.name(*at, *len).eq_ignore_ascii_case(name) =>
                {
                    return Some(i);
                }
                Entry::Formatting { .. } => {}
            }
        }
        None
    }

    fn remove_entry(&mut self, i: usize) {
        self.formatting.remove(i);
        self.active -= 1;
    }

    /// The elements the builder inserts by itself before a start tag: a row
    /// group around a row put straight in a table, and a row around a cell.
    fn implied_parents(&self, name: &[u8]) -> &'static [&'static [u8]] {
        let cell = name.eq_ignore_ascii_case(b"td") || name.eq_ignore_ascii_case(b"th");
        if self.top_is(&[b"table"]) {
            if name.eq_ignore_ascii_case(b"tr") {
                &[b"tbody"]
            } else if cell {
                &[b"tbody", b"tr"]
            } else if name.eq_ignore_ascii_case(b"col") {
                &[b"colgroup"]
            } else {
                &[]
            }
        } else if cell && self.top_is(&[b"tbody", b"thead", b"tfoot"]) {
            &[b"tr"]
        } else {
            &[]
        }
    }

    /// A start tag: `false` when it must be dropped.
    fn start(&mut self, at: usize, len: usize, self_closing: bool) -> bool {
        let name = &self.src[at..at + len];
        let k = kind(name);
        if k & DOCUMENT != 0 {
            return true;
        }
        if self.elements >= MAX_ELEMENTS || self.work > MAX_WORK {
            return false;
        }
        // Scope checks ("is there a p in button scope?") walk the stack.
        self.work += self.stack.len();
        self.implied_closes(name, k);
        let implied = self.implied_parents(name);
        let pushes = implied.len() + usize::from(k & VOID == 0);
        if self.stack.len() + pushes > MAX_DEPTH {
            return false;
        }
        if k & FORMATTING != 0 && self.active >= MAX_FORMATTING {
            return false;
        }
        for name in implied {
            self.stack.push(Open {
                at: usize::MAX,
                len: IMPLIED.iter().position(|n| n == name).unwrap_or(0),
                kind: kind(name),
            });
        }
        self.elements += 1 + implied.len();
        if k & VOID != 0 || (self_closing && self.foreign > 0) {
            return true;
        }
        if k & FORMATTING != 0 {
            self.formatting.push(Entry::Formatting {
                at,
                len,
                open: true,
            });
            self.active += 1;
        }
        if k & MARKER != 0 {
            self.formatting.push(Entry::Marker);
            self.active = 0;
        }
        if k & FOREIGN != 0 {
            self.foreign += 1;
        }
        self.stack.push(Open { at, len, kind: k });
        true
    }

    /// An end tag: `false` when it must be dropped (past [`MAX_WORK`]).
    fn end(&mut self, name: &[u8]) -> bool {
        if self.work > MAX_WORK {
            return false;
        }
        let k = kind(name);
        if k & DOCUMENT != 0 {
            return true;
        }
        // Table closers look in "table scope" (only html, table and template
        // stop them); every other end tag stops at any boundary.
        let table_scope = k & TABLE_PART != 0 || name.eq_ignore_ascii_case(b"table");
        let mut found = None;
        let mut only_plain_above = true;
        for (i, o) in self.stack.iter().enumerate().rev() {
            self.work += 1;
            let open = self.name(o.at, o.len);
            if open.eq_ignore_ascii_case(name) {
                found = Some(i);
                break;
            }
            let blocks = if table_scope {
                [&b"html"[..], b"table", b"template"]
                    .iter()
                    .any(|t| open.eq_ignore_ascii_case(t))
            } else {
                o.kind & BOUNDARY != 0
            };
            if blocks {
                return true;
            }
            if o.kind & SPECIAL != 0 {
                only_plain_above = false;
            }
        }
        if k & FORMATTING != 0 {
            if let Some(i) = self.last_formatting(name) {
                self.remove_entry(i);
            }
            match found {
                // No block in between: the builder pops down to it.
                Some(i) if only_plain_above => {
                    while self.stack.len() > i {
                        self.pop();
                    }
                }
                // A block in between: the formatting element alone leaves.
                Some(i) => {
                    self.stack.remove(i);
                }
                None => {}
            }
            return true;
        }
        if let Some(i) = found {
            while self.stack.len() > i {
                self.pop();
            }
        }
        true
    }

    /// Text is about to be inserted: the builder first re-opens every
    /// active formatting element that a block closed. Up to
    /// [`MAX_REOPENED`] of them (within the other limits) it may; the rest
    /// are closed instead by the end tags returned (one for a formatting element not
    /// on the stack takes it off the list and nothing else), so that no run
    /// of text makes the builder insert more than a few elements.
    fn text(&mut self) -> Option<String> {
        let closed: Vec<usize> = self
            .formatting
            .iter()
            .enumerate()
            .rev()
            .take_while(|(_, e)| !matches!(e, Entry::Marker))
            .filter(|(_, e)| matches!(e, Entry::Formatting { open: false, .. }))
            .map(|(i, _)| i)
            .collect();
        if closed.is_empty() {
            return None;
        }
        let room = closed.len() <= MAX_REOPENED
            && self.stack.len() + closed.len() <= MAX_DEPTH
            && self.elements + closed.len() <= MAX_ELEMENTS;
        if room {
            for &i in closed.iter().rev() {
                if let Entry::Formatting { at, len, open } = &mut self.formatting[i] {
                    *open = true;
                    let (at, len) = (*at, *len);
                    self.stack.push(Open {
                        at,
                        len,
                        kind: FORMATTING,
                    });
                }
            }
            self.elements += closed.len();
            return None;
        }
        let mut out = String::new();
        for i in closed {
            if let Entry::Formatting { at, len, .. } = self.formatting[i] {
                out.push_str("</");
                out.push_str(&String::from_utf8_lossy(self.name(at, len)));
                out.push('>');
                self.remove_entry(i);
            }
        }
        Some(out)
    }

    /// True when text now would make the builder re-open formatting.
    fn reopens(&self) -> bool {
        self.formatting
            .iter()
            .rev()
            .take_while(|e| !matches!(e, Entry::Marker))
            .any(|e| matches!(e, Entry::Formatting { open: false, .. }))
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// A tag's extent, as the HTML tokenizer reads it.
struct Tag {
    name_at: usize,
    name_len: usize,
    /// Index just past `>` (or the input's end).
    end: usize,
    self_closing: bool,
    /// Where to cut to keep [`MAX_ATTRIBUTES`] attributes, when there are more.
    cut: Option<usize>,
}

/// Reads a tag from `i` (just past `<` or `</`): its name, then its
/// attributes (quoted values may hold `>`), to the closing `>`.
fn read_tag(b: &[u8], mut i: usize) -> Tag {
    let name_at = i;
    while i < b.len() && !is_space(b[i]) && b[i] != b'/' && b[i] != b'>' {
        i += 1;
    }
    let name_len = i - name_at;
    let mut attributes = 0;
    let mut cut = None;
    let mut self_closing = false;
    loop {
        while i < b.len() && (is_space(b[i]) || b[i] == b'/') {
            self_closing = b[i] == b'/';
            i += 1;
        }
        if i >= b.len() {
            return Tag {
                name_at,
                name_len,
                end: b.len(),
                self_closing: false,
                cut,
            };
        }
        if b[i] == b'>' {
            return Tag {
                name_at,
                name_len,
                end: i + 1,
                self_closing,
                cut,
            };
        }
        self_closing = false;
        // An attribute: its name (a leading `=` belongs to it), then maybe a value.
        if attributes == MAX_ATTRIBUTES && cut.is_none() {
            cut = Some(i);
        }
        attributes += 1;
        i += 1;
        while i < b.len() && !is_space(b[i]) && !matches!(b[i], b'/' | b'>' | b'=') {
            i += 1;
        }
        let mut j = i;
        while j < b.len() && is_space(b[j]) {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' {
            j += 1;
            while j < b.len() && is_space(b[j]) {
                j += 1;
            }
            match b.get(j) {
                Some(&q @ (b'"' | b'\'')) => {
                    j += 1;
                    while j < b.len() && b[j] != q {
                        j += 1;
                    }
                    j = (j + 1).min(b.len());
                }
                Some(_) => {
                    while j < b.len() && !is_space(b[j]) && b[j] != b'>' {
                        j += 1;
                    }
                }
                None => {}
            }
            i = j;
        }
    }
}

/// Where raw text that started at `from` ends: the start of `</name`
/// followed by a space, `/` or `>` (or the input's end).
fn raw_text_end(b: &[u8], from: usize, name: &[u8]) -> usize {
    let mut i = from;
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        let at = i + off;
        let n = at + 2 + name.len();
        if b.get(at + 1) == Some(&b'/')
            && n <= b.len()
            && b[at + 2..n].eq_ignore_ascii_case(name)
            && b.get(n)
                .is_none_or(|&c| is_space(c) || c == b'/' || c == b'>')
        {
            return at;
        }
        i = at + 1;
    }
    b.len()
}

/// The body with what would make the tree builder slow dropped, and its
/// comments (never shown); borrowed (no copy) when there was nothing to drop.
pub fn guard(html: &str) -> Guarded<'_> {
    let b = html.as_bytes();
    let mut model = Model {
        src: b,
        stack: Vec::new(),
        formatting: Vec::new(),
        active: 0,
        foreign: 0,
        elements: 0,
        work: 0,
    };
    let mut out: Option<String> = None;
    let mut flattened = false;
    // Input bytes up to here are already in `out`.
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        let lt = b[i..]
            .iter()
            .position(|&c| c == b'<')
            .map_or(b.len(), |o| i + o);
        if lt > i
            && model.reopens()
            && let Some(closes) = model.text()
        {
            edit(&mut out, &mut copied, html, i).push_str(&closes);
            flattened = true;
        }
        if lt >= b.len() {
            break;
        }
        let next = b.get(lt + 1).copied();
        match next {
            Some(b'!') if model.foreign > 0 && b[lt..].starts_with(b"<![CDATA[") => {
                // Text in foreign content.
                if model.reopens()
                    && let Some(closes) = model.text()
                {
                    edit(&mut out, &mut copied, html, lt).push_str(&closes);
                    flattened = true;
                }
                i = find(b, lt + 9, b"]]>").map_or(b.len(), |e| e + 3);
            }
            Some(b'/') if b.get(lt + 2).is_some_and(u8::is_ascii_alphabetic) => {
                let tag = read_tag(b, lt + 2);
                if !model.end(&b[tag.name_at..tag.name_at + tag.name_len]) {
                    edit(&mut out, &mut copied, html, lt);
                    copied = tag.end;
                    flattened = true;
                }
                i = tag.end;
            }
            Some(b'!' | b'?' | b'/') => {
                // A comment, a doctype or a bogus comment: never shown, dropped.
                let end = if b[lt..].starts_with(b"<!--") {
                    // `<!-->` and `<!--->` end at once, as in the tokenizer.
                    let body = lt + 4;
                    if b.get(body) == Some(&b'>') {
                        body + 1
                    } else if b[body..].starts_with(b"->") {
                        body + 2
                    } else {
                        find(b, body, b"-->").map_or(b.len(), |e| e + 3)
                    }
                } else if next == Some(b'/') && b.get(lt + 2) == Some(&b'>') {
                    lt + 3
                } else {
                    find(b, lt + 2, b">").map_or(b.len(), |e| e + 1)
                };
                edit(&mut out, &mut copied, html, lt);
                copied = end;
                i = end;
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let tag = read_tag(b, lt + 1);
                let name = &b[tag.name_at..tag.name_at + tag.name_len];
                let k = kind(name);
                if !model.start(tag.name_at, tag.name_len, tag.self_closing) {
                    edit(&mut out, &mut copied, html, lt);
                    copied = tag.end;
                    flattened = true;
                    i = tag.end;
                    continue;
                }
                if let Some(cut) = tag.cut {
                    edit(&mut out, &mut copied, html, cut).push('>');
                    copied = tag.end;
                    flattened = true;
                }
                i = tag.end;
                // Raw text follows an HTML element's start tag (`<script/>`
                // included: self-closing means nothing on HTML elements).
                if model.foreign == 0 {
                    if k & PLAINTEXT != 0 {
                        break;
                    }
                    if k & RAWTEXT != 0 {
                        i = raw_text_end(b, i, name);
                    }
                }
            }
            // A `<` that starts no tag is text.
            _ => {
                if model.reopens()
                    && let Some(closes) = model.text()
                {
                    edit(&mut out, &mut copied, html, lt).push_str(&closes);
                    flattened = true;
                }
                i = lt + 1;
            }
        }
    }
    match out {
        None => Guarded {
            html: Cow::Borrowed(html),
            flattened,
        },
        Some(mut o) => {
            o.push_str(&html[copied.min(html.len())..]);
            Guarded {
                html: Cow::Owned(o),
                flattened,
            }
        }
    }
}

/// Copies the input up to `from` into the output (made on first use), and
/// returns the output to append to.
fn edit<'o>(
    out: &'o mut Option<String>,
    copied: &mut usize,
    html: &str,
    from: usize,
) -> &'o mut String {
    let o = out.get_or_insert_with(|| String::with_capacity(html.len()));
    o.push_str(&html[*copied..from]);
    *copied = from;
    o
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from >= b.len() {
        return None;
    }
    b[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Bodies of about `size` bytes in every shape known to be slow for an
/// HTML5 tree builder, by name: the corpus the tests and the sanitize
/// benchmark run at the 2 MiB cap.
pub fn pathological(size: usize) -> Vec<(&'static str, String)> {
    let rep = |unit: &str| unit.repeat(size / unit.len() + 1);
    let mut reconstruct: String = (0..40).map(|i| format!("<div><b id={i}>")).collect();
    reconstruct.push_str(&"</div>".repeat(40));
    reconstruct.push_str(&"<div>x</div>".repeat(size / 12));
    let mut walk = "<div>".repeat(MAX_DEPTH - 1);
    walk.push_str(&rep("</b><div>"));
    vec![
        ("nested div", rep("<div>")),
        ("ul/li", rep("<ul><li>")),
        ("nested table", rep("<table><tr><td>")),
        ("formatting", rep("<b><i><u><font>")),
        (
            "formatting, distinct",
            (0..size / 12).map(|i| format!("<b id={i}>")).collect(),
        ),
        ("formatting re-opened", reconstruct),
        ("unclosed p", rep("<p>x")),
        ("select", rep("<select><option>x")),
        ("inline svg", rep("<svg><g><path d=m0>")),
        ("comments", rep("<!-- comment -->x")),
        (
            "long attribute",
            format!("<p title=\"{}\">x</p>", "a".repeat(size)),
        ),
        (
            "many attributes",
            format!(
                "<p {}>x</p>",
                (0..size / 10)
                    .map(|i| format!("a{i}=1 "))
                    .collect::<String>()
            ),
        ),
        ("flat divs", rep("<div>x</div>")),
        ("deep stack, stray end tags", walk),
        ("misnested", rep("<b><div>")),
        ("links", rep("<a href=https://x.example/>x")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deepest nesting of elements in well-formed HTML (the sanitizer's
    /// output), counting void elements as leaves.
    pub(crate) fn nesting(html: &str) -> usize {
        let (mut depth, mut deepest) = (0usize, 0usize);
        let mut rest = html;
        while let Some(lt) = rest.find('<') {
            rest = &rest[lt + 1..];
            let end = rest.find('>').unwrap_or(rest.len());
            let tag = &rest[..end];
            if let Some(name) = tag.strip_prefix('/') {
                let _ = name;
                depth = depth.saturating_sub(1);
            } else if !tag.starts_with('!') {
                let name = tag.split([' ', '/']).next().unwrap_or("");
                if kind(name.as_bytes()) & VOID == 0 {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
            }
            rest = &rest[end.min(rest.len())..];
        }
        deepest
    }

    fn untouched(html: &str) {
        let g = guard(html);
        assert!(!g.flattened, "changed: {html}");
        assert!(matches!(g.html, Cow::Borrowed(_)));
    }

    #[test]
    fn ordinary_mail_passes_untouched_without_a_copy() {
        untouched("<p>Hi,</p><p>see <b>this</b> and <a href=\"https://x\">that</a>.</p>");
        untouched(&crate::demo::bodies::newsletter(
            "https://x.example",
            "M1",
            "News",
        ));
        untouched(&crate::demo::bodies::long_thread(256 * 1024));
        untouched(&crate::demo::bodies::hostile("https://x.example", "M2"));
        // Sloppy but common: unclosed paragraphs, list items, cells and rows.
        untouched(&"<p>para".repeat(5_000));
        untouched(&format!("<ul>{}</ul>", "<li>item".repeat(5_000)));
        untouched(&format!(
            "<table>{}</table>",
            "<tr><td>a<td>b<td>c".repeat(5_000)
        ));
        untouched(&"<b><span>x</b>".repeat(5_000));
        untouched(&"<dl><dt>a<dd>b</dl>".repeat(2_000));
        untouched(&"<select><option>a<option>b</select>".repeat(2_000));
        // Outlook's nested layout tables, 40 deep.
        untouched(&format!(
            "{}x{}",
            "<table><tr><td><div><font>".repeat(40),
            "</font></div></td></tr></table>".repeat(40)
        ));
    }

    #[test]
    fn deep_nesting_is_cut_at_the_limit_and_its_text_kept() {
        let sanitizer = super::super::sanitize::Sanitizer::new(None);
        for unit in [
            "<div>",
            "<ul><li>",
            "<table><tr><td>",
            "<table><td>",
            "<blockquote>",
            "<span>",
            "<div/>",
        ] {
            let html = format!("{}deep text", unit.repeat(20_000));
            let g = guard(&html);
            assert!(g.flattened, "{unit}");
            assert!(g.html.ends_with("deep text"), "{unit}");
            let out = sanitizer.clean(&html, false).html;
            assert!(out.contains("deep text"), "{unit}");
            let depth = nesting(&out);
            assert!(depth <= MAX_DEPTH, "{unit}: {depth} deep");
            assert!(depth >= MAX_DEPTH - 4, "{unit}: cut at {depth}, too early");
        }
    }

    #[test]
    fn formatting_elements_are_capped_even_with_distinct_attributes() {
        let html: String = (0..5_000).map(|i| format!("<b id=\"{i}\">")).collect();
        let g = guard(&html);
        assert!(g.flattened);
        assert_eq!(g.html.matches("<b ").count(), MAX_FORMATTING);
        // Formatting left open across blocks (the builder re-opens them in
        // every later run of text) counts until its own end tag.
        let mut bomb: String = (0..100).map(|i| format!("<div><b id={i}>")).collect();
        bomb.push_str(&"</div>".repeat(100));
        bomb.push_str(&"<div>x</div>".repeat(1_000));
        let g = guard(&bomb);
        assert_eq!(g.html.matches("<b ").count(), MAX_FORMATTING);
        // Closed formatting does not count.
        untouched(&"<b>bold</b> <i>it</i> ".repeat(10_000));
    }

    #[test]
    fn comments_doctypes_and_bogus_comments_are_dropped_and_nothing_else() {
        for (html, kept) in [
            ("a<!-- c -->b", "ab"),
            ("a<!-->b", "ab"),
            ("a<!--->b", "ab"),
            ("a<!-- unclosed", "a"),
            ("<!DOCTYPE html><p>x</p>", "<p>x</p>"),
            ("<?xml version=\"1.0\"?><p>x</p>", "<p>x</p>"),
            ("a</>b</3c>d", "abd"),
            (
                "<!--[if gte mso 9]><xml><o:x/></xml><![endif]--><p>x</p>",
                "<p>x</p>",
            ),
            ("1 < 2 <3 <", "1 < 2 <3 <"),
        ] {
            let g = guard(html);
            assert_eq!(g.html, kept, "{html}");
            assert!(!g.flattened, "{html}");
        }
    }

    #[test]
    fn formatting_closed_by_a_block_is_reopened_by_a_few_elements_at_most() {
        // The reconstruction bomb: formatting left open inside blocks, then
        // many runs of text, each of which would re-open all of it.
        let mut bomb: String = (0..20).map(|i| format!("<div><b id={i}>")).collect();
        bomb.push_str(&"</div>".repeat(20));
        bomb.push_str(&"<div>x</div>".repeat(5_000));
        let out = super::super::sanitize::Sanitizer::new(None)
            .clean(&bomb, false)
            .html;
        assert!(
            out.matches("<b").count() <= 20 + MAX_REOPENED,
            "{}",
            out.matches("<b").count()
        );
        assert_eq!(out.matches('x').count(), 5_000);
        // A few (sloppy but real) are still re-opened as a browser would.
        untouched("<div><b>bold</div>still bold</b>");
        let out = super::super::sanitize::Sanitizer::new(None)
            .clean("<div><b>bold</div>still bold</b>", false)
            .html;
        assert_eq!(out, "<div><b>bold</b></div><b>still bold</b>");
    }

    #[test]
    fn a_body_of_more_elements_than_the_budget_keeps_its_text() {
        let html = "<p>x".repeat(MAX_ELEMENTS * 2);
        let g = guard(&html);
        assert!(g.flattened);
        assert_eq!(g.html.matches("<p>").count(), MAX_ELEMENTS);
        assert_eq!(g.html.matches('x').count(), MAX_ELEMENTS * 2);
    }

    #[test]
    fn end_tags_that_walk_a_deep_stack_in_vain_are_bounded() {
        let mut html = "<div>".repeat(MAX_DEPTH - 1);
        html.push_str(&"</b>x</i>y".repeat(100_000));
        let g = guard(&html);
        assert!(g.flattened);
        assert_eq!(g.html.matches('x').count(), 100_000);
        assert!(g.html.matches("</").count() < 2 * MAX_WORK / (MAX_DEPTH - 1));
    }

    #[test]
    fn a_table_cell_starts_its_own_formatting_count() {
        let row = format!("<tr><td>{}x</td></tr>", "<font>".repeat(10));
        untouched(&format!("<table>{}</table>", row.repeat(500)));
    }

    #[test]
    fn attributes_past_the_limit_are_dropped() {
        let attrs: String = (0..1_000).map(|i| format!(" a{i}=\"1\"")).collect();
        let html = format!("<p{attrs}>text</p>");
        let g = guard(&html);
        assert!(g.flattened);
        assert_eq!(g.html.matches("=\"1\"").count(), MAX_ATTRIBUTES);
        assert!(
            g.html.ends_with(">text</p>"),
            "{}",
            &g.html[g.html.len() - 20..]
        );
        untouched(&format!("<p title=\"{}\">x</p>", "a".repeat(100_000)));
    }

    #[test]
    fn markup_inside_quotes_comments_and_raw_text_is_not_counted() {
        untouched(&format!("<p title=\"{}\">x</p>", "<div>".repeat(1_000)));
        untouched(&format!("<p title='{}'>x</p>", "<div>".repeat(1_000)));
        let html = format!("<!-- {} -->x", "<div>".repeat(1_000));
        let g = guard(&html);
        assert!(!g.flattened);
        assert_eq!(g.html, "x");
        untouched(&format!("<script>{}</script>x", "<div>".repeat(1_000)));
        untouched(&format!("<style>{}</style>x", "<div>".repeat(1_000)));
        untouched(&format!("<textarea>{}</textarea>x", "<div>".repeat(1_000)));
        untouched(&format!("<title>{}</title>x", "<div>".repeat(1_000)));
        // ...but once raw text ends, tags count again.
        let html = format!("<script></script>{}", "<div>".repeat(1_000));
        let g = guard(&html);
        assert!(g.flattened);
    }

    #[test]
    fn end_tags_do_not_reach_past_a_boundary() {
        // `</div>` inside a cell does not close the div around the table, so
        // this nests deeper with every repetition.
        let html = "<div><table><tr><td></div>".repeat(2_000);
        assert!(guard(&html).flattened);
        // A formatting end tag across a block leaves the block open.
        let html = "<b><div></b>".repeat(2_000);
        let g = guard(&html);
        assert!(g.flattened);
    }

    #[test]
    fn pathological_bodies_at_the_cap_come_out_within_the_limits() {
        let sanitizer = super::super::sanitize::Sanitizer::new(None);
        let mut shapes = pathological(2 * 1024 * 1024);
        shapes.push(("div in cell", "<div><table><tr><td></div>".repeat(10_000)));
        shapes.push(("b across div", "<b><div></b>".repeat(20_000)));
        for (name, html) in shapes {
            let out = sanitizer.clean(&html, false).html;
            let depth = nesting(&out);
            assert!(depth <= MAX_DEPTH + MAX_FORMATTING, "{name}: {depth} deep");
            let tags = out.matches('<').count();
            assert!(
                tags <= 2 * (MAX_ELEMENTS + MAX_FORMATTING * MAX_REOPENED) + 2 * MAX_DEPTH,
                "{name}: {tags} tags"
            );
        }
    }
}
