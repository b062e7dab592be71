//! Signing keys as the running server uses them: loaded from the store, cached, and used to
//! sign on the blocking pool. The cryptography itself (generation, encryption at rest,
//! verification) is in `crypto::keys`, which never touches the store.

mod signer;

pub use signer::Signer;
