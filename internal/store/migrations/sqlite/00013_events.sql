-- +goose Up
-- The outbox to the merchant's systems: one row per state change a
-- merchant's app acts on (docs/events.md), written in the transaction that
-- made the change, POSTed signed to events.url by the events worker. body is
-- the exact JSON sent, so a redelivery sends the same bytes. type has no
-- CHECK: the catalogue grows, and a new type must not need a table rebuild.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id       TEXT    NOT NULL UNIQUE,
    type            TEXT    NOT NULL,
    object_type     TEXT    NOT NULL CHECK (object_type IN ('subscription','invoice','dunning_case')),
    object_id       INTEGER  NOT NULL,
    object_ref      TEXT    NOT NULL,
    subscription_id INTEGER  NOT NULL REFERENCES subscriptions(id),
    body            TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending','delivered','failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DATETIME NOT NULL,
    last_status     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    lease_owner     TEXT    NOT NULL DEFAULT '',
    lease_until     DATETIME,
    lease_version   INTEGER  NOT NULL DEFAULT 0,
    delivered_at    DATETIME,
    occurred_at     DATETIME NOT NULL,
    created_at      DATETIME NOT NULL,
    updated_at      DATETIME NOT NULL
);
-- The worker's claim: due pending events, and for each subscription only the
-- oldest pending one (an earlier pending event holds back the later ones).
CREATE INDEX events_due ON events (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX events_pending_by_subscription ON events (subscription_id, id) WHERE status = 'pending';
-- billingd events list: by time, by object.
CREATE INDEX events_occurred ON events (occurred_at, id);
CREATE INDEX events_object ON events (object_type, object_id);
CREATE INDEX events_subscription ON events (subscription_id, id);

-- +goose Down
DROP TABLE events;
