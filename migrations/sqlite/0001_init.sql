-- Caisse schema on SQLite. The `events` table is sqlite-es's, plus our global log
-- columns. The composite PRIMARY KEY must stay: sqlite-es recognises an optimistic
-- lock conflict only by SQLITE_CONSTRAINT_PRIMARYKEY (1555).
CREATE TABLE events
(
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    sequence        INTEGER NOT NULL CHECK (sequence >= 0),
    event_type      TEXT    NOT NULL,
    event_version   TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    global_position INTEGER,
    recorded_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE UNIQUE INDEX events_global_position ON events (global_position);
CREATE UNIQUE INDEX events_idempotency_key ON events (json_extract(metadata, '$.idempotency_key'))
    WHERE json_extract(metadata, '$.idempotency_key') IS NOT NULL;

-- SQLite has one writer at a time, so numbering inside the writing transaction
-- gives commit order. rowid is not used: VACUUM may renumber it.
CREATE TRIGGER events_assign_global_position AFTER INSERT ON events
BEGIN
    UPDATE events SET global_position = (SELECT IFNULL(MAX(global_position), 0) + 1 FROM events)
    WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;
CREATE TRIGGER events_no_update BEFORE UPDATE OF aggregate_type, aggregate_id, sequence, event_type,
    event_version, payload, metadata, recorded_at ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;
CREATE TRIGGER events_position_set_once BEFORE UPDATE OF global_position ON events
    WHEN OLD.global_position IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;
