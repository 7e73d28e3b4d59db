-- The outbox publisher takes the oldest events first (network/reversal.go,
-- outboxOldest). Without this index each pass read and sorted the whole
-- outbox: harmless while the bus keeps up, quadratic in the backlog when
-- it comes back after an outage. created_at only grows, so the index takes
-- its inserts on its last page.
CREATE INDEX outbox_created ON outbox (created_at);
