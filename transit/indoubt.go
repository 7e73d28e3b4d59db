package transit

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/hsm"
)

// In-doubt taps. A gate makes its intent durable before DEBIT; when the
// card's answer never came and the card never returned to that gate, the
// gate cannot know whether it debited and has no TAC to upload. It reports
// the intent in its batch (Batch.InDoubt); the card keeps the proofs of its
// last purchases, and the phone reports them (POST /v1/cards/{n}/proofs).
// A proof whose TAC verifies over an in-doubt intent (card, serial, that
// gate's terminal and TSN, amount, date, time) clears it like any gate
// record; one that does not verify changes nothing (the card did not debit
// in that session).

// MaxProofs bounds one proof report (the card keeps MaxTransitLog).
const MaxProofs = 64

// CardProof is a purchase proof from a card's own log.
type CardProof struct {
	OfflineSerial int64  `json:"offlineSerial"`
	TAC           string `json:"tac"` // 4 bytes hex
}

// recordInDoubt stores the in-doubt intents of a batch (inside the
// clearing transaction; idempotent).
func (s *Service) recordInDoubt(ctx context.Context, tx *sql.Tx, b Batch, now int64) (int, error) {
	n := 0
	for i := range b.InDoubt {
		r := b.InDoubt[i]
		r.TAC = "00000000" // not known: only the shape of the rest is checked
		if _, _, _, ok := tacInput(&r); !ok {
			continue
		}
		if _, err := emv.EPurseDiversifier(r.CardNumber); err != nil {
			continue
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO transit_indoubt (card_number, offline_serial, terminal, city, tsn, amount_minor, tx_type, tx_date, tx_time, station, batch_id, created)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT DO NOTHING`,
			r.CardNumber, r.OfflineSerial, strings.ToUpper(r.Terminal), b.City, r.TSN, r.AmountMinor, r.Type, r.Date, r.Time, r.Station, b.ID, now)
		if err != nil {
			return n, err
		}
		if k, err := res.RowsAffected(); err == nil && k > 0 {
			n++
		}
	}
	return n, nil
}

// SettleProofs matches a card's proofs (reported by the phone holding it)
// against the in-doubt intents of gates and clears those whose TAC verifies.
// It answers how many taps it cleared.
func (s *Service) SettleProofs(ctx context.Context, bearer, number string, proofs []CardProof) (int, error) {
	if len(proofs) > MaxProofs {
		return 0, mipay.Errorf(mipay.ETOOLARGE, "at most %d proofs at once", MaxProofs)
	}
	c, _, err := s.ownedCard(ctx, bearer, number)
	if err != nil {
		return 0, err
	}
	div, err := emv.EPurseDiversifier(number)
	if err != nil {
		return 0, err
	}
	cleared := 0
	for _, p := range proofs {
		tac, err := hex.DecodeString(p.TAC)
		if err != nil || len(tac) != 4 || p.OfflineSerial < 0 || p.OfflineSerial > 0xFFFF {
			return cleared, mipay.Errorf(mipay.EINVALID, "a proof is an offline serial 0–65535 and a 4-byte hex TAC")
		}
		rows, err := s.db.DB.QueryContext(ctx, `SELECT terminal, tsn, amount_minor, tx_type, tx_date, tx_time, station FROM transit_indoubt
			WHERE card_number = $1 AND offline_serial = $2 ORDER BY terminal`, number, p.OfflineSerial)
		if err != nil {
			return cleared, err
		}
		var cands []GateRecord
		for rows.Next() {
			r := GateRecord{CardNumber: number, OfflineSerial: p.OfflineSerial, TAC: strings.ToUpper(p.TAC)}
			if err := rows.Scan(&r.Terminal, &r.TSN, &r.AmountMinor, &r.Type, &r.Date, &r.Time, &r.Station); err != nil {
				rows.Close()
				return cleared, err
			}
			cands = append(cands, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return cleared, err
		}
		for _, r := range cands {
			tx, tsn, tacb, ok := tacInput(&r)
			if !ok {
				continue
			}
			good, err := s.verifyTACs(ctx, CityKeys(c.City).DTK, []hsm.EPursePurchaseTACCheck{{Diversifier: div, Tx: tx, TermSerial: tsn, TAC: tacb}})
			if err != nil {
				return cleared, fmt.Errorf("transit: verify TAC: %w", err)
			}
			if !good[0] {
				continue // not this session's debit
			}
			res, err := s.Clear(ctx, Batch{ID: fmt.Sprintf("proof-%s-%d-%s", number, r.OfflineSerial, r.Terminal), City: c.City, Terminal: r.Terminal, Records: []GateRecord{r}})
			if err != nil {
				return cleared, err
			}
			cleared += res.Cleared
			// Cleared now or before (a gate uploaded the record after all):
			// no intent of this serial is in doubt any more.
			if _, err := s.db.DB.ExecContext(ctx, `DELETE FROM transit_indoubt WHERE card_number = $1 AND offline_serial = $2`, number, r.OfflineSerial); err != nil {
				return cleared, err
			}
			break
		}
	}
	return cleared, nil
}
