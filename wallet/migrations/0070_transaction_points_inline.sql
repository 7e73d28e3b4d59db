-- What an approval earned moves onto its transaction's row. The wallet wrote
-- a transaction_points row in the same write as every approval's
-- transaction: one more statement, and one more B-tree page (keyed by a
-- random transaction id) to journal and commit, per event. NULL: the issuer
-- said nothing about points. Rows recorded before move over.
ALTER TABLE transactions ADD COLUMN points_earned BIGINT;
ALTER TABLE transactions ADD COLUMN points_balance BIGINT;
UPDATE transactions SET
    points_earned = (SELECT p.earned FROM transaction_points p WHERE p.transaction_id = transactions.id),
    points_balance = (SELECT p.balance FROM transaction_points p WHERE p.transaction_id = transactions.id)
WHERE id IN (SELECT transaction_id FROM transaction_points);
DROP TABLE transaction_points;
