-- When a session was opened with a second factor that does not need the
-- phone (the portal's e-mailed code or a recovery code): 0 for a password
-- session. Resuming Mi Pay on a device ("found it") needs such a session,
-- recent, so a stolen phone signed in to the account cannot undo its own
-- switch-off.
ALTER TABLE sessions ADD COLUMN second_factor_ms BIGINT NOT NULL DEFAULT 0;
