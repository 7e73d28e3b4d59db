-- What a stand-in advice carries and how it ended.
--
-- promotion: the DE124 the original request carried to the issuer (a bank
-- campaign's discount, network/promo.go), '' for none. Stored with the
-- queued advice so every advice, after a restart too, carries the same
-- bytes and the issuer books the discount the switch kept the budget for.
--
-- done gains a state: 3 failed, the advice could not be built
-- (build_failures reached the bound, network.DefaultAdviceBuildAttempts:
-- a sealed PAN the HSM cannot open, a token gone from the vault, the
-- original gone); it is not retried and no longer holds back the
-- reversal of its approval. last_error says why.
--
-- issuer_rc: the DE39 with which the issuer refused the advice (done 2).
--
-- Operators list refused and failed advices with
--   SELECT * FROM issuer_advices WHERE done IN (2, 3) ORDER BY updated_at DESC
-- (or Switch.UnsettledAdvices).
ALTER TABLE issuer_advices ADD COLUMN promotion TEXT NOT NULL DEFAULT '';
ALTER TABLE issuer_advices ADD COLUMN build_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE issuer_advices ADD COLUMN issuer_rc TEXT NOT NULL DEFAULT '';
CREATE INDEX issuer_advices_outcome ON issuer_advices (done, updated_at);
