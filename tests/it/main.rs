//! Black-box tests: the real server over HTTP, the real binary, real SQLite files and, with
//! `TEST_DATABASE_URL`, a real Postgres. One test binary (see STYLE.md §1); modules below.

// A panic in a test is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_keys;
mod audit_trail;
mod authorize;
mod backchannel;
mod claims;
mod cli;
mod doctor;
mod frontchannel;
mod instances;
mod kek;
mod lifecycle;
mod logs;
mod malformed;
mod metrics;
mod oidc;
mod outage;
mod pages;
mod profile;
mod rp;
mod security;
mod server;
mod store;
mod store_conformance;
mod support;
mod token;
