package main

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/cryptobox"
	"github.com/mipay-oss/mipay/httpx"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/logmask"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/se"
)

// `mipay bench lifecycle`: switch-off propagation. One phone holds --tokens
// cards (1,000 by default: far above Mi Pay's 8, so the bench's reference
// data raises the per-device limit and its SE holds that many). Each round
// the owner switches Mi Pay off on the device through the wallet API the
// portal calls (a second-factor session); from that call, every token is
// probed with genuine 0200s over the switch's ISO 8583 link until the switch
// refuses it (62). The round's figure is the time until all were refused;
// each token's own time goes into the per-token figures. "Found it" then
// resumes them, and every token is probed until it is approved again, so
// the next round starts from a system that pays.

// Bench lifecycle limits.
const (
	maxLifecycleTokens  = 5000
	maxLifecycleRounds  = 1000
	lifecycleProbers    = 64               // 0200s in flight
	lifecycleBinders    = 8                // bindings in flight while provisioning
	lifecycleRoundLimit = 60 * time.Second // a phase that does not end is a failure
	secondFactorMaxAge  = 9 * time.Minute  // found needs a second factor younger than 10 minutes
	lifecyclePassword   = "bench lifecycle password"
	lifecycleEmail      = "bench-lifecycle@example.com"
	lifecycleNumber     = "13912345678"
)

func runBenchLifecycle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench lifecycle", "[flags]", stderr)
	tokens := fs.Int("tokens", 1000, "tokens (cards) on the one device")
	rounds := fs.Int("rounds", 20, "switch-off / found rounds")
	data := fs.String("data", "", "data directory for the parties (default: a fresh temporary one)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	switch {
	case *tokens < 1 || *tokens > maxLifecycleTokens:
		return usagef("bench lifecycle: --tokens must be 1..%d", maxLifecycleTokens)
	case *rounds < 1 || *rounds > maxLifecycleRounds:
		return usagef("bench lifecycle: --rounds must be 1..%d", maxLifecycleRounds)
	}
	b := &lifecycleBench{tokens: *tokens, rounds: *rounds, progress: stderr}
	if *asJSON {
		b.progress = io.Discard
	}
	res, err := b.run(ctx, *data)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	printLifecycleBench(stdout, res)
	return nil
}

// Quantiles are milliseconds.
type Quantiles struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50Ms"`
	P99  float64 `json:"p99Ms"`
	Max  float64 `json:"maxMs"`
	Mean float64 `json:"meanMs"`
}

