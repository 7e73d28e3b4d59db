-- Bank promotions (issue 8): a transaction keeps the saving the cardholder
-- got (CNY fen, the merchant was paid the full amount), the bank funding it,
-- the campaign and its points multiplier (from the switch's event).
ALTER TABLE transactions ADD COLUMN discount_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE transactions ADD COLUMN offer_bank TEXT NOT NULL DEFAULT '';
ALTER TABLE transactions ADD COLUMN campaign_id TEXT NOT NULL DEFAULT '';
ALTER TABLE transactions ADD COLUMN points_multiplier BIGINT NOT NULL DEFAULT 0;
