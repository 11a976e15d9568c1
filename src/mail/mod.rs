//! The mail API: Microsoft Graph or the Outlook REST v2.0 shape.

mod client;
pub mod depth;
pub mod model;
pub mod routes;
pub mod sanitize;

pub use client::{MailClient, MailError};
pub use model::{Message, Profile};

/// The longest search accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
