-- Postgres keeps only a client's own tokens in `token_client_idx` (its 0016); SQLite keeps
-- the whole index, which its foreign key's cascade from `client` looks tokens up by. Kept
-- so both folders number their migrations alike.
select 1;
