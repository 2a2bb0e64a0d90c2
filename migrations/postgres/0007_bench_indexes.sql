-- Shared by both backends (same text). Found by `caisse bench cutoff`
-- (docs/performance.md, "Remittance cut-off"): the journal projection sums a
-- payment's lines by joining journal_entries to journal_lines on
-- (global_position, entry_index). Without this index PostgreSQL can only reach
-- the lines by global_position, and when the planner lacks statistics (autovacuum
-- off, or a table that grew since its last analyze) it scans journal_lines once per
-- payment event, which makes a cut-off quadratic in the number of payments.
CREATE INDEX journal_lines_entry ON journal_lines (global_position, entry_index);
