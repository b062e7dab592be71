-- SQLite has no LISTEN/NOTIFY (Postgres's 0006). Instead, a counter that every change able to
-- turn an active introspection answer inactive, or change what it says, advances, whoever
-- made it (the server, the CLI, plain SQL): the server reads it every 100 ms and empties its
-- introspection cache when it moved (decision 0022). The same changes as Postgres's
-- triggers; SQLite has only row-level triggers, so a bulk delete advances it once per row.
create table change_counter (
    id integer primary key check (id = 1),
    n integer not null
);
insert into change_counter (id, n) values (1, 0);

-- A token revoked (or un-revoked): the WHEN clause keeps the frequent updates that do not
-- touch revoked_at (refresh rotation's used_at, API key last use) free of the trigger.
create trigger token_revoked_count after update of revoked_at on token
    when old.revoked_at is not new.revoked_at
begin
    update change_counter set n = n + 1 where id = 1;
end;

create trigger token_deleted_count after delete on token
begin
    update change_counter set n = n + 1 where id = 1;
end;

-- A grant revoked revokes its tokens without touching their rows.
create trigger grant_revoked_count after update of revoked_at on oauth_grant
    when old.revoked_at is not new.revoked_at
begin
    update change_counter set n = n + 1 where id = 1;
end;

-- A user disabled, renamed or given other roles, groups or claims: answers name the user.
create trigger account_changed_count after update on account
    when (old.disabled, old.username, old.roles, old.group_names, old.claims)
        is not (new.disabled, new.username, new.roles, new.group_names, new.claims)
begin
    update change_counter set n = n + 1 where id = 1;
end;

create trigger account_deleted_count after delete on account
begin
    update change_counter set n = n + 1 where id = 1;
end;
