package transit_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"testing"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/transit"
	"github.com/mipay-oss/mipay/transit/transittest"
)

// TestIssueRefusesUnattestedSEKey: the agency seals a card's keys only to
// the SE key the wallet attested for the device. A made-up key (which would
// get the purchase, load and TAC keys in the clear) is refused before the
// fee is taken — nothing issued, nothing charged — and so are moves and
// reinstalls to such a key.
func TestIssueRefusesUnattestedSEKey(t *testing.T) {
	ctx := context.Background()
	a := transittest.NewAgency(t)
	ph := a.NewPhone(t, "alice")
	forged, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cl := httpx.Client{Base: a.URL, Token: ph.Bearer}
	for _, city := range []string{"sz", "bj"} {
		fee := a.City(t, city).IssueFeeMinor
		req := transit.IssueRequest{DeviceID: ph.DeviceID, SEID: ph.SE.ID(), SEPublicKey: forged.PublicKey().Bytes()}
		if fee > 0 {
			req.Payment = transittest.Payment(fee)
		}
		var res transit.IssueResult
		err := cl.Do(ctx, "POST", "/v1/cities/"+city+"/cards", req, &res)
		if mipay.ErrorCode(err) != mipay.EFORBIDDEN {
			t.Fatalf("%s: issue to a forged SE key: %v (card %q)", city, err, res.Card.CardNumber)
		}
	}
	if got := a.Acq.Charged(); got != 0 {
		t.Fatalf("charged %d for refused issues", got)
	}
	var cards struct {
		Cards []transit.Card `json:"cards"`
	}
	if err := cl.Do(ctx, "GET", "/v1/cards", nil, &cards); err != nil || len(cards.Cards) != 0 {
		t.Fatalf("cards after refused issues: %+v %v", cards.Cards, err)
	}

	// A device the wallet reports without an attested key gets nothing either.
	bare := a.NewPhone(t, "bob")
	a.Acc.Add("bob", transit.Device{ID: "dev_bare", SEID: bare.SE.ID()})
	bobc := httpx.Client{Base: a.URL, Token: "bob"}
	err = bobc.Do(ctx, "POST", "/v1/cities/bj/cards",
		transit.IssueRequest{DeviceID: "dev_bare", SEID: bare.SE.ID(), SEPublicKey: bare.SE.PublicKey()}, nil)
	if mipay.ErrorCode(err) != mipay.EFORBIDDEN {
		t.Fatalf("issue to a device without an attested key: %v", err)
	}

	// The real key works; a move or a reinstall to a forged key does not.
	number := ph.Issue(t, "sz")
	other := a.NewPhone(t, "alice")
	err = cl.Do(ctx, "POST", "/v1/cards/"+number+"/move",
		transit.MoveRequest{ToDeviceID: other.DeviceID, ToSEID: other.SE.ID(), ToSEPublicKey: forged.PublicKey().Bytes()}, nil)
	if mipay.ErrorCode(err) != mipay.EFORBIDDEN {
		t.Fatalf("move to a forged SE key: %v", err)
	}
	err = cl.Do(ctx, "POST", "/v1/cards/"+number+"/profile", map[string][]byte{"sePublicKey": forged.PublicKey().Bytes()}, nil)
	if mipay.ErrorCode(err) != mipay.EFORBIDDEN {
		t.Fatalf("reinstall to a forged SE key: %v", err)
	}
	c, err := a.Svc.Card(ctx, number)
	if err != nil || c.Status != transit.CardActive {
		t.Fatalf("card after refused move: %+v %v", c, err)
	}
	if got, want := a.Acq.Charged(), a.City(t, "sz").IssueFeeMinor; got != want {
		t.Fatalf("charged %d, want only the one real issue's fee %d", got, want)
	}
}
