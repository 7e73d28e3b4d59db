package tsp

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
)

// TestConfirmProvisioningOneWrite: the confirmation checks the state and
// reads the token in its write; a repeat keeps the first time; a token that
// is not ACTIVE is refused and left unmarked; unknown references are 404s.
func TestConfirmProvisioningOneWrite(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, _ := f.mustActiveToken(t, config.Debit, "dev-confirm")
	first, err := f.svc.ConfirmProvisioning(ctx, res.TokenRef)
	if err != nil || !first.Provisioned || first.State != StateActive || first.TokenLast4 != res.TokenLast4 {
		t.Fatalf("confirm: %+v %v", first, err)
	}
	row, err := f.vault.Get(ctx, res.TokenRef)
	if err != nil || !row.Provisioned {
		t.Fatalf("stored: %+v %v", row, err)
	}
	f.svc.now = func() time.Time { return row.ProvisionedAt.Add(time.Hour) }
	if again, err := f.svc.ConfirmProvisioning(ctx, res.TokenRef); err != nil || !again.Provisioned {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	if after, _ := f.vault.Get(ctx, res.TokenRef); !after.ProvisionedAt.Equal(row.ProvisionedAt) {
		t.Fatalf("a repeat moved the time: %v → %v", row.ProvisionedAt, after.ProvisionedAt)
	}

	other, _ := f.mustActiveToken(t, config.Credit, "dev-confirm-2")
	if _, err := f.svc.Lifecycle(ctx, other.TokenRef, ActionSuspend, CausedByCardholder, "DEVICE_LOST"); err != nil {
		t.Fatal(err)
	}
	var e *mipay.Error
	if _, err := f.svc.ConfirmProvisioning(ctx, other.TokenRef); !errors.As(err, &e) || e.Code != mipay.ECONFLICT || e.Reason != "NOT_ACTIVE" {
		t.Fatalf("confirm of a suspended token: %v", err)
	}
	if r, _ := f.vault.Get(ctx, other.TokenRef); r.Provisioned {
		t.Fatal("a suspended token was marked provisioned")
	}
	for _, ref := range []string{"DTSP" + "00000000000000000000000000000000", "nope", ""} {
		if _, err := f.svc.ConfirmProvisioning(ctx, ref); mipay.ErrorCode(err) != mipay.ENOTFOUND {
			t.Fatalf("confirm %q: %v", ref, err)
		}
	}
}

// TestInsertRefusesADPANThatIsAPAN: the "never a PAN" check runs in the
// insert's transaction; nothing is stored when it fails.
func TestInsertRefusesADPANThatIsAPAN(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, _ := f.mustActiveToken(t, config.Debit, "dev-pan")
	held, err := f.vault.Get(ctx, res.TokenRef)
	if err != nil {
		t.Fatal(err)
	}
	r := *held
	r.Ref, r.DPAN = "DTSP"+"0123456789abcdef0123456789abcdef", "6299990000000001"
	first := f.svc.change(&r.Token, "", StateActive, CausedByTSP, "TOKEN_CREATED", time.Now())
	// The new DPAN's lookup HMAC equals the PAN HMAC of a card in the vault.
	if err := f.vault.Insert(ctx, &r, held.PANHMAC, first, "acct-ref-1"); !errors.Is(err, errDPANIsPAN) {
		t.Fatalf("insert: %v", err)
	}
	if _, err := f.vault.Get(ctx, r.Ref); mipay.ErrorCode(err) != mipay.ENOTFOUND {
		t.Fatalf("the refused token was stored: %v", err)
	}
	if h, err := f.vault.History(ctx, r.Ref); err != nil || len(h) != 0 {
		t.Fatalf("history of the refused token: %v %v", h, err)
	}
	if a, err := loadAccountRef(ctx, f.vault.db.DB, r.Ref); err != nil || a != "" {
		t.Fatalf("account reference of the refused token: %q %v", a, err)
	}
	other, err := f.keys.MAC(ctx, []byte(hmacLabelDPAN+r.DPAN))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.vault.Insert(ctx, &r, other, first, "acct-ref-1"); err != nil {
		t.Fatalf("insert with a DPAN that is no PAN: %v", err)
	}
	if a, err := loadAccountRef(ctx, f.vault.db.DB, r.Ref); err != nil || a != "acct-ref-1" {
		t.Fatalf("account reference stored with the token: %q %v", a, err)
	}
	// The same reference again is a collision, not a PAN.
	if err := f.vault.Insert(ctx, &r, other, first, ""); !errors.Is(err, errDPANTaken) {
		t.Fatalf("second insert: %v", err)
	}
}

// TestGetNoATC reads what Get reads except the ATC.
func TestGetNoATC(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, _ := f.mustActiveToken(t, config.Credit, "dev-noatc")
	if _, err := f.vault.db.DB.ExecContext(ctx, `UPDATE token_atc SET last_atc = 7 WHERE ref = $1`, res.TokenRef); err != nil {
		t.Fatal(err)
	}
	full, err := f.vault.Get(ctx, res.TokenRef)
	if err != nil || full.LastATC != 7 {
		t.Fatalf("get: %+v %v", full, err)
	}
	lean, err := f.vault.GetNoATC(ctx, res.TokenRef)
	if err != nil || lean.LastATC != -1 {
		t.Fatalf("get without ATC: %+v %v", lean, err)
	}
	lean.LastATC = full.LastATC
	if lean.DPAN != full.DPAN || lean.SEID != full.SEID || string(lean.SEPublicKey) != string(full.SEPublicKey) ||
		lean.State != full.State || lean.PSN != full.PSN || lean.IssuerID != full.IssuerID || lean.Expiry != full.Expiry {
		t.Fatalf("rows differ: %+v / %+v", lean, full)
	}
	if _, err := f.vault.GetNoATC(ctx, "DTSP"+"ffffffffffffffffffffffffffffffff"); mipay.ErrorCode(err) != mipay.ENOTFOUND {
		t.Fatalf("unknown: %v", err)
	}
}
