-- +goose Up
-- A webhook (or a gateway read) that reports an amount or currency other than
-- its attempt's frozen request is stored, not applied: the event keeps
-- result 'ignored', is flagged here, and detail says why; its attempt becomes
-- needs_review.
ALTER TABLE webhook_events ADD COLUMN needs_review BOOLEAN NOT NULL DEFAULT FALSE;

-- /readyz proves the database takes writes with a tiny committed write here
-- (a row inserted and deleted in one transaction), at most every few seconds
-- and only when no real write answered for it. It stays empty.
CREATE TABLE readiness_probes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    pad        BLOB     NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);

-- +goose Down
DROP TABLE readiness_probes;
ALTER TABLE webhook_events DROP COLUMN needs_review;
