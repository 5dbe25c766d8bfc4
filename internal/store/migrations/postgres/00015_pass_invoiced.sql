-- +goose Up
-- When a billing pass finished invoicing (NULL while it still invoices, and
-- for passes from before this column). On several instances a pass with
-- nothing left to claim keeps claiming while a live peer's pass still
-- invoices: that peer's pages become chargeable as they commit, and every
-- instance's share of the gateway's limits keeps working on them.
ALTER TABLE billing_runs ADD COLUMN invoiced_at TIMESTAMPTZ;

-- +goose Down
ALTER TABLE billing_runs DROP COLUMN invoiced_at;
