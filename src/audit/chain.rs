//! The audit trail's hash chain (decision 0023): how an event is linked to the one before
//! it, and the walk that `tessera audit verify` makes over the links.
//!
//! Event `n` stores `prev_hash` (event `n - 1`'s `hash`, or [`GENESIS`] / the purge
//! checkpoint's hash) and `hash = hex(SHA-256(prev_hash ‖ canonical))`, where the canonical
//! form is the JSON array of its sequence number, id and every column exactly as stored.
//! The head row names the last sealed event under an HMAC of a KEK subkey, so removing
//! events from the end needs the KEK too.

use sha2::{Digest, Sha256};

use crate::crypto::kek::Kek;
use crate::crypto::mac::{self, Purpose};

/// `prev_hash` of the first event ever sealed.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit row as stored, chain columns included; `details` unparsed, since the chain
/// covers the stored text, whatever it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRow {
    pub id: i64,
    pub seq: Option<i64>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
    pub created_at: i64,
    pub kind: String,
    pub actor: String,
    pub client_id: Option<String>,
    pub account_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: String,
}

/// The last sealed event (seq 0 and [`GENESIS`] before any), as the head row records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
    pub tag: String,
}

/// Where purged history ends: events up to `seq` are gone, the chain goes on from `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub tag: String,
    pub created_at: i64,
}

/// Tags a chain position `(seq, hash)`: [`head_tag`] or [`checkpoint_tag`] under the KEK,
/// which the store does not hold.
pub type Tagger<'k> = dyn for<'h> Fn(i64, &'h str) -> String + Send + Sync + 'k;

/// The bytes event `row` is hashed over when it is sealed as number `seq`.
pub fn canonical(row: &ChainRow, seq: i64) -> Vec<u8> {
    let fields = (
        seq,
        row.id,
        row.created_at,
        &row.kind,
        &row.actor,
        &row.client_id,
        &row.account_id,
        &row.source_ip,
        &row.user_agent,
        &row.details,
    );
    // A tuple of integers, strings and options always serializes.
    serde_json::to_vec(&fields).unwrap_or_default()
}

/// The hash of an event sealed as `seq` after the event whose hash is `prev`.
pub fn link(prev: &str, row: &ChainRow, seq: i64) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(canonical(row, seq));
    to_hex(&h.finalize())
}

/// The head row's tag: it says the chain ends at `seq` with `hash`.
pub fn head_tag(kek: &Kek, seq: i64, hash: &str) -> String {
    to_hex(&mac::tag(
        kek,
        Purpose::AuditChain,
        format!("head:{seq}:{hash}").as_bytes(),
    ))
}

/// A checkpoint's tag: it says events up to `seq` were purged and the chain goes on from
/// `hash`.
pub fn checkpoint_tag(kek: &Kek, seq: i64, hash: &str) -> String {
    to_hex(&mac::tag(
        kek,
        Purpose::AuditChain,
        format!("checkpoint:{seq}:{hash}").as_bytes(),
    ))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tags are compared in constant time: they are MACs.
fn same_tag(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The first thing wrong with a chain: what `tessera audit verify` names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("the purge checkpoint at seq {seq} has a wrong tag: it was not written by Tessera")]
    CheckpointTag { seq: i64 },
    #[error(
        "event seq {expected} is missing (found seq {found}, event id {id}): events were deleted"
    )]
    Missing { expected: i64, found: i64, id: i64 },
    #[error("event seq {seq} (id {id}) does not follow event seq {}: its prev_hash is not that event's hash", seq - 1)]
    PrevHash { seq: i64, id: i64 },
    #[error("event seq {seq} (id {id}) was changed after it was sealed: its hash does not match its contents")]
    Hash { seq: i64, id: i64 },
    #[error("the chain ends at seq {last} but its head says seq {head}: events were deleted from the end")]
    Truncated { last: i64, head: i64 },
    #[error("the chain ends at seq {last} with a hash its head does not record")]
    HeadHash { last: i64 },
    #[error("the chain's head (seq {seq}) has a wrong tag: it was not written by Tessera")]
    HeadTag { seq: i64 },
    #[error("events with ids {ids:?} (at most ten shown) are in no link and not waiting to be sealed: they were put into the trail past Tessera")]
    Stranded { ids: Vec<i64> },
}

/// Walks sealed events in `seq` order, from genesis or from a purge checkpoint.
#[derive(Debug)]
pub struct Verifier<'k> {
    kek: &'k Kek,
    /// The seq the next event must have.
    next: i64,
    hash: String,
    /// Events checked.
    pub checked: u64,
}

