//! Tessera: a central OAuth 2.0 authorization server and OpenID Provider.
//!
//! The binary is a thin shell over this library so that the CLI and the black-box tests
//! start exactly the same server.

pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod housekeeping;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod net;
pub mod oauth;
pub mod paths;
pub mod server;
pub mod store;

pub use config::Config;
pub use server::{serve, Server};
