package logmask

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Luhn-valid test numbers of several lengths.
const (
	pan16 = "6225881234567898"
	pan19 = "6222021234567890128"
	pan15 = "378282246310005"
	pan13 = "4222222222222"
)

func TestMask(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "card " + pan16 + " declined", "card 622588******7898 declined"},
		{"alone", pan16, "622588******7898"},
		{"19 digits", pan19, "622202*********0128"},
		{"15 digits", pan15, "378282*****0005"},
		{"13 digits", pan13, "422222***2222"},
		{"json", `{"pan":"` + pan16 + `","amount":1000}`, `{"pan":"622588******7898","amount":1000}`},
		{"json number", `{"pan":` + pan16 + `}`, `{"pan":622588******7898}`},
		{"url query", "/v1/cards?pan=" + pan16 + "&x=1", "/v1/cards?pan=622588******7898&x=1"},
		{"key value", "pan=" + pan19 + " psn=01", "pan=622202*********0128 psn=01"},
		{"two pans", pan16 + "," + pan15, "622588******7898,378282*****0005"},
		{"track2", pan16 + "=25121010000000000000", "622588******7898=251210*********00000"},
		{"letters around", "x" + pan16 + "y", "x622588******7898y"},
		{"spaced groups", "6225 8812 3456 7898", "6225 88** **** 7898"},
		{"dashed groups", "6225-8812-3456-7898", "6225-88**-****-7898"},
		{"amex groups", "3782 822463 10005", "3782 82**** *0005"},
		{"groups then year", "6225 8812 3456 7898 2026", "6225 88** **** 7898 2026"},
		{"phone", "call +86 13800138000 now", "call +86 13800138000 now"},
		{"phone grouped", "+86 138 0013 8000", "+86 138 0013 8000"},
		{"unix ms", "at 1764120511000", "at 1764120511000"},
		{"amount", "amount=100000000000000 CNY", "amount=100000000000000 CNY"},
		{"date time", "2026-11-26 01:28:31.123456789", "2026-11-26 01:28:31.123456789"},
		{"not luhn", "6225881234567890", "6225881234567890"},
		{"too short", "422222222222", "422222222222"},
		{"tlv hex", "5A08" + pan16 + "5F3401", "5A08622588******78985F3401"},
		{"tlv hex lower", "5a08" + pan16 + "9f", "5a08622588******78989f"},
		// PAN‖00 is Luhn-valid too; the longest window is masked.
		{"iso8583 ascii", "0200F23C...16" + pan16 + "000000000000001000", "0200F23C...16622588***********0************1000"},
		{"zero padding stays", "00000000000000000000000000", "00000000000000000000000000"},
		{"long run", "99" + pan19 + "00", "9962220************2800"},
		{"empty", "", ""},
		{"unicode", "卡号" + pan16 + "。", "卡号622588******7898。"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Mask(tc.in); got != tc.want {
				t.Errorf("Mask(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMaskPAN(t *testing.T) {
	tests := []struct{ in, want string }{
		{pan16, "622588******7898"},
		{pan19, "622202*********0128"},
		{pan13, "422222***2222"},
		{"123456789", "*****6789"},
		{"1234", "****"},
		{"", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := MaskPAN(tc.in); got != tc.want {
				t.Errorf("MaskPAN(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestLuhnValid(t *testing.T) {
	for _, s := range []string{pan16, pan19, pan15, pan13, "4111111111111111", "0"} {
		if !LuhnValid(s) {
			t.Errorf("LuhnValid(%q) = false", s)
		}
	}
	for _, s := range []string{"6225881234567890", "", "4111-1111", "12a4"} {
		if LuhnValid(s) {
			t.Errorf("LuhnValid(%q) = true", s)
		}
	}
}

func TestMaskDoesNotAllocateWithoutPAN(t *testing.T) {
	s := "authorized amount=1000 at 2026-11-26T01:28:31Z phone 13800138000"
	if n := testing.AllocsPerRun(100, func() { _ = Mask(s) }); n != 0 {
		t.Errorf("Mask allocated %v times on text without a PAN", n)
	}
}

type panStringer struct{ pan string }

func (p panStringer) String() string { return "card " + p.pan }

type panText struct{ pan string }

func (p panText) MarshalText() ([]byte, error) { return []byte(p.pan), nil }

type panStruct struct {
	PAN   string `json:"pan"`
	Label string `json:"label"`
}

type panJSONOnly struct{ v string }

func (p panJSONOnly) MarshalJSON() ([]byte, error) { return []byte(`"` + p.v + `"`), nil }
func (p panJSONOnly) Format(f fmt.State, _ rune)   { fmt.Fprint(f, "opaque") }

type panValuer struct{ pan string }

func (p panValuer) LogValue() slog.Value { return slog.StringValue(p.pan) }

// digitsRun finds unmasked 13–19 digit runs in output, to check that nothing
// Luhn-valid survived.
var digitsRun = regexp.MustCompile(`[0-9]{13,19}`)

func assertNoPAN(t *testing.T, out string) {
	t.Helper()
	for _, pan := range []string{pan16, pan19, pan15, pan13} {
		if strings.Contains(out, pan) {
			t.Errorf("output holds PAN %s: %s", pan, out)
		}
	}
	for _, run := range digitsRun.FindAllString(out, -1) {
		if LuhnValid(run) {
			t.Errorf("output holds Luhn-valid number %s: %s", run, out)
		}
	}
}

func TestHandler(t *testing.T) {
	err := fmt.Errorf("issuer: %w", errors.New("card "+pan16+" unknown"))
	cases := []struct {
		name string
		log  func(l *slog.Logger)
		want string // a masked form that must appear
	}{
		{"message", func(l *slog.Logger) { l.Info("pan " + pan16) }, "622588******7898"},
		{"string attr", func(l *slog.Logger) { l.Info("x", "pan", pan19) }, "622202*********0128"},
		{"int attr", func(l *slog.Logger) { l.Info("x", "pan", int64(6225881234567898)) }, "622588******7898"},
		{"uint attr", func(l *slog.Logger) { l.Info("x", "pan", uint64(6225881234567898)) }, "622588******7898"},
		{"float attr", func(l *slog.Logger) { l.Info("x", "pan", float64(6225881234567898)) }, "622588******7898"},
		{"error attr", func(l *slog.Logger) { l.Error("x", "err", err) }, "622588******7898"},
		{"stringer", func(l *slog.Logger) { l.Info("x", "card", panStringer{pan16}) }, "622588******7898"},
		{"text marshaler", func(l *slog.Logger) { l.Info("x", "card", panText{pan16}) }, "622588******7898"},
		{"struct", func(l *slog.Logger) { l.Info("x", "card", panStruct{PAN: pan16, Label: "main"}) }, "622588******7898"},
		{"struct pointer", func(l *slog.Logger) { l.Info("x", "card", &panStruct{PAN: pan16}) }, "622588******7898"},
		{"json only", func(l *slog.Logger) { l.Info("x", "card", panJSONOnly{pan16}) }, "622588******7898"},
		{"map", func(l *slog.Logger) { l.Info("x", "m", map[string]string{"pan": pan16}) }, "622588******7898"},
		{"bytes", func(l *slog.Logger) { l.Info("x", "raw", []byte(pan16)) }, "622588******7898"},
		{"log valuer", func(l *slog.Logger) { l.Info("x", "card", panValuer{pan16}) }, "622588******7898"},
		{"group", func(l *slog.Logger) {
			l.Info("x", slog.Group("card", "pan", pan16, slog.Group("inner", "pan", pan15)))
		}, "378282*****0005"},
		{"with attrs", func(l *slog.Logger) { l.With("pan", pan16).Info("x") }, "622588******7898"},
		{"with group", func(l *slog.Logger) { l.WithGroup("req").With("pan", pan16).Info("x", "q", "?pan="+pan13) }, "422222***2222"},
		{"key", func(l *slog.Logger) { l.Info("x", pan16, 1) }, "622588******7898"},
	}
	formats := map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	}
	for fname, mk := range formats {
		for _, tc := range cases {
			t.Run(fname+"/"+tc.name, func(t *testing.T) {
				var buf bytes.Buffer
				tc.log(slog.New(NewHandler(mk(&buf))))
				out := buf.String()
				assertNoPAN(t, out)
				if !strings.Contains(out, tc.want) {
					t.Errorf("output lacks %q: %s", tc.want, out)
				}
			})
		}
	}
}

func TestHandlerKeepsNonPANValues(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil)))
	at := time.Date(2026, 11, 26, 1, 28, 31, 0, time.UTC)
	l.Info("authorized", "amount", int64(100000000000000), "phone", "13800138000",
		"at_ms", int64(1764120511000), "at", at, "took", 3*time.Second, "ok", true)
	out := buf.String()
	for _, want := range []string{`"amount":100000000000000`, `"phone":"13800138000"`,
		`"at_ms":1764120511000`, `"ok":true`, `"took":3000000000`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s: %s", want, out)
		}
	}
}

func TestNewHandlerIdempotent(t *testing.T) {
	h := NewHandler(slog.NewTextHandler(&bytes.Buffer{}, nil))
	if NewHandler(h) != h {
		t.Error("wrapping a masking handler again made a second layer")
	}
}

func BenchmarkMask(b *testing.B) {
	b.Run("no pan", func(b *testing.B) {
		s := "authorization approved stan=123456 amount=1000 rrn=612345678901 at 2026-11-26T01:28:31Z"
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			_ = Mask(s)
		}
	})
	b.Run("pan", func(b *testing.B) {
		s := "authorization approved pan=" + pan16 + " amount=1000"
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			_ = Mask(s)
		}
	})
}

func BenchmarkHandler(b *testing.B) {
	l := slog.New(NewHandler(slog.NewJSONHandler(discard{}, nil)))
	plain := slog.New(slog.NewJSONHandler(discard{}, nil))
	b.Run("baseline no masking", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			plain.Info("authorization", "stan", 123456, "amount", 1000, "merchant", "coffee shop", "rc", "00")
		}
	})
	b.Run("no pan", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			l.Info("authorization", "stan", 123456, "amount", 1000, "merchant", "coffee shop", "rc", "00")
		}
	})
	b.Run("pan", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			l.Info("authorization", "stan", 123456, "pan", pan16, "merchant", "coffee shop", "rc", "00")
		}
	})
}

// reportCPU reports process CPU time per op (user+system): on a shared
// machine it says more than wall-clock ns/op. Use as defer reportCPU(b)().
func reportCPU(b *testing.B) func() {
	start := cpuNanos(b)
	return func() { b.ReportMetric(float64(cpuNanos(b)-start)/float64(b.N), "cpu-ns/op") }
}

func cpuNanos(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