func quantiles(d []time.Duration) Quantiles {
	if len(d) == 0 {
		return Quantiles{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	at := func(p float64) float64 { return ms(s[max(int(math.Ceil(p*float64(len(s))))-1, 0)]) }
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	return Quantiles{N: len(s), P50: at(0.50), P99: at(0.99), Max: ms(s[len(s)-1]), Mean: ms(sum) / float64(len(s))}
}

// LifecycleResult is what `mipay bench lifecycle` reports.
type LifecycleResult struct {
	Machine          string  `json:"machine"`
	Tokens           int     `json:"tokens"`
	Rounds           int     `json:"rounds"`
	ProvisionSeconds float64 `json:"provisionSeconds"`
	// SwitchOffAPI is the wallet's switch-off call (what the portal's
	// button waits for); AllRefused the time from that call until the last
	// token was refused (one per round); PerToken each token's time from
	// the call to its first 62.
	SwitchOffAPI Quantiles `json:"switchOffApi"`
	AllRefused   Quantiles `json:"allRefused"`
	PerToken     Quantiles `json:"perToken"`
	// PerTokenLastApproved is, for the tokens approved after the call,
	// the time of their last approval: each token's switch-over lies
	// between this and its first 62.
	PerTokenLastApproved Quantiles `json:"perTokenLastApproved"`
	// FoundAPI is "found it"; AllResumed the time from its call until every
	// token was past the switch's state check again (its spent cryptogram
	// refused as a replay, 05, instead of 62).
	FoundAPI   Quantiles `json:"foundApi"`
	AllResumed Quantiles `json:"allResumed"`
	// WarmUp is the first payment of every token before the rounds.
	WarmUpSeconds float64 `json:"warmUpSeconds"`
	// ProbeInterval is how long a token waited between two probes while
	// it was still approved: the resolution of the per-token figures.
	ProbeInterval Quantiles      `json:"probeInterval"`
	Probes        int            `json:"probes"`
	ResponseCodes map[string]int `json:"responseCodes"`
	Seconds       float64        `json:"seconds"`
}

type lifecycleBench struct {
	tokens, rounds int
	progress       io.Writer
}

// lifecycleReference is bench auth's reference data (limits that a load
// does not trip) with the per-device card limit raised to the token count:
// the product's limit is 8 (config.DefaultMaxCardsPerDevice), this bench
// measures a device far beyond it.
func lifecycleReference(tokens int) (*config.Reference, error) {
	ref, err := benchReference()
	if err != nil {
		return nil, err
	}
	ref.MaxCardsPerDevice = max(tokens, config.DefaultMaxCardsPerDevice)
	for i := range ref.Issuers {
		ref.Issuers[i].Limits.BindingsPerCardPerDay = max(tokens, ref.Issuers[i].Limits.BindingsPerCardPerDay)
		ref.Issuers[i].Limits.BindingsPerDevicePerDay = max(tokens, ref.Issuers[i].Limits.BindingsPerDevicePerDay)
	}
	return ref, ref.Validate()
}

// lcToken is one provisioned token and the 0200 the bench sends next for
// it (a cryptogram not yet consumed: a 62 leaves it unconsumed).
type lcToken struct {
	ref   string
	next  *iso8583.Message // a fresh cryptogram
	spent *iso8583.Message // the last approved one: sent again, it is a replay
}

func (b *lifecycleBench) run(ctx context.Context, dataDir string) (*LifecycleResult, error) {
	start := time.Now()
	dataDir, cleanup, err := benchDataDir(dataDir, "mipay-bench-lifecycle-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	ref, err := lifecycleReference(b.tokens)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(b.progress, "starting the parties (data in %s)…\n", dataDir)
	var logTo io.Writer = io.Discard
	if os.Getenv("MIPAY_BENCH_LOG") != "" {
		logTo = os.Stderr // the parties' log, to see where a round's time goes
	}
	log := slog.New(logmask.NewHandler(slog.NewTextHandler(logTo, nil)))
	sys, err := local.Start(ctx, local.Options{DataDir: dataDir, Ref: ref, Log: log})
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = sys.Close(cctx)
	}()
	fmt.Fprintf(b.progress, "binding %d cards on one phone through the wallet, TSP and issuer…\n", b.tokens)
	provStart := time.Now()
	p, toks, err := b.provision(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("bench lifecycle: provisioning: %w", err)
	}
	res := &LifecycleResult{Machine: machineLine(), Tokens: b.tokens, Rounds: b.rounds,
		ProvisionSeconds: time.Since(provStart).Seconds(), ResponseCodes: map[string]int{}}
	owner := &lcOwner{w: httpx.Client{Base: sys.URL(node.RoleWallet), HTTP: &http.Client{Timeout: lifecycleRoundLimit}}, device: p.DeviceID()}
	pr, err := newProber(ctx, sys.Addr(node.RoleNetwork, "iso8583"), p.SE(), toks)
	if err != nil {
		return nil, err
	}
	defer pr.close()
	stopProfile, err := startCPUProfile(os.Getenv("MIPAY_BENCH_CPUPROFILE"))
	if err != nil {
		return nil, err
	}
	defer stopProfile()
	// Every token pays once first: the rounds start from tokens that work,
	// and each has a spent cryptogram for the found-it probes.
	fmt.Fprintf(b.progress, "paying once with each token…\n")
	warm := time.Now()
	if _, _, _, err := pr.phase(ctx, "00", nil); err != nil {
		return nil, fmt.Errorf("bench lifecycle: first payments: %w", err)
	}
	res.WarmUpSeconds = time.Since(warm).Seconds()
	var offAPI, allOff, perTok, lastOK, foundAPI, allOn []time.Duration
	for r := 0; r < b.rounds; r++ {
		fmt.Fprintf(b.progress, "\rround %d/%d", r+1, b.rounds)
		if err := owner.signIn(ctx); err != nil {
			return nil, err
		}
		// Switch off: the API call and the probes start together.
		api, times, approved, err := pr.phase(ctx, "62", func() error { return owner.do(ctx, "switch-off") })
		if err != nil {
			return nil, fmt.Errorf("bench lifecycle: round %d switch-off: %w", r+1, err)
		}
		offAPI, allOff = append(offAPI, api), append(allOff, slices.Max(times))
		perTok, lastOK = append(perTok, times...), append(lastOK, approved...)
		// Found it: every token must be past the state check again before
		// the next round.
		api, times, _, err = pr.phase(ctx, "05", func() error { return owner.do(ctx, "found") })
		if err != nil {
			return nil, fmt.Errorf("bench lifecycle: round %d found: %w", r+1, err)
		}
		foundAPI, allOn = append(foundAPI, api), append(allOn, slices.Max(times))
	}
	fmt.Fprintf(b.progress, "\r%s\r", "                    ")
	res.SwitchOffAPI, res.AllRefused, res.PerToken = quantiles(offAPI), quantiles(allOff), quantiles(perTok)
	res.PerTokenLastApproved = quantiles(lastOK)
	res.FoundAPI, res.AllResumed = quantiles(foundAPI), quantiles(allOn)
	res.ProbeInterval = quantiles(pr.intervals)
	res.Probes = int(pr.sent.Load())
	for k, v := range pr.codes {
		res.ResponseCodes[k] = v
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// provision registers the owner on one phone whose SE holds b.tokens cards
// (a volatile bench SE: no fsync per install or cryptogram) and binds them,
// cycling through the active demo cardholders.
func (b *lifecycleBench) provision(ctx context.Context, sys *local.System) (*phone.Phone, []*lcToken, error) {
	p, err := phone.Open(ctx, phone.Config{DataDir: sys.DataDir, Name: "bench-lifecycle",
		WalletURL: sys.URL(node.RoleWallet), SMSURL: sys.URL(node.RoleSMS),
		SE: se.Options{MaxPaymentCards: b.tokens, Volatile: true}})
	if err != nil {
		return nil, nil, err
	}
	if _, err := p.Register(ctx, lifecycleNumber, lifecycleEmail, lifecyclePassword); err != nil {
		return nil, nil, err
	}
	if err := p.Login(ctx, lifecycleNumber, lifecyclePassword); err != nil {
		return nil, nil, err
	}
	if err := p.EnrollFinger(ctx); err != nil {
		return nil, nil, err
	}
	var holders []config.Cardholder
	for _, is := range sys.Ref.Issuers {
		for _, c := range is.Cardholders {
			if c.Status == "" || c.Status == "active" {
				holders = append(holders, c)
			}
		}
	}
	if len(holders) == 0 {
		return nil, nil, fmt.Errorf("no active demo cardholders")
	}
	bd, err := newBinder(ctx, sys.URL(node.RoleWallet), p)
	if err != nil {
		return nil, nil, err
	}
	var done atomic.Int64
	stop := progressCount(b.progress, "bound", b.tokens, &done)
	defer stop()
	next := make(chan int)
	errs := make(chan error, lifecycleBinders)
	var wg sync.WaitGroup
	for w := 0; w < lifecycleBinders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				h := holders[i%len(holders)]
				if err := bd.bind(ctx, phone.CardDetails{PAN: h.PAN, Expiry: h.Expiry, CVN2: h.CVN2, Name: h.Name, Phone: h.Phone}); err != nil {
					errs <- fmt.Errorf("card %d: %w", i+1, err)
					return
				}
				done.Add(1)
			}
		}()
	}
feed:
	for i := 0; i < b.tokens; i++ {
		select {
		case next <- i:
		case err := <-errs:
			close(next)
			wg.Wait()
			return nil, nil, err
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, nil, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	cards := p.SE().Cards()
	if len(cards) != b.tokens {
		return nil, nil, fmt.Errorf("the SE holds %d cards, want %d", len(cards), b.tokens)
	}
	toks := make([]*lcToken, len(cards))
	for i, c := range cards {
		toks[i] = &lcToken{ref: c.TokenRef}
	}
	return p, toks, nil
}

// binder binds cards to the bench phone the way its Mi Wallet app does
// (card data sealed to the TSP's key, the wallet's binding, the profile
// installed in the SE, provisioning confirmed), several at once: the app
// binds one card at a time, and 1,000 of those would make the bench slow
// to start. The bindings go through the same wallet API and parties.
type binder struct {
	w   httpx.Client
	dev string
	se  *se.SE
	pub *ecdh.PublicKey
}

func newBinder(ctx context.Context, walletURL string, p *phone.Phone) (*binder, error) {
	bd := &binder{w: httpx.Client{Base: walletURL, HTTP: &http.Client{Timeout: 30 * time.Second}}, dev: p.DeviceID(), se: p.SE()}
	var sess struct {
		Token string `json:"token"`
	}
	if err := bd.w.Do(ctx, http.MethodPost, "/v1/sessions", map[string]string{"login": lifecycleNumber, "password": lifecyclePassword}, &sess); err != nil {
		return nil, err
	}
	bd.w.Token = sess.Token
	var key struct {
		Key string `json:"key"`
	}
	if err := bd.w.Do(ctx, http.MethodGet, "/v1/tsp-key", nil, &key); err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(key.Key)
	if err != nil {
		return nil, fmt.Errorf("the wallet gave a malformed TSP key: %w", err)
	}
	if bd.pub, err = ecdh.P256().NewPublicKey(raw); err != nil {
		return nil, fmt.Errorf("the wallet gave a malformed TSP key: %w", err)
	}
	return bd, nil
}

func (bd *binder) bind(ctx context.Context, c phone.CardDetails) error {
	pt, err := json.Marshal(c)
	if err != nil {
		return err
	}
	blob, err := cryptobox.Seal(bd.pub, pt, []byte("mipay tsp card data v1\x00"+phone.MiPayRequestorID))
	if err != nil {
		return err
	}
	var res phone.BindResult
	if err := bd.w.Do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(bd.dev)+"/cards",
		map[string]string{"encryptedCardData": base64.StdEncoding.EncodeToString(blob)}, &res); err != nil {
		return err
	}
	if res.Decision != phone.DecisionApproved {
		return fmt.Errorf("%s %s", res.Decision, res.Message)
	}
	var profile json.RawMessage
	if err := bd.w.Do(ctx, http.MethodGet, "/v1/cards/"+url.PathEscape(res.CardID)+"/provisioning", nil, &profile); err != nil {
		return err
	}
	if _, err := bd.se.Install(profile); err != nil {
		return err
	}
	return bd.w.Do(ctx, http.MethodPost, "/v1/cards/"+url.PathEscape(res.CardID)+"/provisioned", struct{}{}, nil)
}

// progressCount shows "bound 123/1000" on w until stopped.
func progressCount(w io.Writer, what string, total int, done *atomic.Int64) func() {
	if w == io.Discard {
		return func() {}
	}
	stop, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprintf(w, "\r%40s\r", "")
				return
			case <-t.C:
				fmt.Fprintf(w, "\r%s %d/%d", what, done.Load(), total)
			}
		}
	}()
	return func() { close(stop); <-finished }
}

