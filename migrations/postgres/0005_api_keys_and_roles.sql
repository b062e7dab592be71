-- API keys are rows of `token` with kind 'api_key', owned by a user (account_id), with a
-- label, a scope, an optional expiry and a last-use time (used_at). Their owners see the
-- start of each key again (hint: the prefix and six characters), never the rest.
alter table token add column hint text;
-- The last time a revoked or expired key (or one of a disabled user) was presented: such uses
-- are audited at most once a minute per key.
alter table token add column refused_at bigint;
-- A label names at most one unrevoked key of its owner (regenerating revokes the old one).
create unique index token_api_key_label_idx on token (account_id, label)
    where kind = 'api_key' and revoked_at is null;

-- Roles and groups of a user: JSON arrays of strings, released as claims with the `roles`
-- scope (docs/api-keys.md).
alter table account add column roles text not null default '[]';
alter table account add column group_names text not null default '[]';
