-- Only tokens issued for a user carry a grant and an account; a client's own tokens
-- (client_credentials, the bulk of token writes) leave both null. Indexing only the rows
-- that have them saves two index entries per client token; every lookup by grant or account
-- (revocation of a grant, ending a user's access, the foreign keys' cascades) names a
-- value, which implies `is not null`, so these indexes still serve it.
drop index token_grant_idx;
create index token_grant_idx on token (grant_id) where grant_id is not null;
drop index token_account_idx;
create index token_account_idx on token (account_id) where account_id is not null;
-- The token table keeps its foreign keys here: SQLite takes no row locks for them, so they
-- cost a lookup, not a write (on Postgres they were dropped; decision 0033).
