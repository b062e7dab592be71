-- Postgres adds change notifications here (its 0006). SQLite has no LISTEN/NOTIFY: a
-- server on SQLite keeps introspection answers for at most one second instead
-- (decision 0022). Kept so both folders number their migrations alike.
select 1;
