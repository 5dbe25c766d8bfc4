-- +goose Up
-- One dunning case per unpaid invoice (UNIQUE invoice_id).
CREATE TABLE dunning_cases (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id        INTEGER NOT NULL UNIQUE REFERENCES invoices(id),
    subscription_id   INTEGER NOT NULL REFERENCES subscriptions(id),
    reason            TEXT    NOT NULL CHECK (reason IN ('action_required','soft_decline','hard_decline')),
    status            TEXT    NOT NULL CHECK (status IN ('open','recovered','exhausted')),
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
CREATE INDEX dunning_cases_due ON dunning_cases (next_step_at) WHERE status = 'open' AND next_step_at IS NOT NULL;
CREATE INDEX dunning_cases_status ON dunning_cases (status, subscription_id);

-- Every transition of a case, for ops and audits.
CREATE TABLE dunning_steps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id    INTEGER NOT NULL REFERENCES dunning_cases(id),
    step       INTEGER NOT NULL,
    action     TEXT    NOT NULL,
    detail     TEXT    NOT NULL DEFAULT '',
    at         DATETIME NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);
CREATE INDEX dunning_steps_case ON dunning_steps (case_id, id);

-- The email outbox: a row is written in the same transaction as the state change
-- that calls for it; the mail worker renders and sends it. dedupe_key makes a
-- second email for the same (case, step, kind) impossible.
CREATE TABLE emails (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key      TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL CHECK (kind IN ('action_required','payment_failed','card_update','recovered','subscription_ended')),
    case_id         INTEGER REFERENCES dunning_cases(id),
    invoice_id      INTEGER NOT NULL REFERENCES invoices(id),
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
    updated_at      DATETIME NOT NULL
);
CREATE INDEX emails_due ON emails (next_attempt_at, id) WHERE status = 'pending';

-- Pay links: only the SHA-256 of the token is stored; the token itself exists only
-- in the email that carries it.
CREATE TABLE pay_links (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   TEXT    NOT NULL UNIQUE,
    invoice_id   INTEGER NOT NULL REFERENCES invoices(id),
    case_id      INTEGER REFERENCES dunning_cases(id),
    email_id     INTEGER REFERENCES emails(id),
    purpose      TEXT    NOT NULL CHECK (purpose IN ('pay','update_card')),
    expires_at   DATETIME NOT NULL,
    last_used_at DATETIME,
    uses         INTEGER NOT NULL DEFAULT 0,
    created_at   DATETIME NOT NULL,
    updated_at   DATETIME NOT NULL
);
CREATE INDEX pay_links_invoice ON pay_links (invoice_id);

-- +goose Down
DROP TABLE pay_links;
DROP TABLE emails;
DROP TABLE dunning_steps;
DROP TABLE dunning_cases;
