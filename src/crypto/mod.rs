//! Cryptographic building blocks: opaque secrets and their digests, password hashing, and the
//! key-encryption key. Everything here wraps a well-kept crate (sha2, subtle, argon2, rand).

pub mod api_key;
pub mod kek;
pub mod keys;
pub mod mac;
pub mod password;
pub mod token;
