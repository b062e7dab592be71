-- The client index of `token` holds only a client's own tokens (client_credentials), the
-- rows without a grant. Its one reader is the deletion of a client, which reaches the
-- tokens issued to its users through their grants (`token_grant_idx`) instead. Every
-- user token (a code's or a refresh's access and refresh tokens) costs one index entry
-- less: two per refresh, two per code flow (decision 0033, "Later").
drop index token_client_idx;
create index token_client_idx on token (client_id) where grant_id is null;
