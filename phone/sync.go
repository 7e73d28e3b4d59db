package phone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/mipay-oss/mipay"
)

// Mi Cloud on the handset: when online the phone syncs with the wallet,
// reporting where it is and taking the commands queued for it (from the
// lost-phone portal): LOCATE reports the position, RING rings, WIPE removes
// every applet and key from the secure element. Each command's result goes
// back to the wallet.

// Command kinds the wallet queues.
const (
	CommandLocate = "LOCATE"
	CommandRing   = "RING"
	CommandWipe   = "WIPE"
)

// Position is where the handset is. The emulator has no GPS receiver: the
// position is set (SetPosition, `mipay phone sync --lat --lon`) and kept in
// the phone's directory as gps.json.
type Position struct {
	Latitude       float64   `json:"latitude"`
	Longitude      float64   `json:"longitude"`
	AccuracyMeters float64   `json:"accuracyMeters"`
	Time           time.Time `json:"time,omitzero"`
}

// maxAccuracyMeters bounds a position's accuracy (the wallet's bound).
const maxAccuracyMeters = 100_000

// Validate checks the position's ranges.
func (l Position) Validate() error {
	switch {
	case math.IsNaN(l.Latitude) || l.Latitude < -90 || l.Latitude > 90:
		return mipay.Errorf(mipay.EINVALID, "latitude must be between -90 and 90")
	case math.IsNaN(l.Longitude) || l.Longitude < -180 || l.Longitude > 180:
		return mipay.Errorf(mipay.EINVALID, "longitude must be between -180 and 180")
	case math.IsNaN(l.AccuracyMeters) || l.AccuracyMeters < 0 || l.AccuracyMeters > maxAccuracyMeters:
		return mipay.Errorf(mipay.EINVALID, "accuracy must be between 0 and %d metres", maxAccuracyMeters)
	}
	return nil
}

func (p *Phone) gpsPath() string { return filepath.Join(p.dir, "gps.json") }

// SetPosition sets where the emulated handset is (kept for later syncs).
func (p *Phone) SetPosition(l Position) error {
	if err := l.Validate(); err != nil {
		return err
	}
	l.Time = time.Time{} // a fix is timed when it is reported
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return fmt.Errorf("phone: %w", err)
	}
	tmp := p.gpsPath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("phone: %w", err)
	}
	return os.Rename(tmp, p.gpsPath())
}

// maxGPSFileBytes bounds gps.json.
const maxGPSFileBytes = 1 << 10

// CurrentPosition returns the handset's position (a fix taken now), or nil
// when none was ever set.
func (p *Phone) CurrentPosition() (*Position, error) {
	f, err := os.Open(p.gpsPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("phone: %w", err)
	}
	defer f.Close()
	var l Position
	dec := json.NewDecoder(&limitedReader{f, maxGPSFileBytes})
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("phone: %s is corrupt: %w", p.gpsPath(), err)
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	l.Time = time.Now().UTC()
	return &l, nil
}

type limitedReader struct {
	f interface{ Read([]byte) (int, error) }
	n int
}

func (r *limitedReader) Read(b []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("file too large")
	}
	if len(b) > r.n {
		b = b[:r.n]
	}
	n, err := r.f.Read(b)
	r.n -= n
	return n, err
}

// SyncedCommand is what the phone did with one command.
type SyncedCommand struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	OK     bool   `json:"ok"`
	Result string `json:"result"`
}

// SyncResult is the outcome of one sync.
type SyncResult struct {
	Reported *Position       `json:"reported,omitempty"` // the position sent, if any
	Commands []SyncedCommand `json:"commands"`
	// Rang is true when a RING command made the phone ring.
	Rang bool `json:"rang"`
	// Wiped is true when a WIPE command emptied the secure element.
	Wiped bool `json:"wiped"`
}

type walletCommand struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
}

// Sync reports the position (when the phone has one) and runs the commands
// the wallet queued, reporting each result.
func (p *Phone) Sync(ctx context.Context) (*SyncResult, error) {
	p.mu.Lock()
	err := p.requireDevice()
	deviceID := p.app.DeviceID
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	pos, err := p.CurrentPosition()
	if err != nil {
		return nil, err
	}
	out := &SyncResult{Commands: []SyncedCommand{}}
	req := map[string]any{}
	if pos != nil {
		req["location"] = pos
		out.Reported = pos
	}
	var resp struct {
		Commands []walletCommand `json:"commands"`
	}
	base := "/v1/devices/" + url.PathEscape(deviceID)
	if err := p.wallet.Do(ctx, "POST", base+"/sync", req, &resp); err != nil {
		return nil, err
	}
	for _, c := range resp.Commands {
		done := p.runCommand(ctx, base, c, out)
		body := map[string]any{"ok": done.OK, "result": done.Result}
		if err := p.wallet.Do(ctx, "POST", base+"/commands/"+url.PathEscape(c.ID)+"/result", body, nil); err != nil {
			return out, fmt.Errorf("phone: report %s: %w", c.Kind, err)
		}
		out.Commands = append(out.Commands, done)
	}
	return out, nil
}

// maxResultBytes keeps results within the wallet's bound.
const maxResultBytes = 200

func (p *Phone) runCommand(ctx context.Context, base string, c walletCommand, out *SyncResult) SyncedCommand {
	done := SyncedCommand{ID: c.ID, Kind: c.Kind}
	switch c.Kind {
	case CommandLocate:
		pos, err := p.CurrentPosition()
		switch {
		case err != nil:
			done.Result = "no position: " + mipay.ErrorMessage(err)
		case pos == nil:
			done.Result = "no position fix"
		default:
			if err := p.wallet.Do(ctx, "POST", base+"/locations", pos, nil); err != nil {
				done.Result = "location not sent: " + mipay.ErrorMessage(err)
				break
			}
			done.OK, done.Result = true, fmt.Sprintf("located at %.5f, %.5f", pos.Latitude, pos.Longitude)
			out.Reported = pos
		}
	case CommandRing:
		// The emulator's speaker is the sync's answer.
		done.OK, done.Result, out.Rang = true, "rang", true
	case CommandWipe:
		n, err := p.wipe()
		if err != nil {
			done.Result = "wipe failed: " + mipay.ErrorMessage(err)
			break
		}
		done.OK, done.Result, out.Wiped = true, fmt.Sprintf("wallet wiped: %d card(s) removed from the secure element", n), true
	default:
		done.Result = "unknown command"
	}
	if len(done.Result) > maxResultBytes {
		done.Result = done.Result[:maxResultBytes]
	}
	return done
}

// wipe removes every applet and key from the SE and forgets the cards.
func (p *Phone) wipe() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.se.Cards())
	if err := p.se.Wipe(); err != nil {
		return 0, err
	}
	p.app.CardTokens = map[string]string{}
	return n, p.save()
}

// ReportPosition sends the handset's position to the wallet now.
func (p *Phone) ReportPosition(ctx context.Context, l Position) error {
	if err := l.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	err := p.requireDevice()
	deviceID := p.app.DeviceID
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if l.Time.IsZero() {
		l.Time = time.Now().UTC()
	}
	return p.wallet.Do(ctx, "POST", "/v1/devices/"+url.PathEscape(deviceID)+"/locations", l, nil)
}
