//! The stand-in's attachment endpoints (Graph and Outlook REST shapes):
//! the list, one attachment (with its content in base64 unless `$select`
//! asks for less), and its raw content (`$value`), generated as it is sent.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Demo;
use super::graph::{caller, graph_error, outlook, respond};
use super::mailbox::{AttachmentKind, DemoAttachment, DemoContent};

#[derive(Deserialize)]
pub(super) struct SelectParams {
    #[serde(rename = "$select")]
    select: Option<String>,
}

/// An attachment as Graph (or Outlook REST, `pascal`) describes it; with
/// `content`, a file's bytes in base64 and a reference's link too.
pub(super) fn describe(a: &DemoAttachment, pascal: bool, content: bool) -> Value {
    let (graph_type, outlook_type) = match a.kind {
        AttachmentKind::File => ("fileAttachment", "FileAttachment"),
        AttachmentKind::Item => ("itemAttachment", "ItemAttachment"),
        AttachmentKind::Reference => ("referenceAttachment", "ReferenceAttachment"),
    };
    let mut v = if pascal {
        json!({
            "@odata.type": format!("#Microsoft.OutlookServices.{outlook_type}"),
            "Id": a.id, "Name": a.name, "ContentType": a.content_type,
            "Size": a.content.size(), "IsInline": a.content_id.is_some(),
        })
    } else {
        json!({
            "@odata.type": format!("#microsoft.graph.{graph_type}"),
            "id": a.id, "name": a.name, "contentType": a.content_type,
            "size": a.content.size(), "isInline": a.content_id.is_some(),
        })
    };
    let field = |graph: &str, outlook: &str| {
        if pascal {
            outlook.to_owned()
        } else {
            graph.to_owned()
        }
    };
    if a.kind == AttachmentKind::File && content {
        v[field("contentId", "ContentId")] = json!(a.content_id);
        let bytes = a.content.bytes(0, a.content.size());
        v[field("contentBytes", "ContentBytes")] =
            json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    if let (AttachmentKind::Reference, DemoContent::Link(link), true) =
        (a.kind, &a.content, content)
    {
        v[field("sourceUrl", "SourceUrl")] = json!(link);
    }
    v
}

/// The attachment `aid` of message `id` in the caller's mailbox.
async fn find(
    d: &Demo,
    req: &HttpRequest,
    id: &str,
    aid: Option<&str>,
) -> Result<(Vec<DemoAttachment>, Option<DemoAttachment>), Box<HttpResponse>> {
    let person = caller(d, req).await?;
    let mailbox = d.mailbox(person);
    let Some(m) = mailbox.iter().find(|m| m.id == id) else {
        return Err(Box::new(graph_error(
            req,
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )));
    };
    let one = match aid {
        None => None,
        Some(aid) => match m.attachments.iter().find(|a| a.id == aid) {
            Some(a) => Some(a.clone()),
            None => {
                return Err(Box::new(graph_error(
                    req,
                    StatusCode::NOT_FOUND,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                )));
            }
        },
    };
    Ok((m.attachments.clone(), one))
}

pub(super) async fn list(
    demo: web::Data<Demo>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<SelectParams>,
) -> HttpResponse {
    let (all, _) = match find(&demo, &req, &path, None).await {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let pascal = outlook(&req);
    let value: Vec<Value> = all
        .iter()
        .map(|a| describe(a, pascal, q.select.is_none()))
        .collect();
    respond(&req, StatusCode::OK, json!({ "value": value }))
}

pub(super) async fn one(
    demo: web::Data<Demo>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    q: web::Query<SelectParams>,
) -> HttpResponse {
    let (id, aid) = path.into_inner();
    let a = match find(&demo, &req, &id, Some(&aid)).await {
        Ok((_, Some(a))) => a,
        Ok(_) => return HttpResponse::NotFound().finish(),
        Err(r) => return *r,
    };
    respond(
        &req,
        StatusCode::OK,
        describe(&a, outlook(&req), q.select.is_none()),
    )
}

/// `…/attachments/{aid}/$value`: a file's bytes or an item's MIME, sent in
/// pieces as they are made (the 20 MB export is never held whole).
pub(super) async fn value(
    demo: web::Data<Demo>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (id, aid) = path.into_inner();
    let a = match find(&demo, &req, &id, Some(&aid)).await {
        Ok((_, Some(a))) => a,
        Ok(_) => return HttpResponse::NotFound().finish(),
        Err(r) => return *r,
    };
    if a.kind == AttachmentKind::Reference {
        return graph_error(
            &req,
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "A reference attachment has no content.",
        );
    }
    let size = a.content.size();
    let content_type = if a.kind == AttachmentKind::Item {
        "message/rfc822"
    } else {
        a.content_type
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type(content_type)
        .insert_header(("request-id", uuid::Uuid::new_v4().to_string()))
        .no_chunking(size);
    match a.content {
        DemoContent::Csv(_) | DemoContent::Filler(_) => {
            const PIECE: u64 = 64 * 1024;
            let content = a.content.clone();
            let pieces = futures_util::stream::iter((0..size.div_ceil(PIECE)).map(move |i| {
                Ok::<_, actix_web::Error>(web::Bytes::from(
                    content.bytes(i * PIECE, (i + 1) * PIECE),
                ))
            }));
            response.streaming(pieces)
        }
        _ => response.body(a.content.bytes(0, size)),
    }
}
