//! The body policy: an email's HTML is written by a stranger.
//!
//! Bodies pass an allow-list sanitizer (ammonia, built on html5ever: the same
//! parser a browser uses, so what it keeps is what a browser would see). The
//! policy, in short:
//! - only formatting tags survive (text, lists, tables, images, links); no
//!   script, style sheet, form, frame, object, embed, SVG, `base` or `meta`,
//!   and no event handler or other attribute outside the allow-list;
//! - links keep only `http`, `https` and `mailto` targets and open in a new
//!   tab with `rel="noopener noreferrer"`;
//! - inline `style` keeps only layout and colour properties (nothing that can
//!   hold a `url()`, such as `background` or `list-style-image`);
//! - images: `data:` images stay; `cid:` ones (inline attachments, part of
//!   the message) stay for [`super::reader`] to embed as `data:` URIs; remote
//!   images, unless the reader asked for them, become a placeholder, so no
//!   tracking pixel is fetched behind the reader's back.
//!
//! The page that shows the result is a sandboxed frame with its own
//! Content-Security-Policy (`default-src 'none'`), so even a sanitizer bypass
//! cannot run script or reach another host.

use std::borrow::Cow;

/// Shown instead of an image that is not loaded: a grey box with a small
/// picture icon. It has no size of its own, so it takes the box the image
/// would have had (its `width` and `height`).
pub const IMAGE_PLACEHOLDER: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'%3E%3Crect width='100%25' height='100%25' fill='%23e5e7eb'/%3E%3Csvg x='50%25' y='50%25' overflow='visible'%3E%3Cpath transform='translate(-12 -9)' d='M0 18l7-9 5 6 4-4 8 7z' fill='%239ca3af'/%3E%3C/svg%3E%3C/svg%3E";

/// CSS properties an inline `style` may keep: none of them takes a URL.
pub const STYLE_PROPERTIES: &[&str] = &[
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "line-height",
    "letter-spacing",
    "text-align",
    "text-decoration",
    "text-transform",
    "text-indent",
    "white-space",
    "vertical-align",
    "margin",
    "margin-top",
    "margin-right",
    "margin-bottom",
    "margin-left",
    "padding",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-color",
    "border-style",
    "border-width",
    "border-collapse",
    "border-spacing",
    "border-radius",
    "width",
    "max-width",
    "min-width",
    "height",
    "max-height",
    "min-height",
    "display",
    "direction",
];

/// The two policies (remote images shown or not), built once.
pub struct Sanitizer {
    blocking: ammonia::Builder<'static>,
    showing: ammonia::Builder<'static>,
}

/// What sanitizing found, for the page around the body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub html: String,
    /// The body was nested deeper than is shown, and its layout simplified
    /// (see [`super::depth`]).
    pub flattened: bool,
}

impl Sanitizer {
    /// `extra_image_origin`: an http origin whose images count as remote
    /// images too (the demo stand-in's, which is not https).
    pub fn new(extra_image_origin: Option<String>) -> Self {
        Self {
            blocking: builder(false, None),
            showing: builder(true, extra_image_origin),
        }
    }

    /// The body made safe; `remote_images` keeps `https:` images.
    pub fn clean(&self, html: &str, remote_images: bool) -> Cleaned {
        let policy = if remote_images {
            &self.showing
        } else {
            &self.blocking
        };
        let guarded = super::depth::guard(html);
        // Serialized straight into the answer's buffer (ammonia's Display
        // goes through a second buffer).
        let mut out = Vec::with_capacity(guarded.html.len() + guarded.html.len() / 4);
        let html = match policy.clean(&guarded.html).write_to(&mut out) {
            Ok(()) => String::from_utf8(out)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            Err(_) => String::new(),
        };
        Cleaned {
            html,
            flattened: guarded.flattened,
        }
    }
}

