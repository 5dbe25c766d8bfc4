-- Migration 00012 on SQLite, run by rebuildMigration (rebuild.go) on one
-- connection with foreign keys off, inside one transaction, and checked with
-- PRAGMA foreign_key_check before it commits.
-- Operating billing without SQL (operator actions, the admin API, card
-- details and the expiring-card notice).
--
-- SQLite cannot change a CHECK constraint in place, so subscriptions (new
-- status 'paused'), emails (new kind 'card_expiring', invoice optional) and
-- pay_links (subscription-scoped card links) are rebuilt. With foreign keys
-- off and legacy_alter_table on, renaming the old copies aside leaves the
-- other tables' foreign keys naming the original tables; ids are copied
-- unchanged, so every reference still points at the same row.

DROP INDEX subscriptions_due;
ALTER TABLE subscriptions RENAME TO subscriptions_old;
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
    status            TEXT    NOT NULL CHECK (status IN ('active','past_due','unpaid','paused','canceled')),
    canceled_at       DATETIME,
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL,
    timezone          TEXT    NOT NULL DEFAULT '',
    -- cancel_at: a cancel at period end; the status stays until then.
    cancel_at         DATETIME,
    -- paused_at: when the subscription was paused (NULL unless paused).
    paused_at         DATETIME
);
INSERT INTO subscriptions (id, reference, customer_id, payment_method_id, description, amount, currency,
    interval_unit, interval_count, anchor_at, next_period, next_billing_at, status, canceled_at, created_at,
    updated_at, timezone)
SELECT id, reference, customer_id, payment_method_id, description, amount, currency, interval_unit,
    interval_count, anchor_at, next_period, next_billing_at, status, canceled_at, created_at, updated_at, timezone
FROM subscriptions_old;
DROP TABLE subscriptions_old;
CREATE INDEX subscriptions_due ON subscriptions (next_billing_at, id) WHERE status IN ('active','past_due');
CREATE INDEX subscriptions_cancel_at ON subscriptions (cancel_at) WHERE cancel_at IS NOT NULL;
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

DROP INDEX dunning_cases_due;
DROP INDEX dunning_cases_status;
ALTER TABLE dunning_cases RENAME TO dunning_cases_old;
CREATE TABLE dunning_cases (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id        INTEGER NOT NULL UNIQUE REFERENCES invoices(id),
    subscription_id   INTEGER NOT NULL REFERENCES subscriptions(id),
    reason            TEXT    NOT NULL CHECK (reason IN ('action_required','soft_decline','hard_decline')),
    -- stopped: an operator ended the case (dunning stop, a void, a cancel).
    status            TEXT    NOT NULL CHECK (status IN ('open','recovered','exhausted','stopped')),
    step              INTEGER NOT NULL DEFAULT 0,
    retries           INTEGER NOT NULL DEFAULT 0,
    next_step_at      DATETIME,
    last_decline_code TEXT    NOT NULL DEFAULT '',
    final_action      TEXT    NOT NULL DEFAULT '',
    opened_at         DATETIME NOT NULL,
    closed_at         DATETIME,
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL
);
INSERT INTO dunning_cases SELECT id, invoice_id, subscription_id, reason, status, step, retries, next_step_at,
    last_decline_code, final_action, opened_at, closed_at, created_at, updated_at FROM dunning_cases_old;
DROP TABLE dunning_cases_old;
CREATE INDEX dunning_cases_due ON dunning_cases (next_step_at) WHERE status = 'open' AND next_step_at IS NOT NULL;
CREATE INDEX dunning_cases_status ON dunning_cases (status, subscription_id);

