package e2e

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/se"
)

// cardSource makes 0200s with genuine cryptograms straight from an SE
// through the POS kernel, without a radio or a terminal: a load generator
// (the crash test) or a phone whose wallet would refuse to tap (the
// suspended-token test).
type cardSource struct {
	se       *se.SE
	tokenRef string
	kernel   pos.Kernel
	ttc      uint32
}

// seSession hands APDUs straight to an SE.
type seSession struct{ s *se.SE }

func (c seSession) Transmit(_ context.Context, apdu []byte) ([]byte, error) {
	return c.s.Transmit(apdu), nil
}

// newCardSource makes 0200s from the SE itself (its ATCs advance for real).
func newCardSource(tb testing.TB, s *se.SE) *cardSource {
	tb.Helper()
	cards := s.Cards()
	if len(cards) != 1 {
		tb.Fatalf("SE holds %d cards, want 1", len(cards))
	}
	return &cardSource{se: s, tokenRef: cards[0].TokenRef, kernel: pos.Kernel{Profile: pos.DefaultTerminalProfile()}}
}

// volatileCardSource makes 0200s from an in-memory copy of the phone's SE
// (no fsync per cryptogram); the phone must not pay with that card again,
// since its own SE does not know the ATCs the copy used.
func volatileCardSource(tb testing.TB, dataDir string, p *phone.Phone) *cardSource {
	tb.Helper()
	vol, err := se.Open(filepath.Join(dataDir, "phones", p.Name(), "se"), se.Options{Volatile: true})
	if err != nil {
		tb.Fatal(err)
	}
	return newCardSource(tb, vol)
}

// next reads the card for amountMinor with the cardholder's fingerprint
// (CDCVM) and builds the 0200 the terminal would send, without its
// per-transmission fields (see stamp).
func (c *cardSource) next(ctx context.Context, amountMinor int64) (*iso8583.Message, error) {
	if err := c.se.Arm(c.tokenRef); err != nil {
		return nil, err
	}
	cur, err := pos.CurrencyBCD("156")
	if err != nil {
		return nil, err
	}
	c.ttc++
	read, err := c.kernel.ReadCard(ctx, seSession{c.se}, pos.Txn{AmountMinor: amountMinor, Currency: cur, Time: time.Now(), TTC: c.ttc})
	if err != nil {
		return nil, err
	}
	if read.Outcome != pos.OutcomeOnline {
		return nil, fmt.Errorf("card read ended %s", read.Outcome)
	}
	m, err := pos.TerminalConfig{MerchantName: "MIPAY E2E"}.FinancialRequest(read, amountMinor, "156")
	if err != nil {
		return nil, err
	}
	return m, nil
}

// stamp sets a message's transmission identity: terminal (DE41, 8
// characters), STAN, RRN and the times.
func stamp(m *iso8583.Message, terminal string, stan uint32, rrn string) {
	now := time.Now()
	m.SetString(7, now.UTC().Format("0102150405"))
	m.SetString(11, iso8583.FormatSTAN(stan))
	m.SetString(12, now.Format("150405"))
	m.SetString(13, now.Format("0102"))
	m.SetString(37, rrn)
	m.SetString(41, terminal)
}

// liftLimits takes off the limits a burst of payments on one card trips
// (velocity, daily amount, balance): tests of the path, not of the limits.
func liftLimits(ref *config.Reference, issuerIDs ...string) {
	for i := range ref.Issuers {
		is := &ref.Issuers[i]
		if len(issuerIDs) > 0 && !contains(issuerIDs, is.ID) {
			continue
		}
		is.Limits.VelocityPerHour = math.MaxInt32
		is.Limits.DailyMinor = math.MaxInt64 / 4
		for j := range is.Cardholders {
			is.Cardholders[j].BalanceMinor = 1 << 40
			if is.Cardholders[j].CreditLimitMinor > 0 {
				is.Cardholders[j].CreditLimitMinor = 1 << 40
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
