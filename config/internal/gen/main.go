// Command gen writes config/default.json, mipay's embedded reference data: 32
// issuers (12 debit, 20 credit programmes of Chinese banks) with made-up
// UnionPay BINs, token BINs, products, policies and demo cardholders.
//
// The output is deterministic (fixed seed), so `go generate ./config` on an
// unchanged generator reproduces the committed file byte for byte; a test
// checks that. Edit this program, not the JSON.
//
// Every BIN and PAN here is invented for the demo. BIN scheme (6 digits):
// debit PAN BINs 6210xx, credit PAN BINs 6250xx, token BINs 6290xx; the
// ranges cannot overlap.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/mipay-oss/mipay/config"
)

// bank is one bank of the demo data.
type bank struct {
	id, code, name string
	art            [2]string // primary / secondary colour of the card art
}

var banks = []bank{
	{"boc", "BOC", "Bank of China", [2]string{"#B5121B", "#7A0C12"}},
	{"icbc", "ICBC", "Industrial and Commercial Bank of China", [2]string{"#C7000B", "#8E0008"}},
	{"ccb", "CCB", "China Construction Bank", [2]string{"#0066B3", "#003D6B"}},
	{"bocom", "BOCOM", "Bank of Communications", [2]string{"#1D3F8F", "#0F2455"}},
	{"cmb", "CMB", "China Merchants Bank", [2]string{"#D7000F", "#9B0A12"}},
	{"abc", "ABC", "Agricultural Bank of China", [2]string{"#00875A", "#005236"}},
	{"psbc", "PSBC", "Postal Savings Bank of China", [2]string{"#007A3D", "#004D26"}},
	{"citic", "CITIC", "China CITIC Bank", [2]string{"#E60012", "#A3000D"}},
	{"ceb", "CEB", "China Everbright Bank", [2]string{"#6B2C91", "#431B5C"}},
	{"hxb", "HXB", "Hua Xia Bank", [2]string{"#E5001C", "#A10014"}},
	{"cmbc", "CMBC", "China Minsheng Bank", [2]string{"#00A0E9", "#006A9C"}},
	{"pab", "PAB", "Ping An Bank", [2]string{"#F26522", "#B5441A"}},
	{"cib", "CIB", "Industrial Bank", [2]string{"#003D7C", "#00254A"}},
	{"spdb", "SPDB", "Shanghai Pudong Development Bank", [2]string{"#002D72", "#001A45"}},
	{"cgb", "CGB", "China Guangfa Bank", [2]string{"#D6001C", "#960014"}},
	{"bob", "BOB", "Bank of Beijing", [2]string{"#E50012", "#A0000C"}},
	{"bosc", "BOSC", "Bank of Shanghai", [2]string{"#1A4C9C", "#0F2F61"}},
	{"czb", "CZB", "China Zheshang Bank", [2]string{"#C8A24A", "#8C7033"}},
	{"cbhb", "CBHB", "China Bohai Bank", [2]string{"#00529B", "#003366"}},
	{"nbcb", "NBCB", "Bank of Ningbo", [2]string{"#E4007F", "#A0005A"}},
}

// debitBanks offer debit cards; every bank of banks offers credit cards.
var debitBanks = []string{"boc", "icbc", "ccb", "bocom", "cmb", "abc", "psbc", "citic", "ceb", "cmbc", "pab", "cib"}

// alwaysOTP programmes put every binding on the yellow path (SMS code), so
// the demo shows it often.
var alwaysOTP = map[string]bool{
	"boc-credit": true, "boc-debit": true, "cmb-credit": true, "bocom-credit": true,
	"abc-debit": true, "psbc-debit": true, "cib-credit": true, "spdb-credit": true,
}

// longPAN programmes issue 19-digit PANs (as several large debit programmes do).
var longPAN = map[string]bool{"abc-debit": true, "psbc-debit": true}

// standIn programmes let the switch approve small amounts when the bank is down.
var standIn = map[string]int64{
	"icbc-credit": 50000, "icbc-debit": 30000, "ccb-credit": 50000, "ccb-debit": 30000,
	"boc-credit": 50000, "abc-debit": 20000, "cmb-credit": 80000, "bocom-credit": 50000,
}

// notes mark the demo cards `mipay up` prints, saying what each one shows.
var notes = map[string]string{
	"icbc-credit/0": "credit card: no SMS code when account and device are low-risk (green path)",
	"boc-credit/0":  "credit card: the bank always sends an SMS code (yellow path)",
	"ccb-debit/0":   "debit card (no CVN2)",
	"icbc-debit/2":  "debit card with 50.00 CNY: a payment above that is declined 51 (insufficient funds)",
}

var names = []string{
	"ZHANG WEI", "WANG FANG", "LI NA", "LIU YANG", "CHEN JING", "YANG LI", "ZHAO LEI",
	"HUANG MIN", "ZHOU JIE", "WU TAO", "XU MING", "SUN LI", "MA CHAO", "ZHU HONG",
	"HU BIN", "GUO QIANG", "HE YAN", "LIN XIA", "LUO JUN", "GAO PENG", "LIANG QING",
	"SONG JIA", "ZHENG HAO", "XIE YUN", "HAN MEI", "TANG LEI", "FENG YU", "DENG LIN",
}

var expiries = []string{"3012", "2911", "3106", "3203", "2908"}

