-- Paying abroad: a transaction keeps the terminal's country and what the
-- cardholder is billed in CNY at which rate (from the switch's event).
ALTER TABLE transactions ADD COLUMN country TEXT NOT NULL DEFAULT '';
ALTER TABLE transactions ADD COLUMN billing_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE transactions ADD COLUMN billing_currency TEXT NOT NULL DEFAULT '';
ALTER TABLE transactions ADD COLUMN conversion_rate TEXT NOT NULL DEFAULT '';
