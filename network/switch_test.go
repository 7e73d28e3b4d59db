package network

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/store/storetest"
	"github.com/mipay-oss/mipay/tsp"
)

// fakeTokens stands in for the TSP: one token, ATC strictly increasing.
type fakeTokens struct {
	mu      sync.Mutex
	token   string
	pan     string
	state   string
	lastATC uint16
	detoks  int
}

func (f *fakeTokens) Authorize(_ context.Context, r tsp.AuthRequest) (tsp.AuthResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := tsp.AuthResult{TokenRef: "REF-" + f.token[len(f.token)-4:], IssuerID: "icbc-debit", TokenRequestorID: "50110030273"}
	switch {
	case r.Token != f.token:
		res.Decline = tsp.DeclineUnknownToken
	case f.state != "ACTIVE":
		res.Decline = tsp.DeclineTokenSuspended
	case len(r.ARQC) == 0:
		res.Decline = tsp.DeclineDomain
	case r.ICC.ATCValue() <= f.lastATC:
		res.Decline = tsp.DeclineReplay
	default:
		f.lastATC = r.ICC.ATCValue()
		res.Approved, res.PAN, res.PANExpiry, res.CryptogramValid, res.ATC = true, f.pan, "2911", true, r.ICC.ATCValue()
	}
	return res, nil
}

func (f *fakeTokens) ARPC(_ context.Context, _ string, _ uint16, arqc [8]byte, arc [2]byte) ([8]byte, error) {
	var out [8]byte
	copy(out[:], arqc[:])
	out[0] ^= arc[0]
	return out, nil
}

func (f *fakeTokens) Detokenize(context.Context, string, string, string) (string, string, error) {
	f.mu.Lock()
	f.detoks++
	f.mu.Unlock()
	return f.pan, "2911", nil
}

// fakeIssuer is an ISO 8583 issuer host whose behaviour a test sets.
type fakeIssuer struct {
	addr      string
	auths     atomic.Int64
	reversals atomic.Int64
	delay     atomic.Int64 // ns before answering authorizations
	rc        atomic.Value // string
	lastPAN   atomic.Value
}

func startIssuer(t *testing.T) *fakeIssuer {
	t.Helper()
	f := &fakeIssuer{}
	f.rc.Store("00")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	srv := iso8583.NewServer(iso8583.ServerConfig{}, func(ctx context.Context, req *iso8583.Message) (*iso8583.Message, error) {
		resp := req.Response(2, 3, 4, 7, 11, 32, 37, 41, 49, 90)
		switch req.MTI() {
		case "0100", "0200":
			f.auths.Add(1)
			f.lastPAN.Store(req.String(2))
			time.Sleep(time.Duration(f.delay.Load()))
			rc := f.rc.Load().(string)
			resp.SetString(39, rc)
			if rc == "00" {
				resp.SetString(38, "A12345")
			}
		default:
			f.reversals.Add(1)
			resp.SetString(39, "00")
			// As an issuer host answers the reversal of an approval that
			// earned points: the discount and points taken back, the balance.
			de124, _ := iso8583.Promotion{DiscountAmount: "000000000250", PointsEarned: "12", PointsBalance: "30"}.Encode()
			resp.SetString(iso8583.FieldPromotion, de124)
		}
		return resp, nil
	})
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return f
}

type fakeBus struct {
	mu       sync.Mutex
	events   []TransactionEvent
	subjects []string // of events, in order
	raw      [][]byte // of events, in order
}

func (b *fakeBus) PublishID(_ context.Context, _, subject string, v any) error {
	raw, _ := json.Marshal(v)
	var e TransactionEvent
	if err := json.Unmarshal(raw, &e); err != nil {
		return err
	}
	b.mu.Lock()
	b.events = append(b.events, e)
	b.subjects = append(b.subjects, subject)
	b.raw = append(b.raw, raw)
	b.mu.Unlock()
	return nil
}

func (b *fakeBus) PublishBatch(ctx context.Context, evs []events.Outgoing) ([]bool, error) {
	ok := make([]bool, len(evs))
	for i, e := range evs {
		if err := b.PublishID(ctx, e.ID, e.Subject, e.Data); err != nil {
			return ok, err
		}
		ok[i] = true
	}
	return ok, nil
}

