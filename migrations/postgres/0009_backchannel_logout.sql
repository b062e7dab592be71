-- OIDC Back-Channel Logout 1.0 §2.2: where a client wants logout tokens, and whether it needs
-- the `sid` in them. Null URI: the client is not told of logouts.
alter table client add column backchannel_logout_uri text;
alter table client add column backchannel_logout_session_required boolean not null default false;
