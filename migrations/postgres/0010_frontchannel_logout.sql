-- OIDC Front-Channel Logout 1.0 §2: the page the signed-out page loads in an iframe for the
-- client, and whether it needs `iss` and `sid` there. Null URI: no iframe for the client.
alter table client add column frontchannel_logout_uri text;
alter table client add column frontchannel_logout_session_required boolean not null default false;