// lcOwner is the phone's owner at the portal: a session opened with the
// password and the e-mailed code (found it needs such a session, younger
// than 10 minutes).
type lcOwner struct {
	w        httpx.Client
	device   string
	signedIn time.Time
}

var emailCodeRE = regexp.MustCompile(`\b[0-9]{6}\b`)

func (o *lcOwner) signIn(ctx context.Context) error {
	if o.w.Token != "" && time.Since(o.signedIn) < secondFactorMaxAge {
		return nil
	}
	var ch struct {
		ID string `json:"challengeId"`
	}
	o.w.Token = ""
	if err := o.w.Do(ctx, http.MethodPost, "/v1/portal/challenges", map[string]string{"login": lifecycleNumber, "password": lifecyclePassword}, &ch); err != nil {
		return fmt.Errorf("bench lifecycle: portal sign-in: %w", err)
	}
	var box struct {
		Messages []struct {
			Text string `json:"text"`
		} `json:"messages"`
	}
	if err := o.w.Do(ctx, http.MethodGet, "/v1/email-outbox/"+url.PathEscape(lifecycleEmail), nil, &box); err != nil || len(box.Messages) == 0 {
		return fmt.Errorf("bench lifecycle: no sign-in e-mail: %v", err)
	}
	code := emailCodeRE.FindString(box.Messages[len(box.Messages)-1].Text)
	var sess struct {
		Token string `json:"token"`
	}
	if err := o.w.Do(ctx, http.MethodPost, "/v1/portal/challenges/"+url.PathEscape(ch.ID)+"/verify", map[string]string{"emailCode": code}, &sess); err != nil {
		return fmt.Errorf("bench lifecycle: second factor: %w", err)
	}
	o.w.Token, o.signedIn = sess.Token, time.Now()
	return nil
}

