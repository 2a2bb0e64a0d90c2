-- Reference tables of the risk controls (issue 4), loaded at run time by
-- `caisse reference load` (docs/reference-data.md). One row per load, kept for
-- good: a risk decision records the version it used, so an auditor can read the
-- very table that ruled. The latest row of a kind (highest `seq`) is in force;
-- with none, the tables shipped in the binary (version `shipped`).
-- Not a view (it is not derived from events), so this file differs from its
-- SQLite copy: `seq` is an identity column here, AUTOINCREMENT there.
CREATE TABLE reference_tables
(
    -- `refdata_<uuid v7>`.
    version   TEXT PRIMARY KEY,
    -- Load order, monotonic: the latest of a kind is `ORDER BY seq DESC LIMIT 1`.
    seq       BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    -- BINS or IP_COUNTRIES.
    kind      TEXT   NOT NULL CHECK (kind IN ('BINS', 'IP_COUNTRIES')),
    -- The whole CSV file as loaded (checked by the parser before it was written).
    content   TEXT   NOT NULL,
    -- Lower-case hex SHA-256 of `content` (its UTF-8 bytes).
    sha256    TEXT   NOT NULL,
    -- Ranges in the table.
    rows      BIGINT NOT NULL,
    -- Fixed-width UTC RFC 3339 text, as the views store instants.
    loaded_at TEXT   NOT NULL,
    -- Who loaded it (`cli:<OS user>`).
    loaded_by TEXT   NOT NULL
);
CREATE INDEX reference_tables_latest ON reference_tables (kind, seq);

-- A loaded table is a fact decisions refer to: nobody changes or deletes it.
CREATE FUNCTION reference_tables_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reference tables are immutable';
END $$;
CREATE TRIGGER reference_tables_no_update BEFORE UPDATE OR DELETE ON reference_tables
    FOR EACH ROW EXECUTE FUNCTION reference_tables_are_immutable();
