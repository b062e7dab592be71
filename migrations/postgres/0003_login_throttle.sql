-- Login brute-force protection: failed sign-ins per key, shared by every instance on this
-- store. A key is `user:` + a keyed tag of the typed username (existing or not, never the
-- name itself) or `addr:` + a source address. `blocked_until` is 0 when not blocked.
create table login_throttle (
    key text primary key,
    failures bigint not null,
    blocked_until bigint not null,
    updated_at bigint not null
);
create index login_throttle_updated_idx on login_throttle (updated_at);