// do runs a device-wide action and checks that every card took it.
func (o *lcOwner) do(ctx context.Context, action string) error {
	var out struct {
		Cards []struct {
			Error string `json:"error"`
		} `json:"cards"`
	}
	if err := o.w.Do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(o.device)+"/"+action, struct{}{}, &out); err != nil {
		return err
	}
	for _, c := range out.Cards {
		if c.Error != "" {
			return fmt.Errorf("%s: a card was refused: %s", action, c.Error)
		}
	}
	return nil
}

// prober sends each token's 0200 over pipelined links to the switch.
type prober struct {
	clients []*iso8583.Client
	card    *se.SE
	seMu    sync.Mutex // the SE offers one selected card at a time
	kernel  pos.Kernel
	toks    []*lcToken
	stan    atomic.Uint32
	sent    atomic.Int64

	mu        sync.Mutex
	codes     map[string]int
	intervals []time.Duration
}

func newProber(ctx context.Context, addr string, card *se.SE, toks []*lcToken) (*prober, error) {
	pr := &prober{card: card, toks: toks, codes: map[string]int{}, kernel: pos.Kernel{Profile: pos.DefaultTerminalProfile()}}
	var err error
	if pr.kernel.Profile.Country, err = pos.CurrencyBCD("156"); err != nil {
		return nil, err
	}
	for i := 0; i < 4; i++ {
		c, err := iso8583.Dial(ctx, iso8583.ClientConfig{Addr: addr, MaxInFlight: lifecycleProbers, RequestTimeout: 10 * time.Second})
		if err != nil {
			pr.close()
			return nil, err
		}
		pr.clients = append(pr.clients, c)
	}
	return pr, nil
}

