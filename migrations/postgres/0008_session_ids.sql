-- A session's public identifier, the `sid` of OIDC Front-Channel and Back-Channel Logout
-- (§2 of each): random, not derived from the cookie (whose digest is the key), so that it can
-- appear in ID tokens, logout tokens and the CLI. Codes and grants remember the session that
-- made them, so that ID tokens carry it and a session's clients can be found at logout.
-- Rows from before have none.
alter table session add column sid text;
create unique index session_sid_idx on session (sid);
alter table authorization_code add column sid text;
alter table oauth_grant add column sid text;
create index oauth_grant_sid_idx on oauth_grant (sid);
