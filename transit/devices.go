package transit

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mipay-oss/mipay/events"
)

// Lost phones. The portal's "switch off Mi Pay on this device" must hotlist
// the device's transit cards, and "found it" lift that. The wallet owns the
// portal; the agency listens for its device events (durable consumer
// DurableDevices, at least once; the handlers are idempotent):
//
//	device.switched_off {"deviceId": "…"} → every ACTIVE card of the device HOTLISTED (DEVICE_LOST, by DEVICE)
//	device.found        {"deviceId": "…"} → cards HOTLISTED by DEVICE back to ACTIVE
//
// A card whose balance moved stays MOVED, a card the user hotlisted itself
// (by CARD) stays hotlisted. The wallet calls the same two changes over
// HTTP with the user's session: POST /v1/devices/{id}/hotlist and
// POST /v1/devices/{id}/found.
const (
	SubjectDeviceSwitchedOff = "device.switched_off"
	SubjectDeviceFound       = "device.found"
	DurableDevices           = "transit-devices"
	reasonDeviceLost         = "DEVICE_LOST"
)

// DeviceEvent is the payload of the device events.
type DeviceEvent struct {
	DeviceID string `json:"deviceId"`
}

// HandleDeviceEvent applies a device event (idempotent).
func (s *Service) HandleDeviceEvent(ctx context.Context, subject string, e DeviceEvent) error {
	if e.DeviceID == "" {
		return nil
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		switch subject {
		case SubjectDeviceSwitchedOff:
			_, err = tx.ExecContext(ctx, `UPDATE transit_cards SET status = $2, status_reason = $3, hotlisted_by = $6, updated = $4 WHERE device_id = $1 AND status = $5`,
				e.DeviceID, CardHotlisted, reasonDeviceLost, s.nowMS(), CardActive, HotlistedByDevice)
		case SubjectDeviceFound:
			_, err = tx.ExecContext(ctx, `UPDATE transit_cards SET status = $2, status_reason = '', hotlisted_by = '', updated = $4 WHERE device_id = $1 AND status = $3 AND hotlisted_by = $5`,
				e.DeviceID, CardActive, CardHotlisted, s.nowMS(), HotlistedByDevice)
		}
		return err
	})
}

// subscribeDevices listens for the wallet's device events.
func (s *Service) subscribeDevices(ctx context.Context, bus *events.Bus) ([]events.Subscription, error) {
	var subs []events.Subscription
	for _, subj := range []string{SubjectDeviceSwitchedOff, SubjectDeviceFound} {
		subj := subj
		sub, err := bus.Subscribe(ctx, subj, DurableDevices+"-"+map[string]string{SubjectDeviceSwitchedOff: "off", SubjectDeviceFound: "found"}[subj],
			func(ctx context.Context, e events.Event) error {
				var d DeviceEvent
				if err := e.Decode(&d); err != nil {
					s.log.Warn("malformed device event dropped", "subject", subj, "err", err)
					return nil
				}
				return s.HandleDeviceEvent(ctx, subj, d)
			})
		if err != nil {
			for _, x := range subs {
				x.Close()
			}
			return nil, fmt.Errorf("transit: subscribe %s: %w", subj, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}