func (pr *prober) close() {
	for _, c := range pr.clients {
		c.Close()
	}
}

// cryptogram has the SE make the token's next ARQC (select, arm as the
// fingerprint would, read through the POS kernel) and builds its 0200.
func (pr *prober) cryptogram(ctx context.Context, t *lcToken) error {
	cur, err := pos.CurrencyBCD("156")
	if err != nil {
		return err
	}
	pr.seMu.Lock()
	defer pr.seMu.Unlock()
	if err := pr.card.Select(t.ref); err != nil {
		return err
	}
	if err := pr.card.Arm(t.ref); err != nil {
		return err
	}
	read, err := pr.kernel.ReadCard(ctx, seSession{pr.card}, pos.Txn{AmountMinor: benchAmountMinor, Currency: cur, Time: time.Now(), TTC: pr.stan.Load()})
	if err != nil {
		return err
	}
	if read.Outcome != pos.OutcomeOnline {
		return fmt.Errorf("card read ended %s", read.Outcome)
	}
	t.next, err = pos.TerminalConfig{MerchantName: "MIPAY BENCH LIFECYCLE", Country: "156"}.FinancialRequest(read, benchAmountMinor, "156")
	return err
}

// send sends a token's 0200 with a fresh STAN and RRN (a new
// transmission, not a duplicate) and returns DE39.
func (pr *prober) send(ctx context.Context, worker int, m *iso8583.Message) (string, error) {
	now := time.Now()
	stan := pr.stan.Add(1)%999999 + 1
	m.SetString(7, now.UTC().Format("0102150405"))
	m.SetString(11, iso8583.FormatSTAN(stan))
	m.SetString(12, now.Format("150405"))
	m.SetString(13, now.Format("0102"))
	m.SetString(37, fmt.Sprintf("LC%010d", stan))
	m.SetString(41, fmt.Sprintf("LC%06d", worker))
	resp, err := pr.clients[worker%len(pr.clients)].Send(ctx, m)
	pr.sent.Add(1)
	if err != nil {
		return "", err
	}
	return resp.String(39), nil
}

