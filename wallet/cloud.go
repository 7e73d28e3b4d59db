package wallet

import (
	"context"
	"math"
	"time"

	"github.com/mipay-oss/mipay"
)

// Bounds of Mi Cloud input.
const (
	maxLocationAccuracyMeters = 100_000
	maxLocationFuture         = 5 * time.Minute // clock skew allowed on reported times
	maxLocationAge            = 30 * 24 * time.Hour
	maxCommandResultBytes     = 200
	maxCommandsListed         = 50
	maxFinishedCommandsKept   = 50 // delivered or finished, per device
)

// ReportLocation records where the device is (sent by the device when
// online). The history is bounded to LocationsKept per device.
func (s *Service) ReportLocation(ctx context.Context, accountID, deviceID string, l Location) (*Location, error) {
	if _, err := s.Device(ctx, accountID, deviceID); err != nil {
		return nil, err
	}
	now := s.now()
	switch {
	case math.IsNaN(l.Latitude) || l.Latitude < -90 || l.Latitude > 90:
		return nil, mipay.Errorf(mipay.EINVALID, "latitude must be between -90 and 90")
	case math.IsNaN(l.Longitude) || l.Longitude < -180 || l.Longitude > 180:
		return nil, mipay.Errorf(mipay.EINVALID, "longitude must be between -180 and 180")
	case math.IsNaN(l.AccuracyMeters) || l.AccuracyMeters < 0 || l.AccuracyMeters > maxLocationAccuracyMeters:
		return nil, mipay.Errorf(mipay.EINVALID, "accuracyMeters must be between 0 and %d", maxLocationAccuracyMeters)
	}
	if l.Time.IsZero() {
		l.Time = now
	}
	if l.Time.After(now.Add(maxLocationFuture)) || l.Time.Before(now.Add(-maxLocationAge)) {
		return nil, mipay.Errorf(mipay.EINVALID, "time must be within the last %d days", int(maxLocationAge/(24*time.Hour)))
	}
	l.Time, l.ReceivedAt = l.Time.UTC(), now
	if err := s.repo.insertLocation(ctx, newID("loc"), deviceID, &l, s.cfg.LocationsKept); err != nil {
		return nil, err
	}
	if err := s.repo.touchDevice(ctx, deviceID, now); err != nil {
		return nil, err
	}
	return &l, nil
}

// Locations returns the device's reported locations, newest first.
func (s *Service) Locations(ctx context.Context, accountID, deviceID string, limit int) ([]Location, error) {
	if _, err := s.Device(ctx, accountID, deviceID); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > s.cfg.LocationsKept {
		limit = s.cfg.LocationsKept
	}
	return s.repo.locations(ctx, deviceID, limit)
}

// QueueCommand queues a command (LOCATE, RING, WIPE) for the device; it is
// delivered the next time the device syncs (and announced on its
// notification feed). The same kind already waiting is not queued twice.
func (s *Service) QueueCommand(ctx context.Context, accountID, deviceID, kind string) (*Command, error) {
	switch kind {
	case CommandLocate, CommandRing, CommandWipe:
	case "":
		return nil, mipay.Errorf(mipay.EINVALID, "kind is required (LOCATE, RING or WIPE)")
	default:
		return nil, mipay.Errorf(mipay.EINVALID, "kind must be LOCATE, RING or WIPE")
	}
	if _, err := s.Device(ctx, accountID, deviceID); err != nil {
		return nil, err
	}
	c := &Command{ID: newID("cmd"), DeviceID: deviceID, Kind: kind, State: CommandPending, Created: s.now()}
	out, err := s.repo.queueCommand(ctx, c, s.cfg.NotificationsKept)
	if err != nil {
		return nil, err
	}
	s.hub.signal(deviceID)
	return out, nil
}

// TakeCommands hands the device its waiting commands (marking them
// delivered) and records that it was seen.
func (s *Service) TakeCommands(ctx context.Context, accountID, deviceID string) ([]Command, error) {
	if _, err := s.Device(ctx, accountID, deviceID); err != nil {
		return nil, err
	}
	now := s.now()
	if err := s.repo.touchDevice(ctx, deviceID, now); err != nil {
		return nil, err
	}
	return s.repo.takeCommands(ctx, deviceID, now)
}

// CompleteCommand records what the device did with a command.
func (s *Service) CompleteCommand(ctx context.Context, accountID, deviceID, commandID string, ok bool, result string) (*Command, error) {
	if err := checkID("command", commandID); err != nil {
		return nil, err
	}
	if err := checkText("result", result, 0, maxCommandResultBytes); err != nil {
		return nil, err
	}
	if _, err := s.Device(ctx, accountID, deviceID); err != nil {
		return nil, err
	}
	state := CommandDone
	if !ok {
		state = CommandFailed
	}
	return s.repo.completeCommand(ctx, deviceID, commandID, state, result, s.now())
}

// Commands lists the device's recent commands, newest first.
func (s *Service) Commands(ctx context.Context, accountID, deviceID string) ([]Command, error) {
	if _, err := s.Device(ctx, accountID, deviceID); err != nil {
		return nil, err
	}
	return s.repo.commands(ctx, deviceID, maxCommandsListed)
}
