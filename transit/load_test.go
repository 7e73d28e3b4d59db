package transit_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/transit"
	"github.com/mipay-oss/mipay/transit/transittest"
)

// TestTopUpNeverLosesMoney cuts the connection at every step of a top-up;
// after recovery (the app resumes, or the user cancels, or the sweeper
// refunds) money charged equals money loaded and no load is applied twice.
func TestTopUpNeverLosesMoney(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	const amount = 5000
	type recovery int
	const (
		resume recovery = iota
		cancel
		sweep
	)
	cases := []struct {
		name   string
		cut    transittest.Cut
		how    recovery
		loaded bool // the card ends up with the amount
	}{
		{"no cut", transittest.CutNone, resume, true},
		{"after payment, resumed", transittest.CutAfterPayment, resume, true},
		{"after payment, abandoned and swept", transittest.CutAfterPayment, sweep, false},
		{"after payment, cancelled", transittest.CutAfterPayment, cancel, false},
		{"after INITIALIZE FOR LOAD, resumed", transittest.CutAfterInit, resume, true},
		{"after MAC2 sent, resumed with the same serial", transittest.CutAfterMAC2Sent, resume, true},
		{"after MAC2 sent, cancelled", transittest.CutAfterMAC2Sent, cancel, false},
		{"after MAC2 sent, sweeper leaves it for the card", transittest.CutAfterMAC2Sent, sweep, false},
		{"before TAC, resumed with the proof", transittest.CutBeforeTAC, resume, true},
		{"before TAC, cancel refused then resumed", transittest.CutBeforeTAC, cancel, true},
		{"payment answer lost", transittest.CutPaymentAnswer, resume, false},
	}
	var wantLoaded, fees int64
	fee := a.City(t, "sz").IssueFeeMinor
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ph := a.NewPhone(t, fmt.Sprintf("user-%d", i))
			card := ph.Issue(t, "sz")
			fees += fee
			l, err := ph.TopUp(ctx, card, amount, "r1", tc.cut)
			switch {
			case tc.cut == transittest.CutNone && err != nil:
				t.Fatal(err)
			case tc.cut == transittest.CutPaymentAnswer:
				if mipay.ErrorCode(err) != mipay.EUNAVAILABLE {
					t.Fatalf("lost payment answer: err %v, want unavailable", err)
				}
			case tc.cut != transittest.CutNone && !errors.Is(err, transittest.ErrCut):
				t.Fatalf("cut: %v", err)
			}
			switch tc.how {
			case resume:
				if _, err := ph.Resume(ctx, card); err != nil {
					t.Fatalf("resume: %v", err)
				}
			case cancel:
				_, err := ph.Cancel(ctx, l)
				if tc.loaded {
					if mipay.ErrorCode(err) != mipay.ECONFLICT {
						t.Fatalf("cancel of an applied load: %v, want conflict", err)
					}
					if _, err := ph.Resume(ctx, card); err != nil {
						t.Fatalf("resume: %v", err)
					}
				} else if err != nil {
					t.Fatalf("cancel: %v", err)
				}
			case sweep:
				a.Advance(transit.DefaultPaidLoadTimeout + time.Minute)
				if err := a.Svc.Sweep(ctx); err != nil {
					t.Fatal(err)
				}
				if tc.cut == transittest.CutAfterMAC2Sent {
					// Not refunded: MAC2 is out. The app finishes it later.
					if _, err := ph.Resume(ctx, card); err != nil {
						t.Fatalf("resume after sweep: %v", err)
					}
					tc.loaded = true
				}
			}
			// A second resume finds nothing and changes nothing.
			if l, err := ph.Resume(ctx, card); err != nil || l != nil {
				t.Fatalf("second resume: %+v %v", l, err)
			}
			want := int64(0)
			if tc.loaded {
				want = amount
			}
			if got := ph.Balance(t, card); got != want {
				t.Fatalf("card balance %d, want %d", got, want)
			}
			c, err := a.Svc.Card(ctx, card)
			if err != nil {
				t.Fatal(err)
			}
			if c.LoadedMinor != want {
				t.Fatalf("agency loaded %d, want %d", c.LoadedMinor, want)
			}
			wantLoaded += want
			if got := a.Acq.Charged(); got != wantLoaded+fees {
				t.Fatalf("charged %d in all, loaded %d and %d of issuance fees", got, wantLoaded, fees)
			}
		})
	}
}