// phase starts action (nil: none) and, from the same instant, probes every
// token until the switch answers want for it; it returns the action's
// latency, each token's time from the start to its first `want`, and, for
// tokens approved meanwhile, the time of their last approval.
//
//   - want 00 (before the rounds): fresh cryptograms until each is approved.
//   - want 62 (switch-off): fresh cryptograms, as a thief would tap; while
//     the token is still active they are approved (real payments) and the
//     token gets a new one; once suspended the switch refuses it 62 before
//     looking at the cryptogram.
//   - want 05 (found it): the token's spent cryptogram; while suspended the
//     switch refuses it 62, once active again it gets past the state check
//     and is refused as a replay (05): no payment, no issuer call.
func (pr *prober) phase(ctx context.Context, want string, action func() error) (time.Duration, []time.Duration, []time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, lifecycleRoundLimit)
	defer cancel()
	for _, t := range pr.toks {
		if want != "05" && t.next == nil {
			if err := pr.cryptogram(ctx, t); err != nil {
				return 0, nil, nil, err
			}
		}
		if want == "05" && t.spent == nil {
			return 0, nil, nil, fmt.Errorf("token %s has no spent cryptogram", t.ref)
		}
	}
	times := make([]time.Duration, len(pr.toks))
	approvedAt := make([]time.Duration, len(pr.toks))
	lastProbe := make([]time.Time, len(pr.toks))
	pending := make(chan int, len(pr.toks))
	for i := range pr.toks {
		pending <- i
	}
	var left atomic.Int64
	left.Store(int64(len(pr.toks)))
	var (
		apiLat   time.Duration
		apiDone  = make(chan struct{})
		firstErr error
		errOnce  sync.Once
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err; cancel() }) }
	start := time.Now()
	go func() {
		defer close(apiDone)
		if action == nil {
			return
		}
		err := action()
		apiLat = time.Since(start)
		if err != nil {
			fail(err)
		}
	}()
	if want == "05" {
		// Found it: nothing to time before the answer (the tokens are
		// suspended until the TSP's write, which the answer follows), so the
		// probes start then and are not spent on 62s; the times still count
		// from the call.
		<-apiDone
	}
	codes := make([]map[string]int, lifecycleProbers)
	intervals := make([][]time.Duration, lifecycleProbers)
	var wg sync.WaitGroup
	for w := 0; w < lifecycleProbers; w++ {
		codes[w] = map[string]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var i int
				select {
				case i = <-pending:
				case <-ctx.Done():
					return
				}
				t := pr.toks[i]
				if !lastProbe[i].IsZero() {
					intervals[w] = append(intervals[w], time.Since(lastProbe[i]))
				}
				lastProbe[i] = time.Now()
				m := t.next
				if want == "05" {
					m = t.spent
				}
				rc, err := pr.send(ctx, w, m)
				if err != nil {
					fail(err)
					return
				}
				codes[w][rc]++
				if rc == "00" { // spent: a replay from now on, a new one for the next tap
					t.spent, t.next = t.next, nil
					approvedAt[i] = time.Since(start)
				}
				if rc == want {
					times[i] = time.Since(start)
					if left.Add(-1) == 0 {
						cancel()
						return
					}
					continue
				}
				switch {
				case rc == "00": // still active
					if err := pr.cryptogram(ctx, t); err != nil {
						fail(err)
						return
					}
				case rc == "62" && want != "00": // still suspended (switch-off not yet, or found not yet)
				default:
					fail(fmt.Errorf("token %s answered %s, want %s", t.ref, rc, want))
					return
				}
				pending <- i
			}
		}()
	}
	wg.Wait()
	<-apiDone
	if firstErr != nil {
		return 0, nil, nil, firstErr
	}
	if left.Load() != 0 {
		return 0, nil, nil, fmt.Errorf("%d tokens did not answer %s within %s", left.Load(), want, lifecycleRoundLimit)
	}
	var approved []time.Duration
	if want == "62" {
		for _, d := range approvedAt {
			if d > 0 {
				approved = append(approved, d)
			}
		}
	}
	pr.mu.Lock()
	for w := range codes {
		for k, v := range codes[w] {
			pr.codes[k] += v
		}
		if want == "62" {
			pr.intervals = append(pr.intervals, intervals[w]...)
		}
	}
	pr.mu.Unlock()
	return apiLat, times, approved, nil
}

