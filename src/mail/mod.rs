//! The mail API: Microsoft Graph or the Outlook REST v2.0 shape.

pub mod attachments;
mod client;
pub mod depth;
pub mod model;
pub mod reader;
pub mod routes;
pub mod sanitize;

pub use client::{
    BodyAnswer, DeltaPage, InlineImage, MailClient, MailError, kql_phrase, parse_retry_after,
};
pub use model::{Message, Profile};

/// The longest search accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
