-- The audit trail's hash chain (decision 0023). Events are written, as before, by the
-- transaction whose change they describe; a sealer (one at a time, serialized on the
-- audit_chain row) then links them in the order it finds them: `seq` numbers them 1, 2, …,
-- `hash` is SHA-256(previous hash ‖ the event's canonical form, seq included) and
-- `prev_hash` the previous event's hash. Editing, deleting or inserting a sealed row breaks
-- a link that `tessera audit verify` names.
alter table audit_event add column seq integer;
alter table audit_event add column prev_hash text;
alter table audit_event add column hash text;
create unique index audit_event_seq_idx on audit_event (seq);
-- What the sealer reads each round: only the few rows not sealed yet.
create index audit_event_unsealed_idx on audit_event (id) where seq is null;

-- The head of the chain: the last sealed event. `tag` is an HMAC of (seq, hash) under a
-- subkey of the key-encryption key, so cutting events off the end and moving the head back
-- needs the KEK, not only write access to the database.
create table audit_chain (
    id integer primary key check (id = 1),
    seq integer not null,
    hash text not null,
    tag text not null,
    sealed_at integer not null
);
insert into audit_chain (id, seq, hash, tag, sealed_at)
    values (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', '', 0);

-- Where purged history ends: events up to and including `seq` were deleted (retention);
-- the chain goes on from `hash`. Tagged like the head.
create table audit_checkpoint (
    seq integer primary key,
    hash text not null,
    tag text not null,
    created_at integer not null
);
