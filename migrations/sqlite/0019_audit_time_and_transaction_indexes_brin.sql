-- Postgres's 0019 makes two audit indexes BRIN, which SQLite does not have (nor the `xact`
-- column). Kept so both folders number their migrations alike.
select 1;
