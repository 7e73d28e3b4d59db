-- Paying abroad. Each authorization keeps the terminal's country (DE19) and,
-- when the switch converted DE4, the billing amount in CNY fen (DE6), the
-- rate in DE10 form and the rate table version: a reversal sends the
-- original's billing amount and rate, never the rate of the day.
ALTER TABLE auths ADD COLUMN country TEXT NOT NULL DEFAULT '';
ALTER TABLE auths ADD COLUMN billing_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE auths ADD COLUMN billing_rate TEXT NOT NULL DEFAULT '';
ALTER TABLE auths ADD COLUMN rate_version BIGINT NOT NULL DEFAULT 0;

-- Versions of the exchange-rate table (rates to CNY per major unit of each
-- currency, JSON {"JPY": "0.04712", ...}), effective from an instant.
CREATE TABLE fx_rates (
    version        BIGINT PRIMARY KEY,
    effective_from BIGINT NOT NULL,
    rates          BYTEA NOT NULL,
    created_at     BIGINT NOT NULL
);
