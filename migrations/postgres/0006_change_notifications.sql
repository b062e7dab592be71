-- Every instance keeps introspection answers of active access tokens in memory
-- (docs/scaling.md, decision 0022). These triggers tell every instance, through
-- LISTEN/NOTIFY on the channel `tessera_changes`, about each change that can turn an active
-- answer inactive or change what it says, whoever made it (any instance, the CLI, plain SQL):
-- the payload is the token's digest in hex, or `flush` when the change reaches an unknown
-- set of tokens. A notification is delivered at commit, to every listener, in commit order.

-- A token revoked (or un-revoked) or deleted: its digest. Row-level with a WHEN clause, so
-- the frequent updates that do not touch revoked_at (refresh rotation's used_at, API key
-- last-use) cost no function call.
create function tessera_notify_token() returns trigger language plpgsql as $$
begin
    perform pg_notify('tessera_changes', encode(old.digest, 'hex'));
    return null;
end $$;

create trigger token_revoked_notify after update of revoked_at on token
    for each row when (old.revoked_at is distinct from new.revoked_at)
    execute function tessera_notify_token();

-- Deletes come in bulk (a client or user deleted, expired rows purged): one `flush` per
-- statement instead of a notification per row.
create function tessera_notify_flush() returns trigger language plpgsql as $$
begin
    perform pg_notify('tessera_changes', 'flush');
    return null;
end $$;

create trigger token_deleted_notify after delete on token
    for each statement execute function tessera_notify_flush();

-- A grant revoked revokes its tokens without touching their rows.
create trigger grant_revoked_notify after update of revoked_at on oauth_grant
    for each row when (old.revoked_at is distinct from new.revoked_at)
    execute function tessera_notify_flush();

-- A user disabled, renamed or given other roles, groups or claims: answers name the user.
create trigger account_changed_notify after update on account
    for each row when (
        (old.disabled, old.username, old.roles, old.group_names, old.claims)
        is distinct from (new.disabled, new.username, new.roles, new.group_names, new.claims))
    execute function tessera_notify_flush();

create trigger account_deleted_notify after delete on account
    for each statement execute function tessera_notify_flush();
