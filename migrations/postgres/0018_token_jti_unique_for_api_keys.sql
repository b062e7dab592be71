-- SQLite's 0018 rebuilds its token table to do what 0017 did here. Kept so both folders
-- number their migrations alike.
select 1;
