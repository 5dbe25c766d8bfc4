-- +goose Up
-- Every charge rewrote an entry of invoices_status (status, updated_at) three
-- times (invoice created, claimed, paid) and of charge_attempts_status twice,
-- for queries that only ever ask about a few states. Partial indexes on just
-- those states cost one write per charge at most; the rare full counts by
-- status (billingd status) scan the table instead.
DROP INDEX invoices_status;
-- "collected today": status = 'paid' AND paid_at >= ?.
CREATE INDEX invoices_paid ON invoices (paid_at) WHERE status = 'paid';
DROP INDEX charge_attempts_status;
-- What a human must look at (metrics, status); replays and the reconciler use
-- charge_attempts_unresolved_age, one_unresolved the invoice probe.
CREATE INDEX charge_attempts_attention ON charge_attempts (status) WHERE status IN ('needs_review','failed');

-- +goose Down
DROP INDEX charge_attempts_attention;
CREATE INDEX charge_attempts_status ON charge_attempts (status, next_try_at);
DROP INDEX invoices_paid;
CREATE INDEX invoices_status ON invoices (status, updated_at);
