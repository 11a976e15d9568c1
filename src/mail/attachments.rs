//! `GET /mail/{id}/attachments/{aid}`: one attachment, downloaded.
//!
//! The content is streamed from the mail API's `$value` as it arrives (a
//! 100 MB file never sits in memory), always as a download
//! (`Content-Disposition: attachment`, `application/octet-stream`, an
//! attached message as `message/rfc822` `.eml`), never shown on this
//! origin: `nosniff`, `Content-Security-Policy: sandbox`, `private,
//! no-store`. A reference attachment (a link to a file in cloud storage)
//! gets a page with its https link instead.

use actix_web::http::StatusCode;
use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    X_CONTENT_TYPE_OPTIONS,
};
use actix_web::{HttpResponse, web};
use futures_util::StreamExt as _;

use super::MailError;
use super::client::DOWNLOAD_IDLE;
use super::model::{AttachmentKind, valid_id};
use super::routes::{mail_failed, signed_in};
use crate::error::{AppError, html};
use crate::pages::AttachmentLinkView;
use crate::session::TypedSession;
use crate::state::AppState;

/// Characters kept as they are in an RFC 5987 `filename*` (attr-char).
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The longest file name offered, in characters (the extension kept).
const MAX_NAME_CHARS: usize = 150;

pub async fn download(
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let user = match signed_in(&state, &session).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let (id, aid) = path.into_inner();
    if !valid_id(&id) || !valid_id(&aid) {
        return AppError::NoSuchAttachment.render(state.chrome(&session));
    }
    let client = &state.mail.client;
    let attachment = match client
        .attachment(&user.access_token, &user.email, &id, &aid)
        .await
    {
        Ok(a) => a,
        Err(MailError::NotFound { .. }) => {
            return AppError::NoSuchAttachment.render(state.chrome(&session));
        }
        Err(e) => return mail_failed(&session, &state, e),
    };
    let (content_type, file_name) = match attachment.kind {
        AttachmentKind::Reference => {
            let host = attachment
                .source_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_owned));
            return html(
                StatusCode::OK,
                &AttachmentLinkView {
                    chrome: state.chrome(&session),
                    name: &attachment.name,
                    link: attachment.source_url.as_deref(),
                    host: host.as_deref(),
                    back: &format!("/mail/{id}"),
                },
            );
        }
        AttachmentKind::Item => {
            let name = if attachment.name.to_ascii_lowercase().ends_with(".eml") {
                attachment.name.clone()
            } else {
                format!("{}.eml", attachment.name)
            };
            ("message/rfc822", name)
        }
        AttachmentKind::File => ("application/octet-stream", attachment.name.clone()),
    };
    let upstream = match client
        .attachment_value(&user.access_token, &user.email, &id, &aid)
        .await
    {
        Ok(r) => r,
        Err(MailError::NotFound { .. }) => {
            return AppError::NoSuchAttachment.render(state.chrome(&session));
        }
        Err(e) => return mail_failed(&session, &state, e),
    };
    let length = upstream.content_length();
    // Each piece must come within DOWNLOAD_IDLE; the whole may take as long
    // as the browser needs (the upstream is read only as fast as it reads).
    let stream =
        futures_util::stream::unfold(Box::pin(upstream.bytes_stream()), |mut body| async move {
            let piece = match tokio::time::timeout(DOWNLOAD_IDLE, body.next()).await {
                Ok(None) => return None,
                Ok(Some(Ok(bytes))) => Ok(bytes),
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "an attachment download broke off upstream");
                    Err(actix_web::error::ErrorBadGateway(
                        "the mail API stopped sending",
                    ))
                }
                Err(_) => {
                    tracing::warn!("an attachment download stalled upstream; cut");
                    Err(actix_web::error::ErrorGatewayTimeout(
                        "the mail API stopped sending",
                    ))
                }
            };
            Some((piece, body))
        });
    let mut response = HttpResponse::Ok();
    response
        .insert_header((CONTENT_TYPE, content_type))
        .insert_header((CONTENT_DISPOSITION, content_disposition(&file_name)))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((CONTENT_SECURITY_POLICY, "sandbox"))
        .insert_header((CACHE_CONTROL, "private, no-store"));
    if let Some(n) = length {
        response.insert_header((CONTENT_LENGTH, n));
    }
    response.streaming(stream)
}

