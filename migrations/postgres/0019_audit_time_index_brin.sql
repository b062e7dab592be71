-- The audit trail's `created_at` index as BRIN (decision 0049). Events are only appended,
-- so `created_at` grows with the table's physical order, and a summary of each range of 16
-- pages finds what a B-tree entry per event did for a search's time window: the search
-- reads the ranges whose bounds match and checks their rows again. Inserting an event no
-- longer writes an entry in this index (the range being filled has no summary until
-- autovacuum makes one), and the index shrinks from megabytes to kilobytes. A range not
-- summarized yet always matches, so a search never misses a new event; it reads them all.
--
-- `xact` keeps its B-tree: the sealer looks it up several times a second, and a BRIN index
-- makes each lookup read every range not summarized yet (decision 0049 says what that cost).
drop index audit_event_created_idx;
create index audit_event_created_idx on audit_event
    using brin (created_at) with (pages_per_range = 16, autosummarize = on);
