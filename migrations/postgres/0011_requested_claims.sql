-- The claims an authorization request asked for by name with the OIDC `claims` parameter
-- (Core §5.5), as JSON (`{"id_token": [...], "userinfo": [...]}`); null when it asked for
-- none. The code carries them to the first ID token; the grant to refreshed ID tokens and
-- userinfo.
alter table authorization_code add column claims text;
alter table oauth_grant add column claims text;
