-- Postgres drops the foreign keys of the tables a sign-in writes here (its 0014, decision
-- 0040); SQLite keeps them: it takes no row locks for them. Kept so both folders number
-- their migrations alike.
select 1;
