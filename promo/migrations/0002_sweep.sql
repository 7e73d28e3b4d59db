-- The sweeper looks for reservations still "reserved" long after they were
-- made (a switch that crashed between reserve and record).
CREATE INDEX reservations_state_created ON reservations (state, created_at);
