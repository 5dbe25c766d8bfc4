-- +goose Up
-- One open customer payment per invoice (docs/state-machines.md): an intent waiting for
-- the customer to authenticate (requires_action, begun on- or off-session)
-- could still take the money, so it blocks a second attempt like an
-- unresolved one does, until billingd canceled it at the gateway (or it
-- failed). The cancel billingd decided on is recorded before it is sent.
ALTER TABLE charge_attempts ADD COLUMN cancel_requested_at TIMESTAMPTZ;
ALTER TABLE charge_attempts ADD COLUMN cancel_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE charge_attempts ADD COLUMN cancel_tries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE charge_attempts ADD COLUMN cancel_next_try_at TIMESTAMPTZ;

-- Before this rule an invoice could hold several waiting intents (two tabs on
-- one link, a reminder's link beside the first email's). The newest open
-- attempt keeps its place; an older one waiting beside it needs a human, who
-- cancels it at the gateway if it is still open.
UPDATE charge_attempts SET status = 'needs_review',
       error_message = 'waited for authentication beside a newer attempt of its invoice before one open payment per invoice was enforced: cancel its payment intent at the gateway if it is still open'
 WHERE status = 'requires_action'
   AND EXISTS (SELECT 1 FROM charge_attempts newer WHERE newer.invoice_id = charge_attempts.invoice_id
                 AND newer.id > charge_attempts.id AND newer.status IN ('pending','unknown','processing','requires_action'));
-- Waiting intents of invoices already settled are canceled by the intents job.
UPDATE charge_attempts SET cancel_requested_at = updated_at, cancel_reason = 'invoice_settled'
 WHERE status = 'requires_action' AND invoice_id IN (SELECT id FROM invoices WHERE status <> 'open');

CREATE UNIQUE INDEX charge_attempts_one_open ON charge_attempts (invoice_id) WHERE status IN ('pending','unknown','processing','requires_action');
-- The intents job: waiting intents by the time they began to wait.
CREATE INDEX charge_attempts_waiting ON charge_attempts (finished_at) WHERE status = 'requires_action';
-- The pay links' per-card cap (dunning.link_charges_per_hour).
CREATE INDEX charge_attempts_on_session_card ON charge_attempts (gateway_payment_method_id, created_at) WHERE NOT off_session;

-- A link's return id (stored hashed): what the gateway's return, success and
-- cancel URLs carry instead of the token. Links minted before have none.
ALTER TABLE pay_links ADD COLUMN return_hash TEXT NOT NULL DEFAULT '';
CREATE INDEX pay_links_return ON pay_links (return_hash) WHERE return_hash <> '';

-- +goose Down
DROP INDEX pay_links_return;
ALTER TABLE pay_links DROP COLUMN return_hash;
DROP INDEX charge_attempts_on_session_card;
DROP INDEX charge_attempts_waiting;
DROP INDEX charge_attempts_one_open;
ALTER TABLE charge_attempts DROP COLUMN cancel_next_try_at;
ALTER TABLE charge_attempts DROP COLUMN cancel_tries;
ALTER TABLE charge_attempts DROP COLUMN cancel_reason;
ALTER TABLE charge_attempts DROP COLUMN cancel_requested_at;
