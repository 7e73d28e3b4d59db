-- A record's state: pending (the gate's intent is durable, the card's answer
-- is not known yet), unopened (the card's TAC is known, the barrier may not
-- have opened: a re-tap soon passes free), done. random is the card's
-- INITIALIZE answer, kept so the PSAM can check a recovered MAC2.
ALTER TABLE gate_records ADD COLUMN state TEXT NOT NULL DEFAULT 'done';
ALTER TABLE gate_records ADD COLUMN random TEXT NOT NULL DEFAULT '';
