-- The `jti` and user indexes of `token` hold only the rows their readers look up: API keys
-- (found by key id, counted and revoked by owner). A user's access and refresh tokens are
-- reached through their grant (`token_grant_idx`) by every statement that looks for them by
-- user; their `jti` is 128 random bits, looked up by nobody (a token is found by its
-- digest). Every user token costs two index entries less (four per refresh and per code
-- flow) and every client_credentials token one (decision 0042).
alter table token drop constraint token_jti_key;
create unique index token_jti_key on token (jti) where kind = 'api_key';
drop index token_account_idx;
create index token_account_idx on token (account_id) where grant_id is null;
