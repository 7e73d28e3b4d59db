package tsp

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/emv"
	"github.com/mipay-oss/mipay/events"
	"github.com/mipay-oss/mipay/hsm"
	"github.com/mipay-oss/mipay/issuer"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/sms"
	"github.com/mipay-oss/mipay/store"
)

// world is the TSP with the real issuer host and SMS gateway on loopback.
type world struct {
	ref     *config.Reference
	h       *hsm.Soft
	bus     *events.Bus
	dataDir string
	tspURL  string
	smsURL  string
	tsp     *Party
	cred    Credentials
	logs    *syncBuffer
	events  *eventLog
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type eventLog struct {
	mu  sync.Mutex
	raw [][]byte
}

// hsmHasher is the issuer's keyed hash over the HSM.
type hsmHasher struct{ h hsm.HSM }

func (k hsmHasher) HMAC(ctx context.Context, data []byte) ([]byte, error) {
	return k.h.HMAC(ctx, "issuer/hash", data)
}

func startWorld(t testing.TB, tune ...func(*config.Reference)) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{ref: mustDefaultRef(t), dataDir: t.TempDir(), logs: &syncBuffer{}, events: &eventLog{}}
	for _, f := range tune {
		f(w.ref)
	}
	log := slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	if w.h, err = hsm.OpenSoft(ctx, hsm.SoftConfig{Dir: filepath.Join(w.dataDir, "hsm")}); err != nil {
		t.Fatal(err)
	}
	if err := w.h.EnsureKey(ctx, "issuer/hash", hsm.HMACSHA256); err != nil {
		t.Fatal(err)
	}
	if w.bus, err = events.Open(ctx, events.Config{Dir: filepath.Join(w.dataDir, "nats")}, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.bus.Close() })
	sub, err := w.bus.Subscribe(ctx, ">", "", func(_ context.Context, e events.Event) error {
		w.events.mu.Lock()
		w.events.raw = append(w.events.raw, append([]byte(nil), e.Data...))
		w.events.mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	sc := store.Config{Dir: w.dataDir}
	env := func(role string) *node.Env {
		return &node.Env{Role: role, DataDir: w.dataDir, Store: sc, Bus: w.bus, HSM: w.h, Log: log, Ref: w.ref,
			Listen: map[string]string{"http": "127.0.0.1:0"}, Peers: map[string]map[string]string{}}
	}
	sp, err := sms.StartParty(ctx, env(node.RoleSMS))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(context.Background()) })
	w.smsURL = sp.Addrs()["http"]

	idb, err := store.Open(ctx, sc, "issuer", issuer.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	host, err := issuer.NewHost(ctx, issuer.Options{Ref: w.ref, DB: idb, Hasher: hsmHasher{w.h}, SMS: issuer.NewHTTPSMS(w.smsURL), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	isrv := httptest.NewServer(host.Handler())
	t.Cleanup(func() { isrv.Close(); host.Close(); idb.Close() })

	te := env(node.RoleTSP)
	te.Peers[node.RoleIssuer] = map[string]string{"http": isrv.URL}
	if w.tsp, err = StartParty(ctx, te); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.tsp.Close(context.Background()) })
	w.tspURL = w.tsp.Addrs()["http"]
	if w.cred, err = LoadCredentials(w.dataDir); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) do(t testing.TB, method, path string, body, out any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, w.tspURL+path, rd)
	req.Header.Set("Authorization", "Bearer "+w.cred.RequestorToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(buf.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode, buf.Bytes()
}

// phone is the handset side: an SE key pair and the card data sealing.
type phone struct {
	w   *world
	se  *ecdh.PrivateKey
	dev string
}

func (w *world) newPhone(t testing.TB, dev string) *phone {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &phone{w: w, se: k, dev: dev}
}

// iccKey fetches the token's profile and opens its key as the SE does.
func (p *phone) iccKey(t testing.TB, ref string) emv.Key {
	t.Helper()
	var prof Profile
	if st, data := p.w.do(t, "GET", "/v1/tokens/"+ref+"/provisioning", nil, &prof); st != 200 {
		t.Fatalf("profile %d %s", st, data)
	}
	mk, err := cryptobox.Open(p.se, prof.SealedKey, ProfileKeyAAD(prof.SEID, prof.TokenRef))
	if err != nil || len(mk) != 16 {
		t.Fatalf("SE cannot open the card key: %v", err)
	}
	return emv.Key(mk)
}

func (p *phone) tokenize(t testing.TB, c CardData) (int, TokenizeResponse, []byte) {
	t.Helper()
	var key EncryptionKey
	if st, data := p.w.do(t, "GET", "/v1/keys/encryption", nil, &key); st != 200 {
		t.Fatalf("key: %d %s", st, data)
	}
	raw, _ := base64.StdEncoding.DecodeString(key.Key)
	pub, err := ecdh.P256().NewPublicKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := json.Marshal(c)
	blob, err := cryptobox.Seal(pub, pt, CardDataAAD(miPay))
	if err != nil {
		t.Fatal(err)
	}
	req := TokenizeRequest{TokenRequestorID: miPay, AccountID: "acct-e2e", EncryptedCardData: base64.StdEncoding.EncodeToString(blob),
		Device: Device{DeviceID: p.dev, SEID: "se-" + p.dev, SEPublicKey: base64.StdEncoding.EncodeToString(p.se.PublicKey().Bytes()), Model: "Mi 5"},
		Risk:   Risk{AccountAgeDays: 30, DeviceScore: 4}}
	var res TokenizeResponse
	st, data := p.w.do(t, "POST", "/v1/tokenize", req, &res)
	return st, res, data
}

var otpRE = regexp.MustCompile(`code is (\d{4,8})`)

// lastOTP reads the newest code sent to phone from the SMS outbox.
func (w *world) lastOTP(t *testing.T, phoneNumber string) string {
	t.Helper()
	resp, err := http.Get(w.smsURL + "/v1/outbox/" + phoneNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Messages []struct{ Text string } `json:"messages"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	for i := len(out.Messages) - 1; i >= 0; i-- {
		if m := otpRE.FindStringSubmatch(out.Messages[i].Text); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no code in the outbox of %s", phoneNumber)
	return ""
}

func cardholder(t *testing.T, ref *config.Reference, issuerID string, n int) config.Cardholder {
	t.Helper()
	is, ok := ref.Issuer(issuerID)
	if !ok || len(is.Cardholders) <= n {
		t.Fatalf("no cardholder %d of %s", n, issuerID)
	}
	return is.Cardholders[n]
}

func TestEndToEndWithIssuerAndSMS(t *testing.T) {
	w := startWorld(t)
	ctx := context.Background()
	p := w.newPhone(t, "dev-e2e-1")
	var pans []string

	t.Run("green", func(t *testing.T) {
		ch := cardholder(t, w.ref, "icbc-credit", 0)
		pans = append(pans, ch.PAN)
		st, res, data := p.tokenize(t, cardOf(ch))
		if st != 201 || res.Decision != DecisionApproved || res.State != StateActive || res.IssuerID != "icbc-credit" {
			t.Fatalf("%d %s", st, data)
		}
		var prof Profile
		if st, data := w.do(t, "GET", "/v1/tokens/"+res.TokenRef+"/provisioning", nil, &prof); st != 200 || prof.AID != AIDCredit {
			t.Fatalf("profile %d %s", st, data)
		}
		if st, data := w.do(t, "POST", "/v1/tokens/"+res.TokenRef+"/confirm-provisioning", struct{}{}, nil); st != 200 {
			t.Fatalf("confirm %d %s", st, data)
		}
	})
	var yellowRef string
	t.Run("yellow with the code from the SMS outbox", func(t *testing.T) {
		ch := cardholder(t, w.ref, "boc-debit", 0)
		pans = append(pans, ch.PAN)
		st, res, data := p.tokenize(t, cardOf(ch))
		if st != 201 || res.Decision != DecisionRequireAdditional || res.State != StateInactive || len(res.AuthenticationMethods) == 0 {
			t.Fatalf("%d %s", st, data)
		}
		yellowRef = res.TokenRef
		m := res.AuthenticationMethods[0]
		var sent OTPRequested
		if st, data := w.do(t, "POST", "/v1/tokens/"+res.TokenRef+"/authentication/request", map[string]string{"methodId": m.ID}, &sent); st != 200 {
			t.Fatalf("request %d %s", st, data)
		}
		code := w.lastOTP(t, ch.Phone)
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		st, data = w.do(t, "POST", "/v1/tokens/"+res.TokenRef+"/authentication/verify", map[string]string{"code": wrong}, nil)
		if st != 400 || !strings.Contains(string(data), "attempts left") {
			t.Fatalf("wrong code: %d %s", st, data)
		}
		var vr VerifyResponse
		if st, data := w.do(t, "POST", "/v1/tokens/"+res.TokenRef+"/authentication/verify", map[string]string{"code": code}, &vr); st != 200 || vr.State != StateActive {
			t.Fatalf("verify %d %s", st, data)
		}
	})
	t.Run("wrong code five times locks", func(t *testing.T) {
		ch := cardholder(t, w.ref, "boc-debit", 1)
		pans = append(pans, ch.PAN)
		_, res, data := p.tokenize(t, cardOf(ch))
		if res.State != StateInactive {
			t.Fatalf("%s", data)
		}
		w.do(t, "POST", "/v1/tokens/"+res.TokenRef+"/authentication/request", map[string]string{"methodId": res.AuthenticationMethods[0].ID}, nil)
		code := w.lastOTP(t, ch.Phone)
		var st int
		for i := 0; i < 5; i++ {
			wrong := fmt.Sprintf("%06d", i)
			if wrong == code {
				wrong = "999999"
			}
			st, data = w.do(t, "POST", "/v1/tokens/"+res.TokenRef+"/authentication/verify", map[string]string{"code": wrong}, nil)
		}
		if st != 423 {
			t.Fatalf("fifth wrong code: %d %s", st, data)
		}
		var v TokenView
		w.do(t, "GET", "/v1/tokens/"+res.TokenRef, nil, &v)
		if v.State != StateDeactivated {
			t.Fatalf("locked binding left the token %s", v.State)
		}
	})
	t.Run("red: phone mismatch", func(t *testing.T) {
		ch := cardholder(t, w.ref, "ccb-debit", 0)
		c := cardOf(ch)
		c.Phone = "13900000000"
		st, res, data := p.tokenize(t, c)
		if st != 200 || res.Decision != DecisionDeclined || res.Reason != "PHONE_MISMATCH" || res.TokenRef != "" {
			t.Fatalf("%d %s", st, data)
		}
	})
	t.Run("red: CVN2 attempt limit", func(t *testing.T) {
		ch := cardholder(t, w.ref, "ccb-credit", 0)
		pans = append(pans, ch.PAN)
		is, _ := w.ref.Issuer("ccb-credit")
		c := cardOf(ch)
		c.CVN2 = fmt.Sprintf("%03d", (atoi(ch.CVN2)+1)%1000)
		var res TokenizeResponse
		for i := 0; i < is.Limits.CVN2MaxAttempts; i++ {
			_, res, _ = p.tokenize(t, c)
			if res.Reason != "CARD_DETAILS_MISMATCH" {
				t.Fatalf("attempt %d: %+v", i, res)
			}
		}
		_, res, data := p.tokenize(t, cardOf(ch)) // right CVN2, too late
		if res.Decision != DecisionDeclined || res.Reason != "TOO_MANY_ATTEMPTS" {
			t.Fatalf("%s", data)
		}
	})
	t.Run("unsupported BIN and Luhn failure", func(t *testing.T) {
		st, res, data := p.tokenize(t, CardData{PAN: "4111111111111111", Expiry: "3012", Phone: "13800000000"})
		if st != 200 || res.Decision != DecisionDeclined || res.Reason != ReasonCardNotSupported {
			t.Fatalf("%d %s", st, data)
		}
		ch := cardholder(t, w.ref, "icbc-debit", 0)
		c := cardOf(ch)
		c.PAN = c.PAN[:len(c.PAN)-1] + string('0'+(c.PAN[len(c.PAN)-1]-'0'+1)%10)
		if st, _, data := p.tokenize(t, c); st != 400 || !strings.Contains(string(data), "not valid") {
			t.Fatalf("%d %s", st, data)
		}
	})
	t.Run("authorize the yellow token", func(t *testing.T) {
		a, err := NewAuthorizer(ctx, AuthorizerConfig{Store: store.Config{Dir: w.dataDir}, HSM: w.h, Bus: w.bus, Ref: w.ref})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		tok, err := w.tsp.Vault.Get(ctx, yellowRef)
		if err != nil {
			t.Fatal(err)
		}
		c := &card{dpan: tok.DPAN, psn: tok.PSN, expiry: tok.Expiry, mk: p.iccKey(t, yellowRef)}
		out, err := a.Authorize(ctx, c.tap(1250, true))
		if err != nil || !out.Approved || out.PAN != cardholder(t, w.ref, "boc-debit", 0).PAN {
			t.Fatalf("%+v %v", out.Decline, err)
		}
		if st, data := w.do(t, "POST", "/v1/tokens/"+yellowRef+"/suspend", map[string]string{"causedBy": "CARDHOLDER", "reason": "DEVICE_LOST"}, nil); st != 200 {
			t.Fatalf("%d %s", st, data)
		}
		deadline := time.Now().Add(time.Second)
		for {
			out, err := a.Authorize(ctx, c.tap(1250, true))
			if err != nil {
				t.Fatal(err)
			}
			if out.Decline == DeclineTokenSuspended {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("suspension not seen within 1 s: %+v", out)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("no plaintext PAN anywhere", func(t *testing.T) {
		w.tsp.Vault.db.DB.ExecContext(ctx, `PRAGMA wal_checkpoint(FULL)`)
		for _, fn := range []string{"tsp.db", "tsp.db-wal", "tsp.db-shm"} {
			data, err := os.ReadFile(filepath.Join(w.dataDir, fn))
			if err != nil {
				continue
			}
			for _, pan := range pans {
				bcd, _ := bcdPadF(pan)
				if bytes.Contains(data, []byte(pan)) || bytes.Contains(data, bcd) {
					t.Fatalf("%s holds PAN %s", fn, MaskPAN(pan))
				}
			}
		}
		logs := w.logs.String()
		if strings.Contains(logs, "token notice to issuer failed") || strings.Contains(logs, "publish token state change failed") {
			t.Fatalf("notices or events failed:\n%s", logs)
		}
		w.events.mu.Lock()
		evs := bytes.Join(w.events.raw, []byte("\n"))
		w.events.mu.Unlock()
		if len(evs) == 0 {
			t.Fatal("no events seen")
		}
		for _, pan := range pans {
			if strings.Contains(logs, pan) {
				t.Fatalf("log holds PAN %s", MaskPAN(pan))
			}
			if bytes.Contains(evs, []byte(pan)) {
				t.Fatalf("an event holds PAN %s", MaskPAN(pan))
			}
		}
	})
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// BenchmarkProvisioning is the green path through the HTTP APIs on
// loopback with the real issuer host: tokenize, fetch the SE profile,
// confirm. It reports cards/s and the p99 of the three calls together.
func BenchmarkProvisioning(b *testing.B) {
	w := startWorld(b, func(r *config.Reference) {
		for i := range r.Issuers {
			r.Issuers[i].Limits.BindingsPerCardPerDay = 1 << 30
			r.Issuers[i].Limits.BindingsPerDevicePerDay = 1 << 30
		}
	})
	// Green-path cards: issuers without alwaysOtp, credit and debit.
	var cards []config.Cardholder
	for _, is := range w.ref.Issuers {
		if !is.OTP.AlwaysOTP {
			cards = append(cards, is.Cardholders...)
		}
	}
	var next atomic.Int64
	var mu sync.Mutex
	var lat, latTok, latProf, latConf []time.Duration
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		p := w.newPhone(b, "")
		var mine, mTok, mProf, mConf []time.Duration
		for pb.Next() {
			i := next.Add(1)
			p.dev = fmt.Sprintf("bench-%d", i)
			ch := cards[int(i)%len(cards)]
			t0 := time.Now()
			st, res, data := p.tokenize(b, cardOf(ch))
			t1 := time.Now()
			mTok = append(mTok, t1.Sub(t0))
			if st != 201 || res.State != StateActive {
				b.Errorf("tokenize %d %s", st, data)
				return
			}
			if st, data := w.do(b, "GET", "/v1/tokens/"+res.TokenRef+"/provisioning", nil, nil); st != 200 {
				b.Errorf("profile %d %s", st, data)
				return
			}
			t2 := time.Now()
			mProf = append(mProf, t2.Sub(t1))
			if st, data := w.do(b, "POST", "/v1/tokens/"+res.TokenRef+"/confirm-provisioning", struct{}{}, nil); st != 200 {
				b.Errorf("confirm %d %s", st, data)
				return
			}
			mConf = append(mConf, time.Since(t2))
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		latTok, latProf, latConf = append(latTok, mTok...), append(latProf, mProf...), append(latConf, mConf...)
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	if len(lat) == 0 {
		return
	}
	// CPU of the whole process (TSP, issuer host, SMS gateway and the
	// client) per card: the capacity figure on a shared machine, where wall
	// time is mostly waiting for the CPU and the disk.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(len(lat)), "cpu-ms/card")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "cards/s")
	b.ReportMetric(pct(lat, 99), "p99-ms")
	b.ReportMetric(pct(latTok, 50), "tokenize-p50-ms")
	b.ReportMetric(pct(latProf, 50), "profile-p50-ms")
	b.ReportMetric(pct(latConf, 50), "confirm-p50-ms")
}

// pct is the p-th percentile of d in milliseconds.
func pct(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return float64(d[len(d)*p/100].Microseconds()) / 1000
}
