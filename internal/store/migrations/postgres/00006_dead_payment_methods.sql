-- +goose Up
-- A card the gateway called dead (a hard decline: expired, lost, stolen, ...)
-- is remembered on the payment method, so that no invoice of any period is
-- charged off-session on it again; a new card saved for the subscription is a
-- new row and is charged. dead_reason is the gateway's decline code.
ALTER TABLE payment_methods ADD COLUMN dead_at TIMESTAMPTZ;
ALTER TABLE payment_methods ADD COLUMN dead_reason TEXT NOT NULL DEFAULT '';
-- The card networks' cap counts reattempts (an off-session attempt after an
-- earlier attempt of the same invoice) per card over 30 days; first attempts,
-- most of the table, are not in this index.
CREATE INDEX charge_attempts_card_reattempts ON charge_attempts (gateway_payment_method_id, created_at)
    WHERE attempt_no > 1 AND off_session;

-- +goose Down
DROP INDEX charge_attempts_card_reattempts;
ALTER TABLE payment_methods DROP COLUMN dead_reason;
ALTER TABLE payment_methods DROP COLUMN dead_at;
