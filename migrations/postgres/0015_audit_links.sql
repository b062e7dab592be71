-- The audit chain's links in a table of their own (decision 0041). Sealing an event used to
-- update its row: a second copy of the whole event and of its five index entries, never
-- heap-only (`seq` is indexed and is the unsealed index's predicate), about half of the WAL
-- an event costs. A link is now a narrow row of its own, written once; the event is never
-- updated.
--
-- Which events are not sealed yet is told by the transaction that wrote each one (`xact`)
-- and the snapshot the last sealing round read with: an event is sealed if and only if it
-- was visible to that round (plus, after a round that stopped at its limit, those up to its
-- last id that its own snapshot saw). A transaction still open during a round is in its
-- snapshot's in-progress list, so an event committed late is found by the next round.
--
-- Both tables first, so that no sealer of the previous version commits links between the
-- copy below and the end of this migration.
lock table audit_chain, audit_event in access exclusive mode;

create table audit_link (
    seq bigint primary key,
    event_id bigint not null,
    prev_hash text not null,
    hash text not null
);
-- Reading an event with its link (search, export), and one link per event at most.
create unique index audit_link_event_idx on audit_link (event_id);

insert into audit_link (seq, event_id, prev_hash, hash)
    select seq, id, prev_hash, hash from audit_event where seq is not null;

-- No default at first, so existing rows are not rewritten; new rows get their writer's
-- transaction id. A `bigint` (an `xid8` fits), which every client can read.
alter table audit_event add column xact bigint;
alter table audit_event alter column xact set default pg_current_xact_id()::text::bigint;
create index audit_event_xact_idx on audit_event (xact);

-- Postgres: `sealed_snapshot` is the snapshot of the last round that sealed every event it
-- saw; after a round that stopped at its limit, `partial_snapshot` is its snapshot and
-- `partial_through` the last event id it sealed. SQLite: `sealed_through`, the last event id
-- sealed (its writers take turns, so events commit in id order).
alter table audit_chain add column sealed_snapshot text;
alter table audit_chain add column partial_snapshot text;
alter table audit_chain add column partial_through bigint;
alter table audit_chain add column sealed_through bigint;
-- No snapshot yet: the first round reads every event without a link (the ones not sealed
-- before this migration among them) and stores the snapshot it read with.

-- An instance still running the previous version fails to seal rather than sealing into
-- columns nobody reads any more.
alter table audit_event drop column seq;
alter table audit_event drop column prev_hash;
alter table audit_event drop column hash;
