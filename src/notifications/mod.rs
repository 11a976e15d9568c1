//! The live Inbox: new mail appears in an open Inbox without a reload.
//!
//! - [`graph`]: Graph's subscriptions API (create, renew, reauthorize, delete);
//! - [`upkeep`]: each person's one subscription kept alive, and polling;
//! - [`routes`]: the change and lifecycle webhooks, and the event stream;
//! - [`live`]: per-person feeds that read the delta and send new rows;
//! - [`bus`]: how changes and rows travel between instances (Redis pub/sub).

pub mod bus;
pub mod graph;
pub mod live;
pub mod routes;
pub mod upkeep;

pub use live::Live;
