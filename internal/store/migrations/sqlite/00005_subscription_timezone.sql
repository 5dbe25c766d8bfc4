-- +goose Up
-- Each subscription's calendar is read in its own IANA zone, fixed at import.
-- Rows that exist when this runs are given the configured default zone (the one
-- their periods were computed in until now) by the store right after the
-- migration; '' marks a row still waiting for it and is never billed.
ALTER TABLE subscriptions ADD COLUMN timezone TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE subscriptions DROP COLUMN timezone;