fn builder(remote_images: bool, extra_origin: Option<String>) -> ammonia::Builder<'static> {
    let mut b = ammonia::Builder::default();
    b.add_tags(["font", "center", "big"])
        .add_generic_attributes(["style", "align", "dir"])
        .add_tag_attributes(
            "table",
            ["width", "border", "cellpadding", "cellspacing", "bgcolor"],
        )
        .add_tag_attributes("td", ["width", "height", "valign", "bgcolor", "nowrap"])
        .add_tag_attributes("th", ["width", "height", "valign", "bgcolor", "nowrap"])
        .add_tag_attributes("tr", ["valign", "bgcolor"])
        .add_tag_attributes("font", ["color", "size", "face"])
        .url_schemes(
            ["http", "https", "mailto", "data", "cid"]
                .into_iter()
                .collect(),
        )
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .strip_comments(true)
        .attribute_filter(move |element, attribute, value| {
            let extra = extra_origin
                .as_deref()
                .is_some_and(|o| value.starts_with(o) && value[o.len()..].starts_with('/'));
            filter(element, attribute, value, remote_images, extra)
        });
    b
}

/// Per-attribute rules the allow-lists cannot express.
fn filter<'u>(
    element: &str,
    attribute: &str,
    value: &'u str,
    remote_images: bool,
    extra_origin: bool,
) -> Option<Cow<'u, str>> {
    let scheme = value
        .trim_start()
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase());
    match (element, attribute) {
        // Links only to the web and to mail addresses (no data:, no cid:).
        ("a", "href") => match scheme.as_deref() {
            Some("http" | "https" | "mailto") => Some(Cow::Borrowed(value)),
            _ => None,
        },
        ("img", "src") => match scheme.as_deref() {
            Some("data")
                if value
                    .trim_start()
                    .get(5..)
                    .is_some_and(|rest| rest.trim_start().starts_with("image/")) =>
            {
                Some(Cow::Borrowed(value))
            }
            // An inline attachment: the reader embeds it (or a placeholder).
            Some("cid") => Some(Cow::Borrowed(value.trim())),
            Some("https") if remote_images => Some(Cow::Borrowed(value)),
            Some("http") if remote_images && extra_origin => Some(Cow::Borrowed(value)),
            // Remote images not asked for, and plain http (which the frame's
            // policy would refuse anyway).
            _ => Some(Cow::Borrowed(IMAGE_PLACEHOLDER)),
        },
        (_, "style") => style(value),
        // Any other URL-bearing attribute that made it through the allow-list.
        (_, "cite" | "background" | "srcset" | "poster") => None,
        _ => Some(Cow::Borrowed(value)),
    }
}

