-- +goose Up
-- Money given back: one row per refund, under one idempotency key, committed
-- before the gateway is called. A refund reserves its amount of the payment it
-- refunds while its status is anything but failed or canceled, so refunds of a
-- payment never add up to more than it took. Status values are documented in
-- docs/state-machines.md; reasons are the gateway's.
CREATE TABLE refunds (
    id                         INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id                 INTEGER NOT NULL REFERENCES invoices(id),
    attempt_id                 INTEGER REFERENCES charge_attempts(id),
    payment_intent_id          TEXT    NOT NULL,
    original_payment_intent_id TEXT    NOT NULL DEFAULT '',
    amount                     INTEGER NOT NULL CHECK (amount > 0),
    currency                   TEXT    NOT NULL,
    reason                     TEXT    NOT NULL CHECK (reason IN ('duplicate','requested_by_customer','fraudulent')),
    idempotency_key            TEXT    NOT NULL UNIQUE,
    status                     TEXT    NOT NULL CHECK (status IN ('confirming','pending','unknown','processing','succeeded','failed','canceled','needs_review')),
    gateway_refund_id          TEXT    NOT NULL DEFAULT '',
    error_message              TEXT    NOT NULL DEFAULT '',
    tries                      INTEGER NOT NULL DEFAULT 0,
    lease_owner                TEXT    NOT NULL DEFAULT '',
    lease_until                DATETIME,
    lease_version              INTEGER NOT NULL DEFAULT 0,
    next_try_at                DATETIME,
    finished_at                DATETIME,
    created_at                 DATETIME NOT NULL,
    updated_at                 DATETIME NOT NULL
);
CREATE INDEX refunds_invoice ON refunds (invoice_id);
CREATE INDEX refunds_payment_intent ON refunds (payment_intent_id);
CREATE INDEX refunds_status ON refunds (status, next_try_at);
CREATE INDEX refunds_gateway_id ON refunds (gateway_refund_id);

-- +goose Down
DROP TABLE refunds;
