-- +goose Up
-- AUTOINCREMENT: ids never come back after a delete, so keys derived from them
-- can never collide with an older key the gateway still remembers.
CREATE TABLE customers (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    gateway_customer_id TEXT    NOT NULL UNIQUE,
    email               TEXT    NOT NULL DEFAULT '',
    created_at          DATETIME NOT NULL,
    updated_at          DATETIME NOT NULL
);

CREATE TABLE payment_methods (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id               INTEGER NOT NULL REFERENCES customers(id),
    gateway_payment_method_id TEXT    NOT NULL UNIQUE,
    brand                     TEXT    NOT NULL DEFAULT '',
    last4                     TEXT    NOT NULL DEFAULT '',
    created_at                DATETIME NOT NULL,
    updated_at                DATETIME NOT NULL
);

CREATE TABLE subscriptions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    reference         TEXT    NOT NULL UNIQUE,
    customer_id       INTEGER NOT NULL REFERENCES customers(id),
    payment_method_id INTEGER NOT NULL REFERENCES payment_methods(id),
    description       TEXT    NOT NULL DEFAULT '',
    amount            INTEGER NOT NULL CHECK (amount > 0),
    currency          TEXT    NOT NULL CHECK (length(currency) = 3),
    interval_unit     TEXT    NOT NULL CHECK (interval_unit IN ('day','week','month','year')),
    interval_count    INTEGER NOT NULL CHECK (interval_count >= 1),
    anchor_at         DATETIME NOT NULL,
    next_period       INTEGER NOT NULL DEFAULT 0,
    next_billing_at   DATETIME NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('active','past_due','unpaid','canceled')),
    canceled_at       DATETIME,
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL
);
-- The sweep's due query: status IN (...) AND next_billing_at <= now ORDER BY next_billing_at, id.
CREATE INDEX subscriptions_due ON subscriptions (next_billing_at, id) WHERE status IN ('active','past_due');

CREATE TABLE invoices (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id         TEXT    NOT NULL UNIQUE,
    subscription_id   INTEGER NOT NULL REFERENCES subscriptions(id),
    period_index      INTEGER NOT NULL,
    period_start      DATETIME NOT NULL,
    period_end        DATETIME NOT NULL,
    amount            INTEGER NOT NULL CHECK (amount > 0),
    currency          TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('open','paid','uncollectible','void')),
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   DATETIME,
    paid_at           DATETIME,
    payment_intent_id TEXT    NOT NULL DEFAULT '',
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL,
    -- Invoice before money: one invoice per subscription period, whoever creates it.
    UNIQUE (subscription_id, period_start),
    UNIQUE (subscription_id, period_index)
);
CREATE INDEX invoices_chargeable ON invoices (next_attempt_at, id) WHERE status = 'open' AND next_attempt_at IS NOT NULL;
CREATE INDEX invoices_status ON invoices (status, updated_at);

CREATE TABLE charge_attempts (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id                INTEGER NOT NULL REFERENCES invoices(id),
    subscription_id           INTEGER NOT NULL REFERENCES subscriptions(id),
    attempt_no                INTEGER NOT NULL CHECK (attempt_no >= 1),
    idempotency_key           TEXT    NOT NULL UNIQUE,
    merchant_order_id         TEXT    NOT NULL,
    amount                    INTEGER NOT NULL,
    currency                  TEXT    NOT NULL,
    gateway_customer_id       TEXT    NOT NULL,
    gateway_payment_method_id TEXT    NOT NULL,
    off_session               BOOLEAN NOT NULL,
    status                    TEXT    NOT NULL CHECK (status IN ('pending','unknown','processing','succeeded','requires_action','declined','canceled','failed','needs_review')),
    payment_intent_id         TEXT    NOT NULL DEFAULT '',
    decline_code              TEXT    NOT NULL DEFAULT '',
    advice_code               TEXT    NOT NULL DEFAULT '',
    hard_decline              BOOLEAN NOT NULL DEFAULT FALSE,
    action_url                TEXT    NOT NULL DEFAULT '',
    error_message             TEXT    NOT NULL DEFAULT '',
    tries                     INTEGER NOT NULL DEFAULT 0,
    last_http_status          INTEGER NOT NULL DEFAULT 0,
    lease_owner               TEXT    NOT NULL DEFAULT '',
    lease_until               DATETIME,
    lease_version             INTEGER NOT NULL DEFAULT 0,
    next_try_at               DATETIME,
    finished_at               DATETIME,
    created_at                DATETIME NOT NULL,
    updated_at                DATETIME NOT NULL,
    UNIQUE (invoice_id, attempt_no)
);
-- At most one unresolved attempt per invoice: a second attempt can never start while
-- the first one's outcome is unknown.
CREATE UNIQUE INDEX charge_attempts_one_unresolved ON charge_attempts (invoice_id) WHERE status IN ('pending','unknown','processing');
CREATE INDEX charge_attempts_status ON charge_attempts (status, next_try_at);
CREATE INDEX charge_attempts_payment_intent ON charge_attempts (payment_intent_id) WHERE payment_intent_id <> '';

CREATE TABLE billing_runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    triggered_by      TEXT    NOT NULL,
    owner             TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('running','finished','interrupted')),
    started_at        DATETIME NOT NULL,
    finished_at       DATETIME,
    duration_ms       INTEGER NOT NULL DEFAULT 0,
    subscriptions_due INTEGER NOT NULL DEFAULT 0,
    invoices_created  INTEGER NOT NULL DEFAULT 0,
    attempts_started  INTEGER NOT NULL DEFAULT 0,
    attempts_replayed INTEGER NOT NULL DEFAULT 0,
    succeeded         INTEGER NOT NULL DEFAULT 0,
    processing        INTEGER NOT NULL DEFAULT 0,
    requires_action   INTEGER NOT NULL DEFAULT 0,
    declined          INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    unknown           INTEGER NOT NULL DEFAULT 0,
    error             TEXT    NOT NULL DEFAULT '',
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL
);

-- +goose Down
DROP TABLE billing_runs;
DROP TABLE charge_attempts;
DROP TABLE invoices;
DROP TABLE subscriptions;
DROP TABLE payment_methods;
DROP TABLE customers;
