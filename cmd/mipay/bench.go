package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/iso8583"
	"github.com/mipay-oss/mipay/logmask"
	"github.com/mipay-oss/mipay/node"
	"github.com/mipay-oss/mipay/node/local"
	"github.com/mipay-oss/mipay/phone"
	"github.com/mipay-oss/mipay/pos"
	"github.com/mipay-oss/mipay/promo"
	"github.com/mipay-oss/mipay/se"
	"github.com/mipay-oss/mipay/wallet"
)

// Bench limits.
const (
	maxBenchConcurrency = 1024
	maxBenchDuration    = 10 * time.Minute
	// benchAmountMinor is what each benchmark authorization asks for.
	benchAmountMinor = 100
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "lifecycle" {
		return runBenchLifecycle(ctx, args[1:], stdout, stderr) // bench_lifecycle.go
	}
	if len(args) > 0 && args[0] == "floor" {
		return runBenchFloor(ctx, args[1:], stdout, stderr) // bench_floor.go
	}
	if len(args) == 0 || args[0] != "auth" {
		fmt.Fprintln(stderr, "Usage: mipay bench lifecycle [--tokens 1000] [--rounds 20] [--json]")
		fmt.Fprintln(stderr, "Usage: mipay bench auth [--duration 10s] [--concurrency 64] [--rate 0] [--campaigns 0] [--json]")
		fmt.Fprintln(stderr, "Usage: mipay bench floor [--duration 5s] [--concurrency 256] [--json]")
		return usagef("bench: name what to measure: auth, floor or lifecycle")
	}
	fs := newFlagSet("bench auth", "[flags]", stderr)
	duration := fs.Duration("duration", 10*time.Second, "how long to drive authorizations (and as long again the echo ceiling)")
	concurrency := fs.Int("concurrency", 64, "authorizations in flight (one token each: a token's ATCs go in order)")
	rate := fs.Int("rate", 0, "authorizations per second to offer (0: as fast as the system answers)")
	data := fs.String("data", "", "data directory for the parties (default: a fresh temporary one); with --target, the running up's")
	asJSON := fs.Bool("json", false, "print one JSON object")
	country := fs.String("country", "", "also drive cross-border authorizations from a terminal in this country (ISO 3166 numeric, e.g. 392) and report both")
	currency := fs.String("currency", "", "the cross-border transaction currency (ISO 4217 numeric, e.g. 392); needs --country")
	campaigns := fs.Int("campaigns", 0, "also measure with this many active bank campaigns (a few matching) and report the cost in throughput (bench_promo.go)")
	matching := fs.Int("matching", benchMatchingCampaigns, "how many of --campaigns match the benchmark's payments (0: evaluation only, no discount granted)")
	var tgt benchTargetFlags
	fs.StringVar(&tgt.host, "target", "", "drive a running `mipay up` on this `host` (its fixed ports from --port-base) instead of starting the parties")
	fs.IntVar(&tgt.portBase, "port-base", DefaultPortBase, "with --target: the running up's first `port`")
	fs.StringVar(&tgt.wallet, "wallet", "", "with --target: the wallet's `URL` when not on the fixed port")
	fs.StringVar(&tgt.sms, "sms", "", "with --target: the SMS gateway's `URL` when not on the fixed port")
	fs.StringVar(&tgt.network, "network", "", "with --target: the switch's ISO 8583 `address` when not on the fixed port")
	fs.StringVar(&tgt.config, "config", "", "with --target: the reference data `file` the running up was started with (its demo cards are bound)")
	writeConfig := fs.String("write-config", "", "write the benchmark's reference data (limits raised so the load measures the path, not the limits) to `file` for `mipay up --config`, and exit")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	switch {
	case *duration <= 0 || *duration > maxBenchDuration:
		return usagef("bench auth: --duration must be in (0, %s]", maxBenchDuration)
	case *concurrency < 1 || *concurrency > maxBenchConcurrency:
		return usagef("bench auth: --concurrency must be 1..%d", maxBenchConcurrency)
	case *rate < 0:
		return usagef("bench auth: --rate must not be negative")
	case (*country == "") != (*currency == ""):
		return usagef("bench auth: --country and --currency go together")
	case *campaigns < 0 || *campaigns > maxBenchCampaigns:
		return usagef("bench auth: --campaigns must be 0..%d", maxBenchCampaigns)
	case *matching < 0 || *matching > *campaigns && *campaigns > 0:
		return usagef("bench auth: --matching must be 0..--campaigns")
	case *campaigns > 0 && *country != "":
		return usagef("bench auth: --campaigns and --country are measured in separate runs")
	case tgt.host == "" && (tgt.wallet != "" || tgt.sms != "" || tgt.network != "" || tgt.config != ""):
		return usagef("bench auth: --wallet, --sms, --network and --config go with --target")
	case tgt.host != "" && *campaigns > 0:
		return usagef("bench auth: --campaigns needs the parties the bench starts; it does not go with --target")
	case tgt.host != "" && *data == "":
		return usagef("bench auth: --target needs --data, the running up's data directory (the bench's phones are made there, as by mipay phone)")
	case tgt.portBase < 1 || tgt.portBase > 65535-100:
		return usagef("bench auth: --port-base must be 1..%d", 65535-100)
	}
	if *writeConfig != "" {
		return writeBenchReference(*writeConfig, stdout)
	}
	if *country != "" {
		if _, ok := config.AcceptanceCountry(*country); !ok {
			return usagef("bench auth: --country %q is not a country with UnionPay acceptance (ISO 3166 numeric)", *country)
		}
		if _, ok := config.CurrencyByNumeric(*currency); !ok {
			return usagef("bench auth: --currency %q is not an ISO 4217 numeric code the network knows", *currency)
		}
	}
	b := &authBench{duration: *duration, concurrency: *concurrency, rate: *rate, progress: stderr, country: *country, currency: *currency,
		campaigns: *campaigns, matching: *matching}
	if *asJSON {
		b.progress = io.Discard
	}
	var res *BenchResult
	var err error
	if tgt.host != "" {
		t, terr := tgt.resolve()
		if terr != nil {
			return terr
		}
		res, err = b.runTarget(ctx, t, *data)
	} else {
		res, err = b.run(ctx, *data)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	printBench(stdout, res)
	return nil
}

// authBench drives tokenized 0200s with valid cryptograms through the
// network (ISO 8583 over TCP), the TSP and the issuer, durable on SQLite.
type authBench struct {
	duration    time.Duration
	concurrency int
	rate        int
	progress    io.Writer
	// country and currency, when set, add a cross-border load after the
	// domestic one (same tokens, same system).
	country, currency string
	// campaigns, when set, adds loads with that many active bank campaigns
	// and without (bench_promo.go).
	campaigns      int
	matching       int          // of campaigns, how many the payments qualify for
	terminalPrefix string       // two letters of the terminal ids ("BN")
	discounted     atomic.Int64 // answers with a saving (DE124)
}

// BenchResult is what `mipay bench auth` reports.
type BenchResult struct {
	Machine string `json:"machine"`
	// Target is the running up's switch when the parties were not started
	// by the bench (--target); CPU figures are then the load generator's.
	Target        string         `json:"target,omitempty"`
	Concurrency   int            `json:"concurrency"`
	OfferedRate   int            `json:"offeredRate,omitempty"`
	Auth          LoadStats      `json:"auth"`
	Echo          LoadStats      `json:"echo"`
	RatioToEcho   float64        `json:"ratioToEcho"`
	ResponseCodes map[string]int `json:"responseCodes"`
	// CrossBorder is the part of the load from a terminal abroad
	// (--country/--currency; Auth is then the domestic part), and
	// CrossBorderCost how much longer a cross-border authorization took on
	// average than a domestic one (0.03 = 3% more).
	CrossBorder         *LoadStats `json:"crossBorder,omitempty"`
	CrossBorderCountry  string     `json:"crossBorderCountry,omitempty"`
	CrossBorderCurrency string     `json:"crossBorderCurrency,omitempty"`
	CrossBorderCost     float64    `json:"crossBorderCost,omitempty"`
	// WalletCatchUpSeconds is how long after the last answer the wallet
	// took to handle the transaction.authorized events the load left
	// pending; the CPU per request includes that work.
	WalletCatchUpSeconds float64 `json:"walletCatchUpSeconds"`
	// Writers is what each party's group-commit writer did during Auth.
	Writers []WriterBreakdown `json:"writers,omitempty"`
	// Campaigns is --campaigns' measurement (after Auth, measured with no
	// active campaign).
	Campaigns *CampaignBench `json:"campaigns,omitempty"`
}

// LoadStats is one measured load.
type LoadStats struct {
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"perSecond"`
	P50Millis  float64 `json:"p50Ms"`
	P99Millis  float64 `json:"p99Ms"`
	P999Millis float64 `json:"p999Ms"`
	MeanMillis float64 `json:"meanMs"`
	// CPUMicros is this process's CPU time (user + system, every party and
	// the load generator) per request: what the throughput costs, and the
	// figure that a shared machine disturbs least.
	CPUMicros float64 `json:"cpuUsPerRequest"`
}

func (b *authBench) run(ctx context.Context, dataDir string) (*BenchResult, error) {
	dataDir, cleanup, err := benchDataDir(dataDir, "mipay-bench-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	ref, err := benchReference()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(b.progress, "starting the parties (data in %s)…\n", dataDir)
	log := slog.New(logmask.NewHandler(slog.NewTextHandler(io.Discard, nil)))
	sys, err := local.Start(ctx, local.Options{DataDir: dataDir, Ref: ref, Log: log})
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = sys.Close(cctx)
	}()
	return b.measure(ctx, benchTarget{ref: sys.Ref, dataDir: sys.DataDir, walletURL: sys.URL(node.RoleWallet),
		smsURL: sys.URL(node.RoleSMS), networkAddr: sys.Addr(node.RoleNetwork, "iso8583")}, sys)
}

// measure provisions the tokens on t and drives the loads: the
// authorizations (and campaigns or cross-border when asked), then the echo
// ceiling. sys is the parties of this process, nil for a running up
// elsewhere (no writer breakdown; CPU is then the load generator's only).
func (b *authBench) measure(ctx context.Context, t benchTarget, sys *local.System) (*BenchResult, error) {
	fmt.Fprintf(b.progress, "provisioning %d tokens through the wallet, TSP and issuer…\n", b.concurrency)
	cards, err := provisionBenchTokens(ctx, t, b.concurrency)
	if err != nil {
		return nil, fmt.Errorf("bench: provisioning: %w", err)
	}
	var admin *promoAdmin
	if b.campaigns > 0 {
		// The first load has no active campaign: the seeded ones are paused.
		if admin, err = newPromoAdmin(sys); err != nil {
			return nil, err
		}
		if _, err := admin.setAll(ctx, "pause", func(c promo.Campaign) bool { return c.Status == promo.StatusActive }); err != nil {
			return nil, err
		}
	}
	perToken := b.messagesPerToken()
	fmt.Fprintf(b.progress, "making %d cryptograms per token…\n", perToken)
	kinds := [][2]string{{"156", "156"}}
	if b.country != "" {
		// Domestic and cross-border messages alternate in every token's
		// queue: both kinds run at the same time under the same load, so
		// their latencies compare on a shared machine.
		kinds = append(kinds, [2]string{b.country, b.currency})
	}
	queues, err := makeBenchMessagesIn(cards, perToken, kinds)
	if err != nil {
		return nil, err
	}
	res := &BenchResult{Machine: machineLine(), Concurrency: b.concurrency, OfferedRate: b.rate, ResponseCodes: map[string]int{}}
	if sys == nil {
		res.Target = t.networkAddr
	}
	fmt.Fprintln(b.progress, "driving authorizations…")
	startTrace(os.Getenv("MIPAY_BENCH_TRACE"))
	stopProfile, err := startCPUProfile(os.Getenv("MIPAY_BENCH_CPUPROFILE"))
	if err != nil {
		return nil, err
	}
	var xb LoadStats
	var before map[string]writerSnapshot
	if sys != nil {
		before = snapshotWriters(sys.Metrics)
	}
	res.Auth, xb, err = b.drive(ctx, t.networkAddr, queues, res.ResponseCodes, walletCatchUp(sys, &res.WalletCatchUpSeconds))
	stopProfile()
	if sys != nil {
		res.Writers = writerBreakdown(before, snapshotWriters(sys.Metrics))
	}
	if err != nil {
		return nil, err
	}
	if b.campaigns > 0 {
		if res.Campaigns, err = b.runCampaigns(ctx, sys, cards, admin, res.ResponseCodes); err != nil {
			return nil, err
		}
	}
	if b.country != "" {
		res.CrossBorder, res.CrossBorderCountry, res.CrossBorderCurrency = &xb, b.country, b.currency
		if res.Auth.MeanMillis > 0 {
			res.CrossBorderCost = xb.MeanMillis/res.Auth.MeanMillis - 1
		}
	}
	echoAddr, stopEcho, err := startEcho()
	if err != nil {
		return nil, err
	}
	defer stopEcho()
	echoQueues, err := makeBenchMessages(cards, perToken)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(b.progress, "driving the echo server (the ceiling of the link on this machine)…")
	res.Echo, _, err = b.drive(ctx, echoAddr, echoQueues, map[string]int{}, nil)
	if err != nil {
		return nil, err
	}
	if res.Echo.PerSecond > 0 {
		total := res.Auth.PerSecond
		if res.CrossBorder != nil {
			total += res.CrossBorder.PerSecond // both kinds shared the run
		}
		res.RatioToEcho = total / res.Echo.PerSecond
	}
	return res, nil
}

// benchReference is the default reference data with limits that a load of
// one token per in-flight request does not trip (velocity, daily totals,
// bindings per card): the benchmark measures the path, not the limits.
func benchReference() (*config.Reference, error) {
	ref, err := config.Default()
	if err != nil {
		return nil, err
	}
	for i := range ref.Issuers {
		is := &ref.Issuers[i]
		is.Limits.VelocityPerHour = math.MaxInt32
		is.Limits.DailyMinor = math.MaxInt64 / 4
		is.Limits.BindingsPerCardPerDay = maxBenchConcurrency
		is.Limits.BindingsPerDevicePerDay = maxBenchConcurrency
		is.OTP.AlwaysOTP = false
		for j := range is.Cardholders {
			is.Cardholders[j].BalanceMinor = 1 << 40
			if is.Cardholders[j].CreditLimitMinor > 0 {
				is.Cardholders[j].CreditLimitMinor = 1 << 40
			}
		}
	}
	return ref, nil
}

// benchCard is a provisioned token: a volatile copy of its phone's SE.
type benchCard struct {
	se       *se.SE
	tokenRef string
}

// provisionBenchTokens binds n cards on n phones of one account, the way a
// user does (sealed card data, TSP, issuer decision, SE install).
func provisionBenchTokens(ctx context.Context, sys benchTarget, n int) ([]benchCard, error) {
	var holders []config.Cardholder
	for _, is := range sys.ref.Issuers {
		for _, c := range is.Cardholders {
			if c.Status == "" || c.Status == "active" {
				holders = append(holders, c)
			}
		}
	}
	const password = "bench password"
	cards := make([]benchCard, 0, n)
	for i := 0; i < n; i++ {
		p, err := phone.Open(ctx, phone.Config{DataDir: sys.dataDir, Name: fmt.Sprintf("bench-%04d-%d", sys.run, i),
			WalletURL: sys.walletURL, SMSURL: sys.smsURL})
		if err != nil {
			return nil, err
		}
		// An account holds at most 20 devices: one account per 16 phones.
		number := fmt.Sprintf("139%04d%04d", sys.run, i/16)
		if i%16 == 0 {
			if _, err := p.Register(ctx, number, fmt.Sprintf("bench%04d-%d@example.com", sys.run, i/16), password); err != nil {
				return nil, err
			}
		}
		if err := p.Login(ctx, number, password); err != nil {
			return nil, err
		}
		if err := p.EnrollFinger(ctx); err != nil {
			return nil, err
		}
		if len(holders) == 0 {
			return nil, errors.New("the reference data has no active demo cardholder to bind")
		}
		h := holders[i%len(holders)]
		res, err := p.AddCard(ctx, phone.CardDetails{PAN: h.PAN, Expiry: h.Expiry, CVN2: h.CVN2, Name: h.Name, Phone: h.Phone})
		if err != nil {
			return nil, err
		}
		if res.Decision != phone.DecisionApproved {
			return nil, fmt.Errorf("card %d: %s %s", i, res.Decision, res.Message)
		}
		installed := p.SE().Cards()
		vol, err := se.Open(filepath.Join(sys.dataDir, "phones", p.Name(), "se"), se.Options{Volatile: true})
		if err != nil {
			return nil, err
		}
		cards = append(cards, benchCard{se: vol, tokenRef: installed[0].TokenRef})
	}
	return cards, nil
}

func (b *authBench) messagesPerToken() int {
	rate := b.rate
	if rate == 0 {
		rate = 12000 // above what 2 cores answer; the drive stops at its duration or when a token runs out
	}
	n := int(float64(rate)*b.duration.Seconds())/b.concurrency + 16
	return min(n, 1<<16-16) // the ATC is 16 bits
}

// seSession hands APDUs straight to an SE (no radio in a load generator).
type seSession struct{ s *se.SE }

func (c seSession) Transmit(_ context.Context, apdu []byte) ([]byte, error) {
	return c.s.Transmit(apdu), nil
}

// makeBenchMessages has each token's SE make n cryptograms through the POS
// kernel and builds the 0200 of each (STAN and terminal fixed at send time).
func makeBenchMessages(cards []benchCard, n int) ([][]*iso8583.Message, error) {
	return makeBenchMessagesIn(cards, n, [][2]string{{"156", "156"}})
}

// makeBenchMessagesIn makes them at terminals of each kind in turn
// (country, currency).
func makeBenchMessagesIn(cards []benchCard, n int, kinds [][2]string) ([][]*iso8583.Message, error) {
	out := make([][]*iso8583.Message, len(cards))
	errs := make([]error, len(cards))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, c := range cards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = tokenMessages(c, n, kinds)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func tokenMessages(c benchCard, n int, kinds [][2]string) ([]*iso8583.Message, error) {
	k := pos.Kernel{Profile: pos.DefaultTerminalProfile()}
	msgs := make([]*iso8583.Message, 0, n)
	for i := 0; i < n; i++ {
		country, currency := kinds[i%len(kinds)][0], kinds[i%len(kinds)][1]
		cur, err := pos.CurrencyBCD(currency)
		if err != nil {
			return nil, err
		}
		if k.Profile.Country, err = pos.CurrencyBCD(country); err != nil {
			return nil, err
		}
		if err := c.se.Arm(c.tokenRef); err != nil {
			return nil, err
		}
		read, err := k.ReadCard(context.Background(), seSession{c.se}, pos.Txn{AmountMinor: benchAmountMinor, Currency: cur, Time: time.Now(), TTC: uint32(i)})
		if err != nil {
			return nil, err
		}
		if read.Outcome != pos.OutcomeOnline {
			return nil, fmt.Errorf("bench: card read ended %s", read.Outcome)
		}
		m, err := pos.TerminalConfig{MerchantName: "MIPAY BENCH", Country: country}.FinancialRequest(read, benchAmountMinor, currency)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// drive sends each token's messages in order from its own worker, over a
// few pipelined connections, until the duration ends or messages run out.
// The second LoadStats is the cross-border part (DE19 not China's); the
// first the rest.
//
// after, when not nil, runs once the last answer is in and before the CPU
// is read: work the load left behind (the wallet's events) is then counted
// in the CPU per request, not in the throughput.
func (b *authBench) drive(ctx context.Context, addr string, queues [][]*iso8583.Message, codes map[string]int, after func(context.Context) error) (LoadStats, LoadStats, error) {
	clients, closeLinks, err := dialBenchLinks(ctx, addr)
	if err != nil {
		return LoadStats{}, LoadStats{}, err
	}
	defer closeLinks()
	var (
		done   atomic.Int64
		errs   atomic.Int64
		mu     sync.Mutex
		lat    = make([]time.Duration, 0, 1<<16)
		latX   []time.Duration
		codeMu sync.Mutex
	)
	deadline := time.Now().Add(b.duration)
	var pace <-chan time.Time
	if b.rate > 0 {
		t := time.NewTicker(time.Second / time.Duration(b.rate))
		defer t.Stop()
		tokens := make(chan time.Time, b.concurrency)
		go func() {
			for now := range t.C {
				if time.Now().After(deadline) {
					close(tokens)
					return
				}
				select {
				case tokens <- now:
				default: // the system is behind: the offered load is what it is
				}
			}
		}()
		pace = tokens
	}
	stopProgress := progressBar(b.progress, b.duration, &done)
	start := time.Now()
	cpuStart := processCPU()
	var wg sync.WaitGroup
	for w := range queues {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%benchLinks]
			prefix := b.terminalPrefix
			if prefix == "" {
				prefix = "BN"
			}
			terminal := fmt.Sprintf("%s%06d", prefix, w)
			local := make([]time.Duration, 0, len(queues[w]))
			var localX []time.Duration
			localCodes := map[string]int{}
			for i, m := range queues[w] {
				if pace != nil {
					if _, ok := <-pace; !ok {
						break
					}
				}
				now := time.Now()
				if now.After(deadline) {
					break
				}
				stan := uint32(i + 1)
				m.SetString(7, now.UTC().Format("0102150405"))
				m.SetString(11, iso8583.FormatSTAN(stan))
				m.SetString(12, now.Format("150405"))
				m.SetString(13, now.Format("0102"))
				m.SetString(37, fmt.Sprintf("%04d%08d", w, stan))
				m.SetString(41, terminal)
				resp, err := c.Send(ctx, m)
				if c := m.String(19); c != "" && c != "156" {
					localX = append(localX, time.Since(now))
				} else {
					local = append(local, time.Since(now))
				}
				done.Add(1)
				if err != nil {
					errs.Add(1)
					continue
				}
				localCodes[resp.String(39)]++
				if resp.Has(iso8583.FieldPromotion) {
					b.discounted.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			latX = append(latX, localX...)
			mu.Unlock()
			codeMu.Lock()
			for k, v := range localCodes {
				codes[k] += v
			}
			codeMu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	if after != nil {
		if err := after(ctx); err != nil {
			return LoadStats{}, LoadStats{}, err
		}
	}
	cpu := processCPU() - cpuStart
	st, stX := stats(lat, int(errs.Load()), elapsed), stats(latX, 0, elapsed)
	if n := len(lat) + len(latX); n > 0 {
		st.CPUMicros = float64(cpu) / float64(time.Microsecond) / float64(n)
		stX.CPUMicros = st.CPUMicros
	}
	return st, stX, nil
}

// benchDataDir is dir, or when dir is "" a fresh temporary directory
// named after pattern that cleanup removes.
func benchDataDir(dir, pattern string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", nil, err
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// maxWalletCatchUp bounds the wait for the wallet after a load.
const maxWalletCatchUp = 2 * time.Minute

// walletCatchUp waits, after a load, until the wallet has handled every
// transaction.authorized event (its durable consumer's backlog is 0),
// setting *took. Without it the wallet's share of the work would fall
// outside the measurement whenever it lags. nil when the bench did not
// start the parties (--target: their CPU is not measured anyway).
func walletCatchUp(sys *local.System, took *float64) func(context.Context) error {
	if sys == nil {
		return nil
	}
	return func(ctx context.Context) error {
		start := time.Now()
		for {
			n, err := sys.Bus.Backlog(ctx, wallet.DurableTransactions)
			if err != nil {
				return fmt.Errorf("bench: wallet backlog: %w", err)
			}
			if n == 0 {
				*took = time.Since(start).Seconds()
				return nil
			}
			if time.Since(start) > maxWalletCatchUp {
				return fmt.Errorf("bench: the wallet still had %d events to handle %s after the load", n, maxWalletCatchUp)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// processCPU is the CPU time this process has used (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func stats(lat []time.Duration, errs int, elapsed time.Duration) LoadStats {
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return float64(lat[max(i, 0)]) / float64(time.Millisecond)
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	mean := 0.0
	if len(lat) > 0 {
		mean = float64(sum) / float64(len(lat)) / float64(time.Millisecond)
	}
	return LoadStats{Requests: len(lat), Errors: errs, Seconds: elapsed.Seconds(),
		PerSecond: float64(len(lat)) / elapsed.Seconds(), P50Millis: q(0.50), P99Millis: q(0.99), P999Millis: q(0.999),
		MeanMillis: mean}
}

// progressBar draws a bar on w until stopped.
func progressBar(w io.Writer, total time.Duration, done *atomic.Int64) func() {
	if w == io.Discard {
		return func() {}
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprintf(w, "\r%s\r", strings.Repeat(" ", 70))
				return
			case <-t.C:
				frac := min(time.Since(start).Seconds()/total.Seconds(), 1)
				n := int(frac * 30)
				fmt.Fprintf(w, "\r[%s%s] %3.0f%%  %d requests", strings.Repeat("#", n), strings.Repeat(".", 30-n), frac*100, done.Load())
			}
		}
	}()
	return func() { close(stop); <-finished }
}

// startEcho runs an ISO 8583 server that answers every message with itself
// (response MTI), through the same link code: the ceiling of the transport.
func startEcho() (string, func(), error) {
	return startLinkServer(func(_ context.Context, req *iso8583.Message) (*iso8583.Message, error) {
		resp := req.Clone()
		resp.SetMTI(iso8583.ResponseMTI(req.MTI()))
		return resp, nil
	})
}

// startLinkServer serves h on a free loopback port, as many requests in
// flight per connection as a bench drives; stop closes it.
func startLinkServer(h iso8583.Handler) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := iso8583.NewServer(iso8583.ServerConfig{MaxConcurrentPerConn: maxBenchConcurrency}, h)
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

// benchLinks is how many pipelined connections a bench load shares.
const benchLinks = 4

// dialBenchLinks dials benchLinks pipelined connections to addr, each
// taking as many requests in flight as a bench drives; closeAll closes them.
func dialBenchLinks(ctx context.Context, addr string) (links []*iso8583.Client, closeAll func(), err error) {
	closeAll = func() {
		for _, c := range links {
			c.Close()
		}
	}
	for range benchLinks {
		c, err := iso8583.Dial(ctx, iso8583.ClientConfig{Addr: addr, MaxInFlight: maxBenchConcurrency, RequestTimeout: 10 * time.Second})
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		links = append(links, c)
	}
	return links, closeAll, nil
}

func machineLine() string {
	host, _ := os.Hostname()
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if _, v, ok := strings.Cut(l, ":"); ok {
					cpu = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d CPUs (%s)", host, numCPU(), cpu)
}

func printBench(w io.Writer, r *BenchResult) {
	fmt.Fprintf(w, "machine      %s\n", r.Machine)
	if r.Target != "" {
		fmt.Fprintf(w, "target       the running parties (switch at %s); CPU per request is this load generator's only\n", r.Target)
	}
	fmt.Fprintf(w, "concurrency  %d", r.Concurrency)
	if r.OfferedRate > 0 {
		fmt.Fprintf(w, "   offered %d/s", r.OfferedRate)
	}
	fmt.Fprintln(w)
	for _, l := range []struct {
		name string
		s    LoadStats
	}{{map[bool]string{false: "authorizations", true: "domestic"}[r.CrossBorder != nil], r.Auth}, {"echo ceiling", r.Echo}} {
		fmt.Fprintf(w, "%-15s %8.0f/s  p50 %6.2f ms  p99 %6.2f ms  p999 %6.2f ms  (%d requests, %d errors, %.1fs, %.0f µs CPU each)\n",
			l.name, l.s.PerSecond, l.s.P50Millis, l.s.P99Millis, l.s.P999Millis, l.s.Requests, l.s.Errors, l.s.Seconds, l.s.CPUMicros)
	}
	if x := r.CrossBorder; x != nil {
		fmt.Fprintf(w, "%-15s %8.0f/s  p50 %6.2f ms  p99 %6.2f ms  p999 %6.2f ms  (%d requests, %d errors, %.1fs; country %s, currency %s)\n",
			"cross-border", x.PerSecond, x.P50Millis, x.P99Millis, x.P999Millis, x.Requests, x.Errors, x.Seconds,
			r.CrossBorderCountry, r.CrossBorderCurrency)
		fmt.Fprintf(w, "cross-border cost  %+.1f%% per authorization (mean latency %.2f ms vs %.2f ms domestic, same run, interleaved)\n",
			r.CrossBorderCost*100, x.MeanMillis, r.Auth.MeanMillis)
	}
	if r.Campaigns != nil {
		printCampaignBench(w, r.Campaigns)
	}
	fmt.Fprintf(w, "ratio to echo  %.1f%%\n", r.RatioToEcho*100)
	keys := make([]string, 0, len(r.ResponseCodes))
	for k := range r.ResponseCodes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprint(w, "response codes")
	for _, k := range keys {
		fmt.Fprintf(w, "  %s×%d", k, r.ResponseCodes[k])
	}
	fmt.Fprintln(w)
	if r.Target == "" {
		fmt.Fprintf(w, "wallet caught up  %.2f s after the last answer (its work is in the CPU per authorization)\n", r.WalletCatchUpSeconds)
	}
	printBreakdown(w, r.Writers)
}

// startCPUProfile writes a CPU profile of the authorization load to path
// (MIPAY_BENCH_CPUPROFILE), for finding where the time goes.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// startTrace writes an execution trace of 2 s of the load, starting 3 s in
// (MIPAY_BENCH_TRACE): scheduling and blocking, which a CPU profile does not
// show.
func startTrace(path string) {
	if path == "" {
		return
	}
	go func() {
		time.Sleep(3 * time.Second)
		f, err := os.Create(path)
		if err != nil {
			return
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return
		}
		time.Sleep(2 * time.Second)
		trace.Stop()
	}()
}
