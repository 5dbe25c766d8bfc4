-- +goose Up
-- The webhook inbox: one row per gateway event id. A duplicate delivery hits the
-- UNIQUE index and changes nothing; the row and the state change it causes are
-- written in one transaction.
CREATE TABLE webhook_events (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    gateway_event_id   TEXT    NOT NULL UNIQUE,
    type               TEXT    NOT NULL,
    object_id          TEXT    NOT NULL DEFAULT '',
    result             TEXT    NOT NULL CHECK (result IN ('applied','ignored')),
    detail             TEXT    NOT NULL DEFAULT '',
    payload            TEXT    NOT NULL,
    gateway_created_at DATETIME,
    created_at         DATETIME NOT NULL,
    updated_at         DATETIME NOT NULL
);
CREATE INDEX webhook_events_object ON webhook_events (object_id);

-- The reconciler's own schedule per attempt.
ALTER TABLE charge_attempts ADD COLUMN reconcile_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE charge_attempts ADD COLUMN next_reconcile_at DATETIME;
CREATE INDEX charge_attempts_unresolved_age ON charge_attempts (created_at) WHERE status IN ('pending','unknown','processing');

-- +goose Down
DROP INDEX charge_attempts_unresolved_age;
ALTER TABLE charge_attempts DROP COLUMN next_reconcile_at;
ALTER TABLE charge_attempts DROP COLUMN reconcile_count;
DROP TABLE webhook_events;
