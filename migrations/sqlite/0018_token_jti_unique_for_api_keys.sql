-- As Postgres's 0017 (decision 0042): `jti` is unique only among API keys, which are found
-- by it; a user's or client's token is found by its digest, and its `jti` is 128 random
-- bits that nobody looks up. The uniqueness was part of the table's definition here, so
-- the table is rebuilt without it (SQLite cannot drop a column constraint): every token
-- written costs one random index page less, two per refresh (decision 0044).
--
-- Rows whose grant, client or user no longer exists (possible only where foreign keys
-- were once off) are not copied: such a token was already dead (see `TOKEN_SELECT`), and
-- the new table's foreign keys would refuse it.
create table token_new (
    digest blob primary key,
    kind text not null,                      -- access | refresh | api_key
    jti text not null,                       -- public identifier (introspection, JWT jti)
    grant_id text references oauth_grant (id) on delete cascade,
    client_id text references client (id) on delete cascade,
    account_id text references account (id) on delete cascade,
    scope text not null,
    label text,                              -- API keys: the operator's name for it
    previous_digest blob,                    -- refresh rotation chain
    created_at integer not null,
    expires_at integer,
    used_at integer,                         -- refresh: spent by rotation
    revoked_at integer,
    hint text,
    refused_at integer
);
insert into token_new (rowid, digest, kind, jti, grant_id, client_id, account_id, scope,
                       label, previous_digest, created_at, expires_at, used_at, revoked_at,
                       hint, refused_at)
select t.rowid, t.digest, t.kind, t.jti, t.grant_id, t.client_id, t.account_id, t.scope,
       t.label, t.previous_digest, t.created_at, t.expires_at, t.used_at, t.revoked_at,
       t.hint, t.refused_at
from token t
where (t.grant_id is null or exists (select 1 from oauth_grant g where g.id = t.grant_id))
  and (t.client_id is null or exists (select 1 from client c where c.id = t.client_id))
  and (t.account_id is null or exists (select 1 from account a where a.id = t.account_id))
order by t.rowid;
drop table token;
alter table token_new rename to token;

create unique index token_jti_key on token (jti) where kind = 'api_key';
create index token_client_idx on token (client_id);
create index token_expires_idx on token (expires_at);
create unique index token_api_key_label_idx on token (account_id, label)
    where kind = 'api_key' and revoked_at is null;
create index token_grant_idx on token (grant_id) where grant_id is not null;
create index token_account_idx on token (account_id) where account_id is not null;

create trigger token_revoked_count after update of revoked_at on token
    when old.revoked_at is not new.revoked_at
begin
    update change_counter set n = n + 1 where id = 1;
end;

create trigger token_deleted_count after delete on token
begin
    update change_counter set n = n + 1 where id = 1;
end;
