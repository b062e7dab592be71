-- The audit chain's links in a table of their own (decision 0041; the Postgres migration
-- says why). SQLite's writers take turns, so events commit in id order: the events not
-- sealed yet are those after the last one sealed (`sealed_through`).
create table audit_link (
    seq integer primary key,
    event_id integer not null,
    prev_hash text not null,
    hash text not null
);
create unique index audit_link_event_idx on audit_link (event_id);

insert into audit_link (seq, event_id, prev_hash, hash)
    select seq, id, prev_hash, hash from audit_event where seq is not null;

-- Kept alike in both stores; Postgres uses the snapshot columns.
alter table audit_chain add column sealed_snapshot text;
alter table audit_chain add column partial_snapshot text;
alter table audit_chain add column partial_through integer;
alter table audit_chain add column sealed_through integer;
update audit_chain set sealed_through =
    coalesce((select max(id) from audit_event where seq is not null), 0);

drop index audit_event_seq_idx;
drop index audit_event_unsealed_idx;
alter table audit_event drop column seq;
alter table audit_event drop column prev_hash;
alter table audit_event drop column hash;
