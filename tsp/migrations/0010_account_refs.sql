-- The wallet account a token was made for, as an opaque reference: a keyed
-- hash (HMAC under the TSP's key) of the wallet's account id, recorded at
-- tokenization. The switch gets it with a de-tokenization, so a promotion's
-- per-account limit counts every card of one Mi account, without the switch
-- (or the promotions engine) learning the account id.
CREATE TABLE token_accounts (
    ref         TEXT PRIMARY KEY,
    account_ref TEXT NOT NULL
);