func TestTopUpRules(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	ph := a.NewPhone(t, "u1")
	card := ph.Issue(t, "sh")
	t.Run("idempotent request id", func(t *testing.T) {
		if _, err := ph.TopUp(ctx, card, 1000, "same", transittest.CutNone); err != nil {
			t.Fatal(err)
		}
		l, err := ph.TopUp(ctx, card, 1000, "same", transittest.CutAfterPayment)
		if !errors.Is(err, transittest.ErrCut) || l.State != transit.LoadLoaded {
			t.Fatalf("replayed request: %+v %v", l, err)
		}
		if got := a.Acq.Charged(); got != 1000 {
			t.Fatalf("charged %d for one request", got)
		}
	})
	t.Run("one open load per card", func(t *testing.T) {
		if _, err := ph.TopUp(ctx, card, 500, "open", transittest.CutAfterPayment); !errors.Is(err, transittest.ErrCut) {
			t.Fatal(err)
		}
		if _, err := ph.TopUp(ctx, card, 500, "second", transittest.CutNone); mipay.ErrorCode(err) != mipay.ECONFLICT {
			t.Fatalf("second open load: %v, want conflict", err)
		}
		if _, err := ph.Resume(ctx, card); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("declined payment loads nothing", func(t *testing.T) {
		a.Acq.Decline = true
		defer func() { a.Acq.Decline = false }()
		if _, err := ph.TopUp(ctx, card, 500, "declined", transittest.CutNone); mipay.ErrorCode(err) != mipay.EDECLINED {
			t.Fatalf("declined: %v", err)
		}
	})
	t.Run("above the maximum balance", func(t *testing.T) {
		if _, err := ph.TopUp(ctx, card, 200000, "big", transittest.CutNone); mipay.ErrorCode(err) != mipay.EINVALID {
			t.Fatalf("too big: %v", err)
		}
	})
	t.Run("someone else's card", func(t *testing.T) {
		other := a.NewPhone(t, "u2")
		if _, err := other.TopUp(ctx, card, 500, "x", transittest.CutNone); mipay.ErrorCode(err) != mipay.ENOTFOUND {
			t.Fatalf("other account: %v", err)
		}
	})
	if got, bal := a.Acq.Charged(), ph.Balance(t, card); got != bal {
		t.Fatalf("charged %d, card holds %d", got, bal)
	}
}

// TestAuthorizeRetriedSameSession: the load host's answer is lost and the
// app asks again for the same card session; whichever MAC2 the card then
// uses, its TAC confirms the load.
func TestAuthorizeRetriedSameSession(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	ph := a.NewPhone(t, "retry")
	card := ph.Issue(t, "wh")
	l, err := ph.TopUp(ctx, card, 700, "r", transittest.CutAfterPayment)
	if !errors.Is(err, transittest.ErrCut) {
		t.Fatal(err)
	}
	c := httpx.Client{Base: a.URL, Token: ph.Bearer}
	aid := a.City(t, "wh").AIDBytes()
	transmit := func(apdu []byte) []byte {
		r := ph.SE.Transmit(apdu)
		if len(r) < 2 || r[len(r)-2] != 0x90 {
			t.Fatalf("APDU %X → %X", apdu, r)
		}
		return r[:len(r)-2]
	}
	transmit(append(append([]byte{0x00, 0xA4, 0x04, 0x00, byte(len(aid))}, aid...), 0))
	term, _ := hex.DecodeString(l.Terminal)
	init := transmit(append(append([]byte{0x80, 0x50, 0x00, 0x02, 0x0B, 0x01, 0, 0, 0x02, 0xBC}, term...), 0x10))
	var first, second transit.AuthorizeResult
	if err := c.Do(ctx, "POST", "/v1/loads/"+l.ID+"/authorize", map[string]string{"init": hex.EncodeToString(init)}, &first); err != nil {
		t.Fatal(err)
	}
	a.Advance(3 * time.Second)
	if err := c.Do(ctx, "POST", "/v1/loads/"+l.ID+"/authorize", map[string]string{"init": hex.EncodeToString(init)}, &second); err != nil {
		t.Fatal(err)
	}
	if first.MAC2 != second.MAC2 || first.Time != second.Time {
		t.Fatalf("same session got MAC2 %s at %s, then %s at %s", first.MAC2, first.Time, second.MAC2, second.Time)
	}
	credit := append([]byte{0x80, 0x52, 0x00, 0x00, 0x0B}, mustHexT(t, first.Date+first.Time+first.MAC2)...)
	tac := transmit(append(credit, 0x04))
	var done transit.Load
	if err := c.Do(ctx, "POST", "/v1/loads/"+l.ID+"/confirm", map[string]string{"tac": hex.EncodeToString(tac)}, &done); err != nil || done.State != transit.LoadLoaded {
		t.Fatalf("confirm: %+v %v", done, err)
	}
}

func mustHexT(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
