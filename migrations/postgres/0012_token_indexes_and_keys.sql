-- Only tokens issued for a user carry a grant and an account; a client's own tokens
-- (client_credentials, the bulk of token writes) leave both null. Indexing only the rows
-- that have them saves two index entries per client token; every lookup by grant or account
-- (revocation of a grant, ending a user's access, the foreign keys' cascades) names a
-- value, which implies `is not null`, so these indexes still serve it.
drop index token_grant_idx;
create index token_grant_idx on token (grant_id) where grant_id is not null;
drop index token_account_idx;
create index token_account_idx on token (account_id) where account_id is not null;

-- No foreign keys on token (decision 0033). Each checked key took a share lock on the
-- parent row, and concurrent token writes for one client all locked the same client row:
-- Postgres turned those locks into multixacts, a write to the client's page and to the WAL
-- for every token. Deleting a client or a user now deletes its tokens by name in the same
-- transaction, and a token whose client or grant vanished in a race reads as revoked.
alter table token drop constraint token_client_id_fkey;
alter table token drop constraint token_grant_id_fkey;
alter table token drop constraint token_account_id_fkey;
-- What the client key still checks, without its lock: token writes look the client up by
-- id (a plain read) and write what they find, so a client deleted since the request read it
-- leaves `client_id` null, which this refuses. API keys belong to a user, not a client.
-- (`not valid`: rows written before are not re-checked.)
alter table token add constraint token_client_exists
    check (kind = 'api_key' or client_id is not null) not valid;