/// `Content-Disposition: attachment` for `name`, as RFC 6266 wants it: a
/// plain-ASCII `filename` for old clients and the exact name, UTF-8 and
/// percent-encoded, in `filename*`. Neither can name a folder (`../`), end
/// the header (CR, LF), or start a parameter (`;`, `"`): the name is only
/// ever a name, at most [`MAX_NAME_CHARS`] characters with its extension.
pub fn content_disposition(name: &str) -> String {
    let flat: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let base = flat.rsplit(['/', '\\']).next().unwrap_or_default();
    let base = base.trim().trim_start_matches('.').trim();
    let base = if base.is_empty() { "attachment" } else { base };
    let base = shorten(base, MAX_NAME_CHARS);
    let ascii: String = base
        .chars()
        .map(|c| match c {
            ' ' => ' ',
            '"' | '\\' | ';' | '%' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let exact = percent_encoding::utf8_percent_encode(&base, ATTR_CHAR);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{exact}")
}

/// `name` cut to `max` characters, keeping a short extension.
fn shorten(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        return name.to_owned();
    }
    let ext = name
        .rfind('.')
        .map(|i| &name[i..])
        .filter(|e| e.chars().count() <= 10 && e.len() > 1)
        .unwrap_or("");
    let keep = max - ext.chars().count();
    let stem: String = name[..name.len() - ext.len()].chars().take(keep).collect();
    format!("{stem}{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filename_star(header: &str) -> String {
        let encoded = header.split("filename*=UTF-8''").nth(1).unwrap();
        percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .unwrap()
            .into_owned()
    }

    #[test]
    fn names_are_only_ever_names() {
        for (name, ascii, exact) in [
            ("report.pdf", "report.pdf", "report.pdf"),
            ("Q4 \"final\".xlsx", "Q4 _final_.xlsx", "Q4 \"final\".xlsx"),
            ("a;b=c.txt", "a_b=c.txt", "a;b=c.txt"),
            (
                "line\r\nSet-Cookie: x=y.txt",
                "line  Set-Cookie: x=y.txt",
                "line  Set-Cookie: x=y.txt",
            ),
            ("../../etc/passwd", "passwd", "passwd"),
            ("..\\..\\boot.ini", "boot.ini", "boot.ini"),
            (".hidden", "hidden", "hidden"),
            ("Belege-März.zip", "Belege-M_rz.zip", "Belege-März.zip"),
            ("会议纪要.docx", "____.docx", "会议纪要.docx"),
            ("100%.txt", "100_.txt", "100%.txt"),
            ("", "attachment", "attachment"),
            ("../", "attachment", "attachment"),
        ] {
            let h = content_disposition(name);
            assert!(h.starts_with("attachment; filename=\""), "{h}");
            assert!(h.contains(&format!("filename=\"{ascii}\";")), "{name}: {h}");
            assert_eq!(filename_star(&h), exact, "{name}");
            assert!(h.is_ascii() && !h.contains(['\r', '\n']), "{h}");
            assert_eq!(h.matches(';').count(), 2, "{h}");
        }
    }

    #[test]
    fn a_300_character_name_is_cut_keeping_its_extension() {
        let long = format!("{}.pdf", "é".repeat(300));
        let h = content_disposition(&long);
        let exact = filename_star(&h);
        assert_eq!(exact.chars().count(), MAX_NAME_CHARS);
        assert!(exact.ends_with("é.pdf"));
        assert!(h.len() < 2_000);
    }
}
