-- SQLite adds a change counter here (its 0013) in place of the notifications Postgres sends
-- since its 0006. Kept so both folders number their migrations alike.
select 1;
