-- +goose Up
-- The partial indexes on a status list are written as chains of equalities
-- instead of IN lists. SQLite evaluates an IN list of three or more constants
-- through an ephemeral b-tree that it builds each time the expression is
-- evaluated, and it evaluates a partial index's condition for the old and the
-- new row on every write of the table: the result UPDATE of a charge attempt
-- built eight of them (about 960 µs of CPU on a 2-core virtual machine, against
-- 31 µs for the same UPDATE with these conditions). A chain of equalities is
-- compared in place. The queries carry the same chains (store/sqllists.go), and
-- the indexes keep their names, columns and meaning.
DROP INDEX charge_attempts_one_unresolved;
CREATE UNIQUE INDEX charge_attempts_one_unresolved ON charge_attempts (invoice_id)
    WHERE (status = 'pending' OR status = 'unknown' OR status = 'processing');
DROP INDEX charge_attempts_unresolved_age;
CREATE INDEX charge_attempts_unresolved_age ON charge_attempts (created_at)
    WHERE (status = 'pending' OR status = 'unknown' OR status = 'processing');
DROP INDEX charge_attempts_one_open;
CREATE UNIQUE INDEX charge_attempts_one_open ON charge_attempts (invoice_id)
    WHERE (status = 'pending' OR status = 'unknown' OR status = 'processing' OR status = 'requires_action');
DROP INDEX charge_attempts_attention;
CREATE INDEX charge_attempts_attention ON charge_attempts (status)
    WHERE (status = 'needs_review' OR status = 'failed');
DROP INDEX subscriptions_due;
CREATE INDEX subscriptions_due ON subscriptions (next_billing_at, id)
    WHERE (status = 'active' OR status = 'past_due');

-- +goose Down
DROP INDEX charge_attempts_one_unresolved;
CREATE UNIQUE INDEX charge_attempts_one_unresolved ON charge_attempts (invoice_id) WHERE status IN ('pending','unknown','processing');
DROP INDEX charge_attempts_unresolved_age;
CREATE INDEX charge_attempts_unresolved_age ON charge_attempts (created_at) WHERE status IN ('pending','unknown','processing');
DROP INDEX charge_attempts_one_open;
CREATE UNIQUE INDEX charge_attempts_one_open ON charge_attempts (invoice_id) WHERE status IN ('pending','unknown','processing','requires_action');
DROP INDEX charge_attempts_attention;
CREATE INDEX charge_attempts_attention ON charge_attempts (status) WHERE status IN ('needs_review','failed');
DROP INDEX subscriptions_due;
CREATE INDEX subscriptions_due ON subscriptions (next_billing_at, id) WHERE status IN ('active','past_due');