// published returns the payloads of the events published under subject.
func (b *fakeBus) published(subject string) [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out [][]byte
	for i, s := range b.subjects {
		if s == subject {
			out = append(out, b.raw[i])
		}
	}
	return out
}

type harness struct {
	sw     *Switch
	tokens *fakeTokens
	iss    *fakeIssuer
	bus    *fakeBus
	ref    *config.Reference
	stan   atomic.Int64
	atc    atomic.Int64
}

func mustSwitch(t *testing.T, mutate func(*config.Reference)) *harness {
	t.Helper()
	ref, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(ref)
	}
	iss := startIssuer(t)
	client, err := iso8583.Dial(context.Background(), iso8583.ClientConfig{Addr: iss.addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	is, _ := ref.Issuer("icbc-debit")
	h := &harness{iss: iss, ref: ref, bus: &fakeBus{},
		tokens: &fakeTokens{token: is.TokenBINs[0] + "0000000017", pan: is.Cardholders[0].PAN, state: "ACTIVE"}}
	h.tokens.token = luhnComplete(is.TokenBINs[0] + "123456789")
	db := storetest.Open(t, "network", Migrations())
	sw, err := New(context.Background(), Config{
		Ref: ref, DB: db, Tokens: h.tokens, Bus: h.bus, ReversalRetry: 20 * time.Millisecond, PANSealer: testSealer(t),
		Issuers: func(string) (IssuerLink, bool) { return client, true },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	h.sw = sw
	return h
}

func luhnComplete(body string) string { return body + config.LuhnDigit(body) }

// request builds a tokenized 0200 as a QuickPass terminal sends it.
func (h *harness) request(amount int64) *iso8583.Message {
	stan := h.stan.Add(1)
	atc := uint16(h.atc.Add(1))
	var tx emv.TxData
	amt, _ := iso8583.FormatAmount(amount)
	b, _ := hex.DecodeString(amt)
	copy(tx.Amount[:], b)
	tx.ATC = [2]byte{byte(atc >> 8), byte(atc)}
	icc := emv.AppendTLV(nil, 0x9F26, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	icc = emv.AppendTLV(icc, 0x9F10, []byte{7, 1, 1, 3, 0xA0, 0, 0, 1})
	for _, f := range []struct {
		tag uint32
		v   []byte
	}{{0x9F02, tx.Amount[:]}, {0x9F03, tx.AmountOther[:]}, {0x9F1A, []byte{1, 0x56}}, {0x95, tx.TVR[:]},
		{0x5F2A, []byte{1, 0x56}}, {0x9A, []byte{0x26, 0x11, 0x26}}, {0x9C, []byte{0}}, {0x9F37, []byte{1, 2, 3, 4}},
		{0x82, []byte{0x18, 0}}, {0x9F36, tx.ATC[:]}} {
		icc = emv.AppendTLV(icc, f.tag, f.v)
	}
	m := &iso8583.Message{}
	m.SetMTI("0200")
	m.SetString(2, h.tokens.token)
	m.SetString(3, "000000")
	m.SetString(4, amt)
	m.SetString(7, time.Now().UTC().Format("0102150405"))
	m.SetString(11, iso8583.FormatSTAN(uint32(stan)))
	m.SetString(14, "3012")
	m.SetString(22, "072")
	m.SetString(32, "48020000")
	m.SetString(37, "000000"+iso8583.FormatSTAN(uint32(stan)))
	m.SetString(41, "TERM0001")
	m.SetString(42, "MERCHANT0000001")
	m.SetString(43, "MI HOME BEIJING          BEIJING      CN")
	m.SetString(49, "156")
	m.Set(55, icc)
	return m
}

func (h *harness) send(t *testing.T, m *iso8583.Message) *iso8583.Message {
	t.Helper()
	resp, err := h.sw.Handle(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestAuthorize(t *testing.T) {
	t.Run("approved: token back in DE2, PAN to the issuer, ARPC in 91", func(t *testing.T) {
		h := mustSwitch(t, nil)
		resp := h.send(t, h.request(1250))
		if resp.String(39) != "00" || resp.String(38) != "A12345" || resp.String(2) != h.tokens.token {
			t.Fatalf("answer 39=%s 38=%s", resp.String(39), resp.String(38))
		}
		if h.iss.lastPAN.Load() != h.tokens.pan {
			t.Fatal("issuer did not get the PAN")
		}
		v, ok, err := iso8583.FindTLV(resp.Field(55), 0x91)
		if err != nil || !ok || len(v) != 10 || string(v[8:]) != "00" {
			t.Fatalf("tag 91 % X (%v)", v, err)
		}
	})
	t.Run("duplicate gets the stored answer, issuer asked once", func(t *testing.T) {
		h := mustSwitch(t, nil)
		m := h.request(1250)
		a := h.send(t, m)
		b := h.send(t, m)
		pa, _ := a.Pack()
		pb, _ := b.Pack()
		if string(pa) != string(pb) || h.iss.auths.Load() != 1 {
			t.Fatalf("duplicate: issuer asked %d times, same answer %v", h.iss.auths.Load(), string(pa) == string(pb))
		}
	})
	t.Run("concurrent duplicates answered once", func(t *testing.T) {
		h := mustSwitch(t, nil)
		h.iss.delay.Store(int64(50 * time.Millisecond))
		m := h.request(1250)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := h.send(t, m.Clone()); r.String(39) != "00" {
					t.Errorf("rc %s", r.String(39))
				}
			}()
		}
		wg.Wait()
		if h.iss.auths.Load() != 1 {
			t.Fatalf("issuer asked %d times", h.iss.auths.Load())
		}
	})
	t.Run("issuer decline passes through", func(t *testing.T) {
		h := mustSwitch(t, nil)
		h.iss.rc.Store("51")
		if r := h.send(t, h.request(1250)); r.String(39) != "51" || r.Has(38) {
			t.Fatalf("rc %s", r.String(39))
		}
	})
	t.Run("suspended token declined 62 without asking the issuer", func(t *testing.T) {
		h := mustSwitch(t, nil)
		h.tokens.state = "SUSPENDED"
		if r := h.send(t, h.request(1250)); r.String(39) != "62" || h.iss.auths.Load() != 0 {
			t.Fatalf("rc %s, issuer asked %d", r.String(39), h.iss.auths.Load())
		}
	})
	t.Run("no cryptogram declined 57", func(t *testing.T) {
		h := mustSwitch(t, nil)
		m := h.request(1250)
		m.Unset(55)
		m.SetString(22, "812")
		if r := h.send(t, m); r.String(39) != "57" {
			t.Fatalf("rc %s", r.String(39))
		}
	})
	t.Run("unknown BIN declined 14", func(t *testing.T) {
		h := mustSwitch(t, nil)
		m := h.request(1250)
		m.SetString(2, luhnComplete("400000000000000"))
		if r := h.send(t, m); r.String(39) != "14" {
			t.Fatalf("rc %s", r.String(39))
		}
	})
	t.Run("malformed request answered 30", func(t *testing.T) {
		h := mustSwitch(t, nil)
		m := h.request(1250)
		m.SetString(4, "12X")
		if r := h.send(t, m); r.String(39) != "30" {
			t.Fatalf("rc %s", r.String(39))
		}
	})
	t.Run("slow issuer: 91 and the late approval reversed", func(t *testing.T) {
		h := mustSwitch(t, func(r *config.Reference) {
			is, _ := r.Issuer("icbc-debit")
			is.Timeout = config.Duration(50 * time.Millisecond)
			is.StandIn.Enabled = false
		})
		h.iss.delay.Store(int64(200 * time.Millisecond))
		if r := h.send(t, h.request(1250)); r.String(39) != "91" {
			t.Fatalf("rc %s", r.String(39))
		}
		waitFor(t, func() bool { return h.iss.reversals.Load() == 1 })
	})
	t.Run("slow issuer within stand-in limits: approved by the switch", func(t *testing.T) {
		h := mustSwitch(t, func(r *config.Reference) {
			is, _ := r.Issuer("icbc-debit")
			is.Timeout = config.Duration(50 * time.Millisecond)
			is.StandIn = config.StandIn{Enabled: true, MaxMinor: 5000}
		})
		h.iss.delay.Store(int64(200 * time.Millisecond))
		r := h.send(t, h.request(1250))
		if r.String(39) != "00" || r.String(38)[0] != 'S' {
			t.Fatalf("rc %s code %s", r.String(39), r.String(38))
		}
		if r := h.send(t, h.request(9000)); r.String(39) != "91" {
			t.Fatalf("above stand-in limit: rc %s", r.String(39))
		}
	})
	t.Run("events published for tokenized decisions", func(t *testing.T) {
		h := mustSwitch(t, nil)
		h.send(t, h.request(1250))
		waitFor(t, func() bool { h.bus.mu.Lock(); defer h.bus.mu.Unlock(); return len(h.bus.events) == 1 })
		e := h.bus.events[0]
		if !e.Approved || e.AmountMinor != 1250 || e.TokenRef == "" || e.MerchantName != "MI HOME BEIJING" {
			t.Fatalf("event %+v", e)
		}
	})
}

func TestReversal(t *testing.T) {
	h := mustSwitch(t, nil)
	orig := h.request(1250)
	if r := h.send(t, orig); r.String(39) != "00" {
		t.Fatal(r.String(39))
	}
	rev := func(stan uint32) *iso8583.Message {
		de90, _ := iso8583.OriginalData{MTI: "0200", STAN: orig.String(11), TransmissionTime: orig.String(7), AcquirerID: orig.String(32)}.Format()
		m := orig.Clone()
		m.SetMTI("0400")
		m.Unset(55)
		m.SetString(11, iso8583.FormatSTAN(stan))
		m.SetString(90, de90)
		return m
	}
	for i, stan := range []uint32{900001, 900002, 900002} {
		if r := h.send(t, rev(stan)); r.String(39) != "00" {
			t.Fatalf("reversal %d: rc %s", i, r.String(39))
		}
	}
	waitFor(t, func() bool { return h.iss.reversals.Load() >= 1 })
	time.Sleep(100 * time.Millisecond)
	if n := h.iss.reversals.Load(); n != 1 {
		t.Fatalf("issuer got %d reversals for one approval", n)
	}
	t.Run("transaction.reversed published once, with the issuer's points, no PAN", func(t *testing.T) {
		waitFor(t, func() bool { return len(h.bus.published(SubjectTransactionReversed)) >= 1 })
		time.Sleep(100 * time.Millisecond)
		evs := h.bus.published(SubjectTransactionReversed)
		if len(evs) != 1 {
			t.Fatalf("%d transaction.reversed events for one reversed approval", len(evs))
		}
		var e ReversalEvent
		if err := json.Unmarshal(evs[0], &e); err != nil {
			t.Fatal(err)
		}
		var authorized []TransactionEvent
		h.bus.mu.Lock()
		for i, s := range h.bus.subjects {
			if s == SubjectTransactionAuthorized {
				authorized = append(authorized, h.bus.events[i])
			}
		}
		h.bus.mu.Unlock()
		if len(authorized) != 1 {
			t.Fatalf("%d transaction.authorized events: the reversals' own answers are none", len(authorized))
		}
		if e.TransactionID != authorized[0].TransactionID || e.TokenRef == "" || e.AmountMinor != 1250 ||
			e.DiscountMinor != 250 || e.Points == nil || e.Points.Earned != 12 || e.Points.Balance != 30 {
			t.Fatalf("event %+v, approval %+v", e, authorized[0])
		}
		h.tokens.mu.Lock()
		pan := h.tokens.pan
		h.tokens.mu.Unlock()
		if strings.Contains(string(evs[0]), pan) || strings.Contains(string(evs[0]), orig.String(2)) {
			t.Fatalf("a card number in the event: %s", evs[0])
		}
	})
	t.Run("reversal of an unknown original", func(t *testing.T) {
		m := rev(900003)
		de90, _ := iso8583.OriginalData{MTI: "0200", STAN: "123456", TransmissionTime: orig.String(7), AcquirerID: orig.String(32)}.Format()
		m.SetString(90, de90)
		if r := h.send(t, m); r.String(39) != "25" {
			t.Fatalf("rc %s", r.String(39))
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