func main() {
	out := flag.String("o", "default.json", "output file")
	flag.Parse()
	b, err := generate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// generate builds the reference data, validates it and returns it as
// indented JSON with a trailing newline.
func generate() ([]byte, error) {
	ref := build()
	if err := ref.Validate(); err != nil {
		return nil, fmt.Errorf("generated data is invalid: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ref); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func build() *config.Reference {
	rng := rand.New(rand.NewPCG(20260101, 4))
	ref := &config.Reference{
		Version:         1,
		NoCVMLimitMinor: 100000,
		TokenRequestors: []config.TokenRequestor{{ID: "50110030273", Name: "Mi Pay"}},
	}
	g := &gen{rng: rng}
	// Debit programmes first, then credit, each in bank order.
	n := 0
	for i, id := range debitBanks {
		ref.Issuers = append(ref.Issuers, g.issuer(bankByID(id), config.Debit, i, n))
		n++
	}
	for i, b := range banks {
		ref.Issuers = append(ref.Issuers, g.issuer(b, config.Credit, i, n))
		n++
	}
	ref.Cities = g.cities()
	return ref
}

func bankByID(id string) bank {
	for _, b := range banks {
		if b.id == id {
			return b
		}
	}
	panic("gen: unknown bank " + id)
}

type gen struct {
	rng    *rand.Rand
	phones int // phone numbers handed out
	names  int // names handed out
}

// issuer builds programme i of its card type; n is its index among all
// issuers (for the token BIN).
func (g *gen) issuer(b bank, cardType string, i, n int) config.Issuer {
	id := b.id + "-" + cardType
	var bins []string
	switch cardType {
	case config.Debit:
		bins = []string{fmt.Sprintf("6210%02d", 10+2*i), fmt.Sprintf("6210%02d", 11+2*i)}
	default:
		bins = []string{fmt.Sprintf("6250%02d", 10+2*i), fmt.Sprintf("6250%02d", 11+2*i)}
	}
	panLen := 16
	if longPAN[id] {
		panLen = 19
	}
	iss := config.Issuer{
		ID:        id,
		Bank:      b.name,
		BankCode:  b.code,
		CardType:  cardType,
		BINs:      bins,
		TokenBINs: []string{fmt.Sprintf("6290%02d", n)},
		PANLength: panLen,
		Products:  products(b, cardType),
		OTP: config.OTPPolicy{
			Digits:      6,
			TTL:         config.Duration(5 * time.Minute),
			MaxAttempts: 5,
			MaxResends:  3,
			AlwaysOTP:   alwaysOTP[id],
		},
		Limits:  limits(cardType),
		Timeout: config.Duration(2 * time.Second),
	}
	if m, ok := standIn[id]; ok {
		iss.StandIn = config.StandIn{Enabled: true, MaxMinor: m}
	}
	holders := 2
	if n%3 == 0 || id == "icbc-debit" {
		holders = 3
	}
	for k := range holders {
		iss.Cardholders = append(iss.Cardholders, g.cardholder(&iss, k))
	}
	return iss
}

func products(b bank, cardType string) []config.Product {
	art := b.art[0] + "/" + b.art[1]
	if cardType == config.Debit {
		return []config.Product{{Code: "debit", Name: b.code + " UnionPay Debit Card", Art: art}}
	}
	return []config.Product{
		{Code: "gold", Name: b.code + " UnionPay Gold Credit Card", Art: "#C9A227/" + b.art[1]},
		{Code: "platinum", Name: b.code + " UnionPay Platinum Credit Card", Art: "#4A4A4A/" + b.art[0]},
	}
}

func limits(cardType string) config.Limits {
	l := config.Limits{
		CVN2MaxAttempts:         3,
		BindingsPerCardPerDay:   5,
		BindingsPerDevicePerDay: 20,
		VelocityPerHour:         30,
	}
	if cardType == config.Debit {
		l.PerTransactionMinor = 5_000_000 // 50,000 CNY
		l.DailyMinor = 10_000_000
	} else {
		l.PerTransactionMinor = 10_000_000
		l.DailyMinor = 20_000_000
	}
	return l
}

func (g *gen) cardholder(iss *config.Issuer, k int) config.Cardholder {
	bin := iss.BINs[k%len(iss.BINs)]
	body := bin
	for len(body) < iss.PANLength-1 {
		body += fmt.Sprint(g.rng.IntN(10))
	}
	g.phones++
	g.names++
	c := config.Cardholder{
		PAN:     body + config.LuhnDigit(body),
		PSN:     k % 2,
		Expiry:  expiries[(g.names+k)%len(expiries)],
		Name:    names[(g.names-1)%len(names)],
		Phone:   fmt.Sprintf("1380013%04d", g.phones),
		Status:  "active",
		Product: iss.Products[k%len(iss.Products)].Code,
		Note:    notes[fmt.Sprintf("%s/%d", iss.ID, k)],
	}
	if iss.CardType == config.Credit {
		c.CVN2 = fmt.Sprintf("%03d", g.rng.IntN(1000))
		c.CreditLimitMinor = int64(20+g.rng.IntN(21)) * 100_000 // 20,000–40,000 CNY
	} else {
		c.BalanceMinor = int64(5+g.rng.IntN(46)) * 100_000 // 5,000–50,000 CNY
	}
	if iss.ID == "icbc-debit" && k == 2 {
		c.BalanceMinor = 5000 // 50.00 CNY: the "above the balance → 51" demo
	}
	return c
}