impl<'k> Verifier<'k> {
    pub fn new(kek: &'k Kek, checkpoint: Option<&Checkpoint>) -> Result<Verifier<'k>, Broken> {
        let (next, hash) = match checkpoint {
            None => (1, GENESIS.to_owned()),
            Some(c) => {
                if !same_tag(&c.tag, &checkpoint_tag(kek, c.seq, &c.hash)) {
                    return Err(Broken::CheckpointTag { seq: c.seq });
                }
                (c.seq + 1, c.hash.clone())
            }
        };
        Ok(Verifier {
            kek,
            next,
            hash,
            checked: 0,
        })
    }

    /// The next sealed event, in `seq` order.
    pub fn push(&mut self, row: &ChainRow) -> Result<(), Broken> {
        let seq = row.seq.unwrap_or(0);
        if seq != self.next {
            return Err(Broken::Missing {
                expected: self.next,
                found: seq,
                id: row.id,
            });
        }
        if row.prev_hash.as_deref() != Some(self.hash.as_str()) {
            return Err(Broken::PrevHash { seq, id: row.id });
        }
        let hash = link(&self.hash, row, seq);
        if row.hash.as_deref() != Some(hash.as_str()) {
            return Err(Broken::Hash { seq, id: row.id });
        }
        self.hash = hash;
        self.next += 1;
        self.checked += 1;
        Ok(())
    }

    /// After the last event: the head must name it, under a valid tag. Returns the last seq.
    pub fn finish(self, head: &ChainHead) -> Result<i64, Broken> {
        let last = self.next - 1;
        if head.seq != last {
            return Err(Broken::Truncated {
                last,
                head: head.seq,
            });
        }
        if head.hash != self.hash {
            return Err(Broken::HeadHash { last });
        }
        // A fresh trail's head (nothing sealed yet) carries no tag.
        let untouched = head.seq == 0 && head.hash == GENESIS && head.tag.is_empty();
        if !untouched && !same_tag(&head.tag, &head_tag(self.kek, head.seq, &head.hash)) {
            return Err(Broken::HeadTag { seq: head.seq });
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64) -> ChainRow {
        ChainRow {
            id,
            seq: None,
            prev_hash: None,
            hash: None,
            created_at: 1_700_000_000 + id,
            kind: "login_succeeded".into(),
            actor: "user:u1".into(),
            client_id: Some("web".into()),
            account_id: Some("u1".into()),
            source_ip: Some("192.0.2.1".into()),
            user_agent: None,
            details: r#"{"a":1}"#.into(),
        }
    }

    /// Seals `rows` as the sealer does, returning them and the head.
    fn sealed(kek: &Kek, count: i64) -> (Vec<ChainRow>, ChainHead) {
        let mut prev = GENESIS.to_owned();
        let mut rows = Vec::new();
        for seq in 1..=count {
            let mut r = row(seq * 10);
            let hash = link(&prev, &r, seq);
            r.seq = Some(seq);
            r.prev_hash = Some(prev);
            r.hash = Some(hash.clone());
            prev = hash;
            rows.push(r);
        }
        let head = ChainHead {
            seq: count,
            tag: head_tag(kek, count, &prev),
            hash: prev,
        };
        (rows, head)
    }

    fn verify(kek: &Kek, rows: &[ChainRow], head: &ChainHead) -> Result<i64, Broken> {
        let mut v = Verifier::new(kek, None)?;
        for r in rows {
            v.push(r)?;
        }
        v.finish(head)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let kek = Kek([7; 32]);
        let (rows, head) = sealed(&kek, 5);
        assert_eq!(verify(&kek, &rows, &head), Ok(5));
        let empty = ChainHead {
            seq: 0,
            hash: GENESIS.into(),
            tag: String::new(),
        };
        assert_eq!(verify(&kek, &[], &empty), Ok(0));
    }

    #[test]
    fn an_edited_event_is_named() {
        let kek = Kek([7; 32]);
        let (mut rows, head) = sealed(&kek, 5);
        rows[2].details = r#"{"a":2}"#.into();
        assert_eq!(
            verify(&kek, &rows, &head),
            Err(Broken::Hash { seq: 3, id: 30 })
        );
    }

    #[test]
    fn an_edited_event_with_its_hash_recomputed_breaks_the_next_link() {
        let kek = Kek([7; 32]);
        let (mut rows, head) = sealed(&kek, 5);
        rows[2].account_id = Some("u2".into());
        rows[2].hash = Some(link(GENESIS, &rows[2], 3));
        let err = verify(&kek, &rows, &head).unwrap_err();
        assert!(
            matches!(
                err,
                Broken::Hash { seq: 3, .. } | Broken::PrevHash { seq: 4, .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_deleted_event_is_named() {
        let kek = Kek([7; 32]);
        let (mut rows, head) = sealed(&kek, 5);
        rows.remove(1);
        assert_eq!(
            verify(&kek, &rows, &head),
            Err(Broken::Missing {
                expected: 2,
                found: 3,
                id: 30
            })
        );
    }

    #[test]
    fn events_cut_off_the_end_are_detected_unless_the_head_is_retagged_with_the_kek() {
        let kek = Kek([7; 32]);
        let (rows, head) = sealed(&kek, 5);
        assert_eq!(
            verify(&kek, &rows[..3], &head),
            Err(Broken::Truncated { last: 3, head: 5 })
        );
        // Moving the head back without the KEK: the tag gives it away.
        let forged = ChainHead {
            seq: 3,
            hash: rows[2].hash.clone().unwrap_or_default(),
            tag: head_tag(&Kek([8; 32]), 3, rows[2].hash.as_deref().unwrap_or("")),
        };
        assert_eq!(
            verify(&kek, &rows[..3], &forged),
            Err(Broken::HeadTag { seq: 3 })
        );
    }

    #[test]
    fn a_chain_goes_on_from_a_tagged_checkpoint_only() {
        let kek = Kek([7; 32]);
        let (rows, head) = sealed(&kek, 5);
        let hash = rows[1].hash.clone().unwrap_or_default();
        let checkpoint = Checkpoint {
            seq: 2,
            tag: checkpoint_tag(&kek, 2, &hash),
            hash,
            created_at: 0,
        };
        let mut v = Verifier::new(&kek, Some(&checkpoint)).unwrap();
        for r in &rows[2..] {
            v.push(r).unwrap();
        }
        assert_eq!(v.finish(&head), Ok(5));
        let forged = Checkpoint {
            tag: checkpoint_tag(&Kek([8; 32]), 2, &checkpoint.hash),
            ..checkpoint
        };
        assert_eq!(
            Verifier::new(&kek, Some(&forged)).unwrap_err(),
            Broken::CheckpointTag { seq: 2 }
        );
    }
}
