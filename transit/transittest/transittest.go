// Package transittest runs a transit agency in a test (its HTTP API on a
// loopback httptest server, a software HSM, a recording acquirer that can
// lose answers) with phones whose secure elements are real se.SE instances,
// and drives the load protocol the way the Mi Wallet app does, with a cut
// at any step.
package transittest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/se"
	"github.com/mipay-oss/mipay/store/storetest"
	"github.com/mipay-oss/mipay/transit"
)

// Agency is a running agency.
type Agency struct {
	Svc   *transit.Service
	URL   string
	Token string // operator token
	Acq   *Acquirer
	Acc   *Accounts
	Ref   *config.Reference
	HSM   *hsm.Soft
	dir   string
	skew  atomic.Int64 // Advance moves the agency's clock
}

// Advance moves the agency's clock forward.
func (a *Agency) Advance(d time.Duration) { a.skew.Add(int64(d)) }

func (a *Agency) now() time.Time { return time.Now().Add(time.Duration(a.skew.Load())) }

// NewAgency starts an agency over the default reference data.
func NewAgency(tb testing.TB) *Agency {
	tb.Helper()
	ref, err := config.Default()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	h, err := hsm.OpenSoft(context.Background(), hsm.SoftConfig{Dir: dir + "/hsm"})
	if err != nil {
		tb.Fatal(err)
	}
	for _, c := range ref.Cities {
		if !c.Transit() {
			continue
		}
		k := transit.CityKeys(c.ID)
		for _, kv := range []struct {
			h    hsm.Handle
			role string
		}{{k.DPK, "dpk"}, {k.DLK, "dlk"}, {k.DTK, "dtk"}} {
			if err := h.ImportKey(context.Background(), kv.h, hsm.TDES2, TestMaster(c.ID, kv.role)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	a := &Agency{Acq: &Acquirer{}, Acc: &Accounts{m: map[string][]transit.Device{}}, Ref: ref, HSM: h, dir: dir, Token: "operator-" + tb.Name()}
	db := storetest.Open(tb, "transit", transit.Migrations())
	a.Svc, err = transit.New(context.Background(), transit.Config{DB: db, HSM: h, Ref: ref, Acquirer: a.Acq, Accounts: a.Acc, Now: a.now})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(transit.Handler(a.Svc, a.Token))
	tb.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// City returns a city of the reference data.
func (a *Agency) City(tb testing.TB, id string) *config.City {
	c, ok := a.Ref.City(id)
	if !ok {
		tb.Fatalf("no city %s", id)
	}
	return c
}

// TestMaster is the fixed master key a test agency holds for city and role
// ("dpk", "dlk", "dtk"), so tests and benchmarks can compute what cards
// compute (e.g. TACs of generated gate records).
func TestMaster(city, role string) []byte {
	sum := sha256.Sum256([]byte("mipay transit test master\x00" + city + "\x00" + role))
	k := sum[:16]
	emv.OddParity(k)
	return k
}

// Accounts is the Mi account service: bearer → devices.
type Accounts struct {
	mu sync.Mutex
	m  map[string][]transit.Device
}

// Devices implements transit.Accounts.
func (a *Accounts) Devices(_ context.Context, bearer string) ([]transit.Device, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ds, ok := a.m[bearer]
	if !ok {
		return nil, mipay.Errorf(mipay.EUNAUTHORIZED, "sign in")
	}
	return append([]transit.Device(nil), ds...), nil
}

// Add gives the account of bearer a device.
func (a *Accounts) Add(bearer string, d transit.Device) { a.add(bearer, d) }

func (a *Accounts) add(bearer string, d transit.Device) {
	a.mu.Lock()
	a.m[bearer] = append(a.m[bearer], d)
	a.mu.Unlock()
}

// Acquirer records what the network charged: a purchase the "network"
// approved counts even when its answer is lost (CutAnswer), as a real
// switch would have booked it.
type Acquirer struct {
	mu        sync.Mutex
	approved  map[string]int64
	reversed  map[string]bool
	CutAnswer bool // the next purchase is approved but its answer is lost
	Decline   bool // purchases are declined
}

// Purchase implements transit.Acquirer.
func (a *Acquirer) Purchase(_ context.Context, p transit.Purchase) (transit.PurchaseResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.approved == nil {
		a.approved, a.reversed = map[string]int64{}, map[string]bool{}
	}
	if a.Decline {
		return transit.PurchaseResult{ResponseCode: "51"}, nil
	}
	a.approved[p.ID] = p.AmountMinor
	if a.CutAnswer {
		a.CutAnswer = false
		return transit.PurchaseResult{}, errors.New("connection cut")
	}
	return transit.PurchaseResult{Approved: true, ResponseCode: "00", AuthCode: "123456"}, nil
}

// Reverse implements transit.Acquirer.
func (a *Acquirer) Reverse(_ context.Context, p transit.Purchase) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reversed == nil {
		a.approved, a.reversed = map[string]int64{}, map[string]bool{}
	}
	a.reversed[p.ID] = true
	return nil
}

// Charged is what the cardholder paid in the end: approved minus reversed.
func (a *Acquirer) Charged() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int64
	for id, v := range a.approved {
		if !a.reversed[id] {
			n += v
		}
	}
	return n
}

// Phone is a handset: its SE, its device on the account, the session.
type Phone struct {
	SE       *se.SE
	DeviceID string
	Bearer   string
	Dir      string
	agency   *Agency
}

// NewPhone makes a phone on the account of bearer.
func (a *Agency) NewPhone(tb testing.TB, bearer string) *Phone {
	tb.Helper()
	dir := tb.TempDir()
	f, err := se.OpenFactory(dir)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := se.Manufacture(dir+"/se", f, se.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	p := &Phone{SE: s, DeviceID: "dev_" + s.ID(), Bearer: bearer, Dir: dir + "/se", agency: a}
	a.Acc.add(bearer, AttestedDevice(p.DeviceID, s))
	return p
}

// AttestedDevice is the wallet's view of a registered device whose SE
// attestation checked: its id, the SE's id and the digest of its key.
func AttestedDevice(deviceID string, s *se.SE) transit.Device {
	sum := sha256.Sum256(s.PublicKey())
	return transit.Device{ID: deviceID, SEID: s.ID(), SEKeySHA256: hex.EncodeToString(sum[:])}
}

// PhoneFor wraps an existing SE (e.g. a phone package handset's) as a test
// phone on the account of bearer.
func (a *Agency) PhoneFor(s *se.SE, deviceID, bearer string) *Phone {
	a.Acc.add(bearer, AttestedDevice(deviceID, s))
	return &Phone{SE: s, DeviceID: deviceID, Bearer: bearer, agency: a}
}

func (p *Phone) client() httpx.Client { return httpx.Client{Base: p.agency.URL, Token: p.Bearer} }

// Payment is a well-formed in-app payment for amount (the recording
// acquirer does not check the cryptogram; the network tests do).
func Payment(amount int64) *transit.InAppPayment {
	amt, _ := hex.DecodeString(fmt.Sprintf("%012d", amount))
	icc := emv.AppendTLV(nil, 0x9F02, amt)
	icc = emv.AppendTLV(icc, 0x9F26, make([]byte, 8))
	return &transit.InAppPayment{DPAN: "6290001234567890", PSN: 1, Expiry: "3012", ICC: icc, Entry: "091"}
}

// Issue issues a card of city on the phone and installs it in the SE.
func (p *Phone) Issue(tb testing.TB, city string) string {
	tb.Helper()
	c := p.agency.City(tb, city)
	req := transit.IssueRequest{DeviceID: p.DeviceID, SEID: p.SE.ID(), SEPublicKey: p.SE.PublicKey()}
	if c.IssueFeeMinor > 0 {
		req.Payment = Payment(c.IssueFeeMinor)
	}
	var res transit.IssueResult
	cl := p.client()
	if err := cl.Do(context.Background(), "POST", "/v1/cities/"+city+"/cards", req, &res); err != nil {
		tb.Fatalf("issue %s: %v", city, err)
	}
	p.install(tb, res.Profile)
	return res.Card.CardNumber
}

func (p *Phone) install(tb testing.TB, prof transit.Profile) {
	b, err := json.Marshal(prof)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := p.SE.InstallTransit(b); err != nil {
		tb.Fatalf("install: %v", err)
	}
}

// Balance is the card's balance in the SE.
func (p *Phone) Balance(tb testing.TB, number string) int64 {
	for _, c := range p.SE.TransitCards() {
		if c.CardNumber == number {
			return int64(c.BalanceMinor)
		}
	}
	tb.Fatalf("no card %s in the SE", number)
	return 0
}

// Cut says where a top-up stops, as if the connection dropped there.
type Cut int

// Cuts.
const (
	CutNone          Cut = iota
	CutAfterPayment      // paid, the phone never comes back before resume
	CutAfterInit         // INITIALIZE FOR LOAD done, authorize never sent
	CutAfterMAC2Sent     // the host sent MAC2, the phone never got it
	CutBeforeTAC         // the card credited, the TAC never reached the host
	CutPaymentAnswer     // the network approved, the agency never got the answer
)

// ErrCut is the error of a cut top-up.
var ErrCut = errors.New("transittest: connection cut")

func (p *Phone) transmit(apdu []byte) ([]byte, error) {
	r := p.SE.Transmit(apdu)
	if len(r) < 2 {
		return nil, errors.New("short answer")
	}
	if w := binary.BigEndian.Uint16(r[len(r)-2:]); w != emv.SWSuccess {
		return nil, fmt.Errorf("SW %04X %s", w, emv.SWText(w))
	}
	return r[:len(r)-2], nil
}

func (p *Phone) selectCard(number string) error {
	for _, c := range p.SE.TransitCards() {
		if c.CardNumber == number {
			_, err := p.transmit(append(append([]byte{0x00, 0xA4, 0x04, 0x00, byte(len(c.AID))}, c.AID...), 0))
			return err
		}
	}
	return fmt.Errorf("no card %s", number)
}

func (p *Phone) initForLoad(l *transit.Load) ([]byte, error) {
	term, err := hex.DecodeString(l.Terminal)
	if err != nil {
		return nil, err
	}
	cmd := append([]byte{0x80, 0x50, 0x00, 0x02, 0x0B, 0x01}, binary.BigEndian.AppendUint32(nil, uint32(l.AmountMinor))...)
	return p.transmit(append(append(cmd, term...), 0x10))
}

// TopUp pays and loads amount, stopping at cut.
func (p *Phone) TopUp(ctx context.Context, number string, amount int64, requestID string, cut Cut) (*transit.Load, error) {
	cl := p.client()
	if cut == CutPaymentAnswer {
		p.agency.Acq.mu.Lock()
		p.agency.Acq.CutAnswer = true
		p.agency.Acq.mu.Unlock()
	}
	var l transit.Load
	if err := cl.Do(ctx, "POST", "/v1/loads", transit.LoadRequest{CardNumber: number, AmountMinor: amount, RequestID: requestID, Payment: *Payment(amount)}, &l); err != nil {
		return nil, err
	}
	if cut == CutAfterPayment {
		return &l, ErrCut
	}
	return p.finish(ctx, &l, cut)
}

// finish runs INITIALIZE FOR LOAD → authorize → CREDIT FOR LOAD → confirm
// (or proof → confirm when the card already applied the load).
func (p *Phone) finish(ctx context.Context, l *transit.Load, cut Cut) (*transit.Load, error) {
	cl := p.client()
	if err := p.selectCard(l.CardNumber); err != nil {
		return l, err
	}
	init, err := p.initForLoad(l)
	if err != nil {
		return l, err
	}
	if cut == CutAfterInit {
		return l, ErrCut
	}
	var auth transit.AuthorizeResult
	if err := cl.Do(ctx, "POST", "/v1/loads/"+l.ID+"/authorize", map[string]string{"init": hex.EncodeToString(init)}, &auth); err != nil {
		return l, err
	}
	if cut == CutAfterMAC2Sent {
		return l, ErrCut
	}
	var tac []byte
	if auth.Applied {
		serial := init[4:6]
		prev := binary.BigEndian.Uint16(serial) - 1
		pr, err := p.transmit([]byte{0x80, 0x5A, 0x00, emv.EPurseTypeLoad, 0x02, byte(prev >> 8), byte(prev), 0x08})
		if err != nil {
			return l, err
		}
		tac = pr[4:8]
	} else {
		cmd := append([]byte{0x80, 0x52, 0x00, 0x00, 0x0B}, mustHex(auth.Date)...)
		cmd = append(append(cmd, mustHex(auth.Time)...), mustHex(auth.MAC2)...)
		if tac, err = p.transmit(append(cmd, 0x04)); err != nil {
			return l, err
		}
	}
	if cut == CutBeforeTAC {
		return l, ErrCut
	}
	var done transit.Load
	if err := cl.Do(ctx, "POST", "/v1/loads/"+l.ID+"/confirm", map[string]string{"tac": hex.EncodeToString(tac)}, &done); err != nil {
		return l, err
	}
	return &done, nil
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// Resume finishes the card's open load, if any (what the app does when it
// starts).
func (p *Phone) Resume(ctx context.Context, number string) (*transit.Load, error) {
	cl := p.client()
	var out struct {
		Load *transit.Load `json:"load"`
	}
	if err := cl.Do(ctx, "GET", "/v1/cards/"+number+"/pending-load", nil, &out); err != nil {
		return nil, err
	}
	if out.Load == nil {
		return nil, nil
	}
	return p.finish(ctx, out.Load, CutNone)
}

// Cancel cancels an open load with a fresh INITIALIZE FOR LOAD.
func (p *Phone) Cancel(ctx context.Context, l *transit.Load) (*transit.Load, error) {
	if err := p.selectCard(l.CardNumber); err != nil {
		return nil, err
	}
	init, err := p.initForLoad(l)
	if err != nil {
		return nil, err
	}
	var out transit.Load
	cl := p.client()
	err = cl.Do(ctx, "POST", "/v1/loads/"+l.ID+"/cancel", map[string]string{"init": hex.EncodeToString(init)}, &out)
	return &out, err
}

// Move moves a card to another phone of the account and loads the moved
// balance there.
func (p *Phone) Move(ctx context.Context, tb testing.TB, number string, to *Phone) (string, error) {
	cl := p.client()
	var res transit.IssueResult
	if err := cl.Do(ctx, "POST", "/v1/cards/"+number+"/move", transit.MoveRequest{ToDeviceID: to.DeviceID, ToSEID: to.SE.ID(), ToSEPublicKey: to.SE.PublicKey()}, &res); err != nil {
		return "", err
	}
	to.install(tb, res.Profile)
	if res.Load != nil {
		if _, err := to.finish(ctx, res.Load, CutNone); err != nil {
			return "", err
		}
	}
	return res.Card.CardNumber, nil
}

// SECard is a phone's SE in a reader's field (a gate.Card).
type SECard struct{ S *se.SE }

// Transmit implements gate.Card.
func (c SECard) Transmit(_ context.Context, apdu []byte) ([]byte, error) {
	return c.S.Transmit(apdu), nil
}

// ReportProofs sends the card's purchase proofs to the agency (what the
// app does when it lists its cards) and returns how many in-doubt taps
// they cleared.
func (p *Phone) ReportProofs(ctx context.Context, number string) (int, error) {
	proofs, err := p.SE.PurchaseProofs(number)
	if err != nil {
		return 0, err
	}
	in := struct {
		Proofs []transit.CardProof `json:"proofs"`
	}{Proofs: []transit.CardProof{}}
	for _, pr := range proofs {
		in.Proofs = append(in.Proofs, transit.CardProof{OfflineSerial: int64(pr.OfflineSerial), TAC: fmt.Sprintf("%X", pr.TAC)})
	}
	var out struct {
		Cleared int `json:"cleared"`
	}
	cl := p.client()
	err = cl.Do(ctx, "POST", "/v1/cards/"+number+"/proofs", in, &out)
	return out.Cleared, err
}
