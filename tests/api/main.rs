//! One integration-test binary: the real app on port 0, driven over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions;
mod decisions;
mod demo_flow;
mod edges;
mod helpers;
mod id_token;
mod live;
mod mail;
mod operations;
mod reading;
mod real_mail;
mod redis_store;
mod redis_tls;
mod sharepoint;
mod trust;