func printLifecycleBench(w io.Writer, r *LifecycleResult) {
	fmt.Fprintf(w, "machine      %s\n", r.Machine)
	fmt.Fprintf(w, "device       %d tokens on one phone (bound in %.1fs, first payments %.1fs), %d rounds, %d probes, %.1fs in all\n",
		r.Tokens, r.ProvisionSeconds, r.WarmUpSeconds, r.Rounds, r.Probes, r.Seconds)
	line := func(name string, q Quantiles, note string) {
		fmt.Fprintf(w, "%-27s p50 %8.1f ms  p99 %8.1f ms  max %8.1f ms  (n=%d)%s\n", name, q.P50, q.P99, q.Max, q.N, note)
	}
	line("switch-off API", r.SwitchOffAPI, "")
	line("all tokens refused (62)", r.AllRefused, "  from the API call")
	line("per token refused (62)", r.PerToken, "  from the API call: first 62")
	line("per token last approved", r.PerTokenLastApproved, "  (the switch-over lies between)")
	line("probe interval", r.ProbeInterval, "  (resolution of the per-token times)")
	line("found-it API", r.FoundAPI, "")
	line("all resumed after found", r.AllResumed, "  (spent cryptogram: 05 replay, not 62)")
	keys := make([]string, 0, len(r.ResponseCodes))
	for k := range r.ResponseCodes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprint(w, "response codes")
	for _, k := range keys {
		fmt.Fprintf(w, "  %s×%d", k, r.ResponseCodes[k])
	}
	fmt.Fprintln(w)
}
