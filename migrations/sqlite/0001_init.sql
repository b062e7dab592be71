-- Tessera's data model, SQLite dialect. Same tables, columns and names as
-- migrations/postgres/0001_init.sql; only the type names differ. Never edit a landed
-- migration: add the next number in both folders.
--
-- Conventions: times are Unix seconds; secrets are stored only as SHA-256 digests (32 bytes);
-- lists are JSON text; scopes are space-separated. SQLite flags are 0/1 integers where
-- Postgres has integer: sqlx's Any driver cannot read SQLite's BOOLEAN declared type. Deleting a client or a user cascades to
-- everything derived from it, so nothing they authorised outlives them.

create table client (
    id text primary key,
    name text not null,
    secret_digest blob,                      -- null for a public client
    redirect_uris text not null,             -- JSON array, exact strings as registered
    post_logout_redirect_uris text not null, -- JSON array
    grant_types text not null,
    scope text not null,
    token_endpoint_auth_method text not null,
    access_token_format text not null,       -- opaque | jwt
    may_introspect integer not null,
    first_party integer not null,
    require_pkce integer not null,
    id_token_signed_response_alg text not null,
    created_at integer not null,
    updated_at integer not null
);

-- "user" is a reserved word in SQL, hence "account".
create table account (
    id text primary key,                     -- the stable `sub`, never reused
    username text not null unique,
    password_hash text,                      -- argon2id PHC string
    claims text not null,                    -- JSON: OpenID Connect standard claims
    disabled integer not null,
    failed_login_count integer not null,
    last_failed_login_at integer,
    created_at integer not null,
    updated_at integer not null
);

create table session (
    id_digest blob primary key,
    account_id text not null references account (id) on delete cascade,
    auth_time integer not null,
    amr text not null,                       -- JSON array
    created_at integer not null,
    expires_at integer not null
);
create index session_account_idx on session (account_id);
create index session_expires_idx on session (expires_at);

create table consent (
    account_id text not null references account (id) on delete cascade,
    client_id text not null references client (id) on delete cascade,
    scope text not null,
    created_at integer not null,
    updated_at integer not null,
    primary key (account_id, client_id)
);
create index consent_client_idx on consent (client_id);

-- One authorisation of a client by a user (or by itself, for client_credentials). Codes and
-- tokens hang off it; revoking it revokes everything derived from it.
create table oauth_grant (
    id text primary key,
    client_id text not null references client (id) on delete cascade,
    account_id text references account (id) on delete cascade,
    scope text not null,
    auth_time integer,
    amr text,
    created_at integer not null,
    revoked_at integer
);
create index oauth_grant_client_idx on oauth_grant (client_id);
create index oauth_grant_account_idx on oauth_grant (account_id);

create table authorization_code (
    digest blob primary key,
    grant_id text not null references oauth_grant (id) on delete cascade,
    client_id text not null references client (id) on delete cascade,
    account_id text not null references account (id) on delete cascade,
    redirect_uri text,                       -- as sent at /authorize; null when omitted
    scope text not null,
    nonce text,
    code_challenge text,                     -- PKCE S256 challenge
    auth_time integer not null,
    amr text not null,
    created_at integer not null,
    expires_at integer not null,
    consumed_at integer
);
create index authorization_code_grant_idx on authorization_code (grant_id);
create index authorization_code_expires_idx on authorization_code (expires_at);

-- Access tokens, refresh tokens and API keys.
create table token (
    digest blob primary key,
    kind text not null,                      -- access | refresh | api_key
    jti text not null unique,                -- public identifier (introspection, JWT jti)
    grant_id text references oauth_grant (id) on delete cascade,
    client_id text references client (id) on delete cascade,
    account_id text references account (id) on delete cascade,
    scope text not null,
    label text,                              -- API keys: the operator's name for it
    previous_digest blob,                    -- refresh rotation chain
    created_at integer not null,
    expires_at integer,
    used_at integer,                         -- refresh: spent by rotation
    revoked_at integer
);
create index token_grant_idx on token (grant_id);
create index token_client_idx on token (client_id);
create index token_account_idx on token (account_id);
create index token_expires_idx on token (expires_at);

create table signing_key (
    kid text primary key,
    alg text not null,
    public_jwk text not null,
    private_jwk_encrypted blob not null,     -- encrypted under the key-encryption key
    state text not null,                     -- next | active | retired
    created_at integer not null,
    activates_at integer not null,
    retired_at integer,
    expires_at integer                       -- dropped from the JWKS after this
);

-- The audit trail outlives what it mentions: no foreign keys.
create table audit_event (
    id integer primary key autoincrement,
    created_at integer not null,
    kind text not null,
    actor text not null,
    client_id text,
    account_id text,
    source_ip text,
    user_agent text,
    details text not null                    -- JSON object
);
create index audit_event_created_idx on audit_event (created_at);
create index audit_event_kind_idx on audit_event (kind, created_at);