/// An inline `style` with only the allowed properties, each with a value
/// that can reach nothing (no `url(`, `image(`, `expression(`…, no escape
/// or comment that could hide one). Borrowed, without an allocation, when
/// every declaration stays as it is (the common case).
fn style(value: &str) -> Option<Cow<'_, str>> {
    fn allowed(declaration: &str) -> Option<(&str, &str)> {
        let (name, v) = declaration.split_once(':')?;
        let (name, v) = (name.trim(), v.trim());
        let known = STYLE_PROPERTIES
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name));
        let lower_has = |needle: &str| {
            v.as_bytes()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        };
        let safe = !v.is_empty()
            && !v.contains(['\\', '<', '>', '{', '}', '@'])
            && !v.contains("/*")
            && ![
                "url(",
                "image(",
                "image-set(",
                "expression(",
                "element(",
                "src(",
            ]
            .iter()
            .any(|f| lower_has(f));
        (known && safe).then_some((name, v))
    }
    let declarations = value.split(';').filter(|d| !d.trim().is_empty());
    if declarations.clone().all(|d| allowed(d).is_some()) {
        return (!value.trim().is_empty()).then_some(Cow::Borrowed(value));
    }
    let kept: Vec<String> = declarations
        .filter_map(allowed)
        .map(|(n, v)| format!("{}:{v}", n.to_ascii_lowercase()))
        .collect();
    (!kept.is_empty()).then(|| Cow::Owned(kept.join(";")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(html: &str) -> String {
        Sanitizer::new(None).clean(html, false).html
    }

    /// Each vector of the hostile corpus, by name: what must not survive.
    const HOSTILE: &[(&str, &str, &[&str])] = &[
        (
            "script element",
            "<p>hi</p><script>alert(1)</script>",
            &["<script", "alert"],
        ),
        (
            "event handler",
            "<img src=x onerror=alert(1)>",
            &["onerror", "alert"],
        ),
        (
            "javascript link",
            "<a href=\"javascript:alert(1)\">x</a>",
            &["javascript"],
        ),
        (
            "javascript link, entity-encoded",
            "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
            &["ascript:", "alert"],
        ),
        (
            "data: link",
            "<a href=\"data:text/html,<script>alert(1)</script>\">x</a>",
            &["data:text", "alert"],
        ),
        (
            "form",
            "<form action=https://evil.example/><input name=p><button>Go</button></form>",
            &["<form", "<input", "<button", "evil.example"],
        ),
        (
            "iframe",
            "<iframe src=https://evil.example/></iframe>",
            &["<iframe", "evil.example"],
        ),
        (
            "object and embed",
            "<object data=x.swf></object><embed src=x.swf>",
            &["<object", "<embed", "swf"],
        ),
        (
            "base",
            "<base href=https://evil.example/><a href=/x>x</a>",
            &["<base", "evil.example"],
        ),
        (
            "meta refresh",
            "<meta http-equiv=refresh content=\"0;url=https://evil.example/\">",
            &["<meta", "evil.example"],
        ),
        (
            "svg onload",
            "<svg onload=alert(1)><circle r=1 /></svg>",
            &["<svg", "onload", "alert"],
        ),
        (
            "style element",
            "<style>body{background:url(https://tracker.example/p.gif)}</style>",
            &["<style", "tracker.example"],
        ),
        (
            "css url() in style",
            "<p style=\"background-image:url(https://tracker.example/p.gif);color:red\">x</p>",
            &["tracker.example", "url("],
        ),
        (
            "tracking pixel",
            "<img src=\"https://tracker.example/open.gif?u=1\" width=1 height=1>",
            &["tracker.example"],
        ),
        (
            "link element",
            "<link rel=stylesheet href=https://tracker.example/s.css>",
            &["<link", "tracker.example"],
        ),
        (
            "table background",
            "<table background=\"https://tracker.example/b.gif\"><tr><td>x</td></tr></table>",
            &["tracker.example"],
        ),
        (
            "mutation XSS via noscript",
            "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
            &["onerror"],
        ),
        (
            "vbscript link",
            "<a href=\"vbscript:msgbox(1)\">x</a>",
            &["vbscript"],
        ),
        ("relative link", "<a href=\"/signout\">x</a>", &["/signout"]),
    ];

    #[test]
    fn the_hostile_corpus_is_defused() {
        for (name, html, forbidden) in HOSTILE {
            let out = clean(html);
            for f in *forbidden {
                assert!(
                    !out.to_ascii_lowercase().contains(&f.to_ascii_lowercase()),
                    "{name}: `{f}` survived in {out}"
                );
            }
        }
    }

    #[test]
    fn links_open_in_a_new_tab_without_an_opener() {
        let out = clean("<a href=\"https://contoso.com/a?b=1\">x</a>");
        assert_eq!(
            out,
            "<a href=\"https://contoso.com/a?b=1\" target=\"_blank\" rel=\"noopener noreferrer\">x</a>"
        );
        assert!(
            clean("<a href=\"mailto:ann@contoso.com\">x</a>").contains("mailto:ann@contoso.com")
        );
    }

    #[test]
    fn newsletters_keep_tables_and_safe_inline_styles() {
        let out = clean(
            "<table width=\"600\" cellpadding=\"4\"><tr><td style=\"color:#333;padding:8px;position:fixed\" align=\"center\">Hi</td></tr></table>",
        );
        assert!(out.contains("width=\"600\""), "{out}");
        assert!(out.contains("color:#333"), "{out}");
        assert!(out.contains("padding:8px"), "{out}");
        assert!(!out.contains("position"), "{out}");
    }

    #[test]
    fn remote_images_become_placeholders_unless_asked_and_cid_ones_stay_for_the_reader() {
        let s = Sanitizer::new(None);
        let html = "<img src=\"https://cdn.contoso.com/logo.png\" alt=\"Logo\"><img src=\" cid:image001.png@01D\"><img src=\"http://cdn.contoso.com/plain.png\">";
        let blocked = s.clean(html, false).html;
        assert!(!blocked.contains("cdn.contoso.com"), "{blocked}");
        assert_eq!(blocked.matches(IMAGE_PLACEHOLDER).count(), 2);
        assert!(
            blocked.contains("src=\"cid:image001.png@01D\""),
            "{blocked}"
        );
        assert!(blocked.contains("alt=\"Logo\""));
        let shown = s.clean(html, true).html;
        assert!(
            shown.contains("https://cdn.contoso.com/logo.png"),
            "{shown}"
        );
        // Plain http is never loaded, asked or not (only the demo's own origin is).
        assert!(!shown.contains("http://cdn.contoso.com"), "{shown}");
        assert!(shown.contains("src=\"cid:image001.png@01D\""), "{shown}");
        let demo = Sanitizer::new(Some("http://127.0.0.1:8000".into()));
        let own = demo
            .clean("<img src=\"http://127.0.0.1:8000/_demo/images/hero.svg\"><img src=\"http://127.0.0.1:8000.evil/x\">", true)
            .html;
        assert!(
            own.contains("http://127.0.0.1:8000/_demo/images/hero.svg"),
            "{own}"
        );
        assert!(!own.contains(".evil"), "{own}");
    }

    #[test]
    fn inline_data_images_stay_but_other_data_does_not() {
        let out = clean(
            "<img src=\"data:image/png;base64,iVBORw0KGgo=\"><img src=\"data:text/html;base64,PHNjcmlwdD4=\">",
        );
        assert!(out.contains("data:image/png;base64,iVBORw0KGgo="), "{out}");
        assert!(!out.contains("data:text/html"), "{out}");
    }

    #[test]
    fn inline_styles_keep_only_listed_properties_that_reach_nothing() {
        let kept = |style: &str| {
            clean(&format!("<p style=\"{style}\">x</p>"))
                .split("style=\"")
                .nth(1)
                .map(|s| s.split('"').next().unwrap_or("").to_owned())
        };
        // Untouched (and not copied) when every declaration stays.
        assert_eq!(
            super::style("color: #333; padding: 8px"),
            Some(Cow::Borrowed("color: #333; padding: 8px"))
        );
        assert_eq!(
            kept("color:#333;position:fixed").as_deref(),
            Some("color:#333")
        );
        assert_eq!(kept("COLOR: Red").as_deref(), Some("COLOR: Red"));
        assert_eq!(
            kept("color: rgb(1, 2, 3)").as_deref(),
            Some("color: rgb(1, 2, 3)")
        );
        for bad in [
            "background: url(https://t.example/p.gif)",
            "background-color: red; width: expression(alert(1))",
            "color: red; background-image: URL(x)",
            "width: 1px; color: u\\72l(x)",
            "color: red /* url(x) */",
            "border: image-set(x 1x)",
            "position: absolute",
        ] {
            let out = kept(bad).unwrap_or_default().to_ascii_lowercase();
            for f in ["url", "expression", "image", "position", "\\", "/*"] {
                assert!(!out.contains(f), "{bad} kept {out}");
            }
        }
        assert_eq!(kept("position: fixed"), None);
        assert_eq!(kept(""), None);
    }

    #[test]
    fn non_latin_text_is_kept() {
        let text = "会议纪要 · Ελληνικά · العربية · Überprüfung 🎉";
        assert_eq!(clean(&format!("<p>{text}</p>")), format!("<p>{text}</p>"));
    }
}
