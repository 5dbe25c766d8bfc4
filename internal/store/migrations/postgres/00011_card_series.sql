-- +goose Up
-- Checkout.com chains a card's merchant-initiated charges to the first
-- customer-initiated payment that stored it (previous_payment_id). The card
-- keeps that payment's id; every off-session attempt freezes the id it was
-- sent with, so a replay sends the same request. A new card starts its own
-- series. Empty on WooshPay, which does not chain payments.
ALTER TABLE payment_methods ADD COLUMN previous_payment_id TEXT NOT NULL DEFAULT '';
ALTER TABLE charge_attempts ADD COLUMN previous_payment_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE charge_attempts DROP COLUMN previous_payment_id;
ALTER TABLE payment_methods DROP COLUMN previous_payment_id;
