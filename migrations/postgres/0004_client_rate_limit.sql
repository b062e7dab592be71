-- Per-client request rate at /token, /introspect, /revoke and /userinfo, in requests per
-- second; null means the configured default (`rate_limit_client_per_sec`).
alter table client add column rate_limit_per_sec bigint;
