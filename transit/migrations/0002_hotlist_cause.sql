-- Why a card is on the hotlist: DEVICE (the portal's switch-off of its
-- phone, which "found it" lifts) or CARD (the user hotlisted this card).
ALTER TABLE transit_cards ADD COLUMN hotlisted_by TEXT NOT NULL DEFAULT '';
