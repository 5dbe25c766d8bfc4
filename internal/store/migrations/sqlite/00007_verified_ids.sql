-- +goose Up
-- When billingd checked a customer or payment method id with the gateway (an
-- import with verification). A card the gateway later calls unknown was the
-- customer's if it was verified (or charged before): a hard decline. An id
-- never verified is billingd's own data error: the attempt needs review and
-- the customer is not emailed.
ALTER TABLE customers ADD COLUMN verified_at DATETIME;
ALTER TABLE payment_methods ADD COLUMN verified_at DATETIME;

-- +goose Down
ALTER TABLE payment_methods DROP COLUMN verified_at;
ALTER TABLE customers DROP COLUMN verified_at;
