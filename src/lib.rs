//! outlook-inbox: sign in with Microsoft, see your ten most recent Inbox
//! messages, and verify Outlook Actionable Message actions.

pub mod actions;
pub mod auth;
pub mod cards;
pub mod clock;
pub mod demo;
pub mod error;
pub mod http;
pub mod jwt;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod notifications;
pub mod observe;
pub mod pages;
pub mod ready;
pub mod routes;
pub mod session;
pub mod session_cookie;
pub mod session_store;
pub mod settings;
pub mod sharepoint;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