DROP INDEX emails_due;
DROP INDEX pay_links_invoice;
DROP INDEX pay_links_return;
ALTER TABLE emails RENAME TO emails_old;
ALTER TABLE pay_links RENAME TO pay_links_old;
CREATE TABLE emails (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key      TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL CHECK (kind IN ('action_required','payment_failed','card_update','recovered','subscription_ended','card_expiring')),
    case_id         INTEGER REFERENCES dunning_cases(id),
    -- invoice_id is NULL for an email about the subscription itself (its
    -- card expires before the next charge); subscription_id is then set.
    invoice_id      INTEGER REFERENCES invoices(id),
    subscription_id INTEGER REFERENCES subscriptions(id),
    to_address      TEXT    NOT NULL,
    link_purpose    TEXT    NOT NULL DEFAULT '' CHECK (link_purpose IN ('','pay','update_card')),
    message_id      TEXT    NOT NULL UNIQUE,
    subject         TEXT    NOT NULL DEFAULT '',
    status          TEXT    NOT NULL CHECK (status IN ('pending','sent','failed','canceled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DATETIME NOT NULL,
    last_error      TEXT    NOT NULL DEFAULT '',
    lease_owner     TEXT    NOT NULL DEFAULT '',
    lease_until     DATETIME,
    lease_version   INTEGER NOT NULL DEFAULT 0,
    sent_at         DATETIME,
    created_at      DATETIME NOT NULL,
    updated_at      DATETIME NOT NULL,
    CHECK (invoice_id IS NOT NULL OR subscription_id IS NOT NULL)
);
INSERT INTO emails (id, dedupe_key, kind, case_id, invoice_id, subscription_id, to_address, link_purpose, message_id,
    subject, status, attempts, next_attempt_at, last_error, lease_owner, lease_until, lease_version, sent_at,
    created_at, updated_at)
SELECT e.id, e.dedupe_key, e.kind, e.case_id, e.invoice_id, i.subscription_id, e.to_address, e.link_purpose,
    e.message_id, e.subject, e.status, e.attempts, e.next_attempt_at, e.last_error, e.lease_owner, e.lease_until,
    e.lease_version, e.sent_at, e.created_at, e.updated_at
FROM emails_old e LEFT JOIN invoices i ON i.id = e.invoice_id;
CREATE TABLE pay_links (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash      TEXT    NOT NULL UNIQUE,
    -- invoice_id is NULL for a link scoped to a subscription: it can only
    -- replace the card (purpose update_card), never charge.
    invoice_id      INTEGER REFERENCES invoices(id),
    subscription_id INTEGER REFERENCES subscriptions(id),
    case_id         INTEGER REFERENCES dunning_cases(id),
    email_id        INTEGER REFERENCES emails(id),
    purpose         TEXT    NOT NULL CHECK (purpose IN ('pay','update_card')),
    expires_at      DATETIME NOT NULL,
    last_used_at    DATETIME,
    uses            INTEGER NOT NULL DEFAULT 0,
    created_at      DATETIME NOT NULL,
    updated_at      DATETIME NOT NULL,
    return_hash     TEXT    NOT NULL DEFAULT '',
    -- revoked_at: an operator's cancel or void killed the link.
    revoked_at      DATETIME,
    CHECK (invoice_id IS NOT NULL OR (subscription_id IS NOT NULL AND purpose = 'update_card'))
);
INSERT INTO pay_links (id, token_hash, invoice_id, subscription_id, case_id, email_id, purpose, expires_at,
    last_used_at, uses, created_at, updated_at, return_hash)
SELECT l.id, l.token_hash, l.invoice_id, i.subscription_id, l.case_id, l.email_id, l.purpose, l.expires_at,
    l.last_used_at, l.uses, l.created_at, l.updated_at, l.return_hash
FROM pay_links_old l LEFT JOIN invoices i ON i.id = l.invoice_id;
DROP TABLE pay_links_old;
DROP TABLE emails_old;
CREATE INDEX emails_due ON emails (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX emails_invoice ON emails (invoice_id);
CREATE INDEX emails_subscription ON emails (subscription_id);
CREATE INDEX pay_links_invoice ON pay_links (invoice_id);
CREATE INDEX pay_links_subscription ON pay_links (subscription_id);
CREATE INDEX pay_links_return ON pay_links (return_hash) WHERE return_hash <> '';


-- Card details read from the gateway (never the number): brand and last 4
-- were columns already; the expiry joins them, with when they were read.
ALTER TABLE payment_methods ADD COLUMN exp_month INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payment_methods ADD COLUMN exp_year INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payment_methods ADD COLUMN details_read_at DATETIME;

-- Every operator action: who (actor, and through what), when, what (action
-- and target), why, and the target's state before and after, as JSON.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    actor       TEXT    NOT NULL,
    via         TEXT    NOT NULL CHECK (via IN ('cli','admin_api','system')),
    action      TEXT    NOT NULL,
    target_type TEXT    NOT NULL,
    target_id   INTEGER NOT NULL,
    target_ref  TEXT    NOT NULL DEFAULT '',
    reason      TEXT    NOT NULL DEFAULT '',
    before_json TEXT    NOT NULL DEFAULT '',
    after_json  TEXT    NOT NULL DEFAULT '',
    at          DATETIME NOT NULL,
    created_at  DATETIME NOT NULL,
    updated_at  DATETIME NOT NULL
);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id, id);
CREATE INDEX audit_log_at ON audit_log (at);

-- The admin API's Idempotency-Key: one row per (token, key), kept 24 h
-- (expires_at), or as long as the refund it created (refund_id).
CREATE TABLE admin_requests (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    token_name      TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    request_hash    TEXT    NOT NULL,
    method          TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    status_code     INTEGER NOT NULL DEFAULT 0,
    response_body   TEXT    NOT NULL DEFAULT '',
    refund_id       INTEGER REFERENCES refunds(id),
    expires_at      DATETIME,
    created_at      DATETIME NOT NULL,
    updated_at      DATETIME NOT NULL,
    UNIQUE (token_name, idempotency_key)
);
CREATE INDEX admin_requests_expires ON admin_requests (expires_at) WHERE expires_at IS NOT NULL;

-- The reports and the monitoring gauges read money by when it moved (every
-- instance, at every scrape): succeeded charges and refunds by finished_at,
-- and the last finished billing pass.
CREATE INDEX charge_attempts_succeeded_at ON charge_attempts (finished_at) WHERE status = 'succeeded';
CREATE INDEX refunds_succeeded_at ON refunds (finished_at) WHERE status = 'succeeded';
CREATE INDEX billing_runs_finished_at ON billing_runs (finished_at) WHERE status = 'finished';
