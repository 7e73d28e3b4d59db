package wallet

import (
	"net/http"
	"time"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/httpx"
)

// --- notifications ---

// longPollSlack is added to a long poll's wait for the write deadline.
const longPollSlack = 10 * time.Second

func (a *API) notifications(w http.ResponseWriter, r *http.Request, accountID string) error {
	after, err := parseAfter(r.URL.Query().Get("after"))
	if err != nil {
		return err
	}
	wait := DefaultLongPollWait
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxLongPollWait {
			return mipay.Errorf(mipay.EINVALID, "wait must be a duration from 0s to %s", MaxLongPollWait)
		}
		wait = d
	}
	// The server's write timeout is shorter than the longest poll.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + longPollSlack))
	ns, err := a.s.Notifications(r.Context(), accountID, r.PathValue("id"), after, wait)
	if err != nil {
		return err
	}
	next := after
	if len(ns) > 0 {
		next = ns[len(ns)-1].Seq
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"notifications": ns, "next": next})
	return nil
}

// notificationStream serves the device's notifications as server-sent
// events: "id: <seq>", "event: <kind>", "data: <notification JSON>". A client
// resumes with Last-Event-ID (or ?after=). The stream ends after
// DefaultMaxStreamDuration; comments keep it alive in between.
func (a *API) notificationStream(w http.ResponseWriter, r *http.Request, accountID string) error {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("after")
	}
	after, err := parseAfter(v)
	if err != nil {
		return err
	}
	ctx := r.Context()
	deviceID := r.PathValue("id")
	if _, err := a.s.Device(ctx, accountID, deviceID); err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	end := time.Now().Add(DefaultMaxStreamDuration)
	_ = rc.SetWriteDeadline(end.Add(longPollSlack))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte(": mipay wallet notifications\n\n")); err != nil {
		return nil
	}
	if rc.Flush() != nil {
		return nil
	}
	for time.Now().Before(end) && ctx.Err() == nil && !a.s.stopped() {
		ns, err := a.s.Notifications(ctx, accountID, deviceID, after, DefaultStreamHeartbeat)
		if err != nil {
			// Headers are sent: end the stream; the client reconnects.
			httpx.Logger(ctx).WarnContext(ctx, "notification stream ended", "err", err)
			return nil
		}
		if len(ns) == 0 {
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return nil
			}
		}
		for i := range ns {
			b, err := sseEvent(&ns[i])
			if err != nil {
				return nil
			}
			if _, err := w.Write(b); err != nil {
				return nil
			}
			after = ns[i].Seq
		}
		if rc.Flush() != nil {
			return nil
		}
	}
	return nil
}

// --- Mi Cloud ---

type locationRequest struct {
	Latitude       *float64  `json:"latitude"`
	Longitude      *float64  `json:"longitude"`
	AccuracyMeters float64   `json:"accuracyMeters"`
	Time           time.Time `json:"time"`
}

func (l *locationRequest) location() (Location, error) {
	switch {
	case l.Latitude == nil:
		return Location{}, required("latitude")
	case l.Longitude == nil:
		return Location{}, required("longitude")
	}
	return Location{Latitude: *l.Latitude, Longitude: *l.Longitude, AccuracyMeters: l.AccuracyMeters, Time: l.Time}, nil
}

func (a *API) reportLocation(w http.ResponseWriter, r *http.Request, accountID string) error {
	var in locationRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	l, err := in.location()
	if err != nil {
		return err
	}
	out, err := a.s.ReportLocation(r.Context(), accountID, r.PathValue("id"), l)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, out)
	return nil
}

func (a *API) locations(w http.ResponseWriter, r *http.Request, accountID string) error {
	limit, err := intQuery(r, "limit", DefaultLocationsKept)
	if err != nil {
		return err
	}
	ls, err := a.s.Locations(r.Context(), accountID, r.PathValue("id"), limit)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"locations": ls})
	return nil
}

type commandRequest struct {
	Kind string `json:"kind"`
}

func (a *API) queueCommand(w http.ResponseWriter, r *http.Request, accountID string) error {
	var in commandRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Kind == "" {
		return required("kind")
	}
	c, err := a.s.QueueCommand(r.Context(), accountID, r.PathValue("id"), in.Kind)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusAccepted, c)
	return nil
}

func (a *API) listCommands(w http.ResponseWriter, r *http.Request, accountID string) error {
	cs, err := a.s.Commands(r.Context(), accountID, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"commands": cs})
	return nil
}

type syncRequest struct {
	Location *locationRequest `json:"location"`
}

// sync is what a device calls when it comes online: it may report where it
// is, and it takes the commands queued for it.
func (a *API) sync(w http.ResponseWriter, r *http.Request, accountID string) error {
	var in syncRequest
	if err := decodeOptional(w, r, &in); err != nil {
		return err
	}
	deviceID := r.PathValue("id")
	if in.Location != nil {
		l, err := in.Location.location()
		if err != nil {
			return err
		}
		if _, err := a.s.ReportLocation(r.Context(), accountID, deviceID, l); err != nil {
			return err
		}
	}
	cs, err := a.s.TakeCommands(r.Context(), accountID, deviceID)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"commands": cs})
	return nil
}

type commandResultRequest struct {
	OK     *bool  `json:"ok"`
	Result string `json:"result"`
}

func (a *API) commandResult(w http.ResponseWriter, r *http.Request, accountID string) error {
	var in commandResultRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.OK == nil {
		return required("ok")
	}
	c, err := a.s.CompleteCommand(r.Context(), accountID, r.PathValue("id"), r.PathValue("commandId"), *in.OK, in.Result)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, c)
	return nil
}
