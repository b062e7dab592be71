-- The audit trail's `created_at` and `xact` indexes as BRIN (decision 0049). Events are only
-- appended, so both columns grow with the table's physical order, and a summary of each
-- range of 16 pages finds the same rows as a B-tree entry per event did: the sealer's
-- "transactions at or past this snapshot" and a search's time window scan the few ranges
-- whose bounds match and check their rows again. Inserting an event no longer writes an
-- entry in either index (a range's summary changes only when its bounds move, and the
-- ranges being filled have none until autovacuum summarizes them), about a quarter of an
-- event's WAL and some of its CPU; the two indexes shrink from megabytes to kilobytes.
--
-- A range not summarized yet always matches, so a lookup never misses a new event.
drop index audit_event_created_idx;
create index audit_event_created_idx on audit_event
    using brin (created_at) with (pages_per_range = 16, autosummarize = on);
drop index audit_event_xact_idx;
create index audit_event_xact_idx on audit_event
    using brin (xact) with (pages_per_range = 16, autosummarize = on);
