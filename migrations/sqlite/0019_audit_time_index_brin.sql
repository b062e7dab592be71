-- Postgres's 0019 makes the audit trail's time index BRIN, which SQLite does not have.
-- Kept so both folders number their migrations alike.
select 1;
