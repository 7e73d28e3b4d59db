package gate

import (
	"context"
	"testing"
	"time"

	"github.com/mipay-oss/mipay/config"
	"github.com/mipay-oss/mipay/store"
)

// FuzzCardAnswers: whatever a card (or something pretending to be one)
// answers, the gate neither panics nor opens, since it cannot make a MAC2
// that verifies under a PSAM key it does not know.
func FuzzCardAnswers(f *testing.F) {
	f.Add([]byte{0x6F, 0x0C, 0xA5, 0x0A, 0x5A, 0x08, 0x31, 0x12, 0, 0, 0, 0, 0, 1, 0x90, 0x00}, []byte{0, 0, 0x10, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3, 4, 0x90, 0}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 0x90, 0})
	f.Add([]byte{0x90, 0x00}, []byte{0x94, 0x01}, []byte{})
	ref, err := config.Default()
	if err != nil {
		f.Fatal(err)
	}
	city, _ := ref.City("sz")
	dir := f.TempDir()
	p, err := CreatePSAM(dir)
	if err != nil {
		f.Fatal(err)
	}
	p.st.City, p.st.Master = "sz", make([]byte, 16)
	p.mk = [16]byte{}
	db, err := store.Open(context.Background(), store.Config{Dir: dir}, "gate", Migrations())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	j, err := openJournal(dir)
	if err != nil {
		f.Fatal(err)
	}
	for _, mode := range []Mode{ModeBus, ModeExit} {
		g := &Gate{cfg: Config{City: city, Station: "sz02", Mode: mode, Now: time.Now}, psam: p, hot: map[string]bool{},
			db: db, j: j, pending: map[string]*pendingTap{}}
		f.Fuzz(func(t *testing.T, sel, init, debit []byte) {
			c := &scripted{answers: [][]byte{sel, init, debit, debit}}
			res, err := g.process(context.Background(), c)
			if err == nil && res.Open {
				t.Fatalf("opened on fuzzed answers: %+v", res)
			}
		})
		break // one Fuzz call per target
	}
}

type scripted struct {
	answers [][]byte
	i       int
}

func (s *scripted) Transmit(_ context.Context, _ []byte) ([]byte, error) {
	if s.i >= len(s.answers) {
		return []byte{0x6F, 0x00}, nil
	}
	a := s.answers[s.i]
	s.i++
	return a, nil
}
