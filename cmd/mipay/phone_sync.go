package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"

	"github.com/mipay-oss/mipay"
	"github.com/mipay-oss/mipay/phone"
)

// positionFlags reads --lat, --lon and --accuracy; ok is false when
// neither --lat nor --lon was given.
func positionFlags(fs *flag.FlagSet) func() (phone.Position, bool, error) {
	lat := fs.Float64("lat", math.NaN(), "latitude of the handset, e.g. 39.90840")
	lon := fs.Float64("lon", math.NaN(), "longitude of the handset, e.g. 116.39750")
	acc := fs.Float64("accuracy", 20, "accuracy of the fix in metres")
	return func() (phone.Position, bool, error) {
		if math.IsNaN(*lat) && math.IsNaN(*lon) {
			return phone.Position{}, false, nil
		}
		if math.IsNaN(*lat) || math.IsNaN(*lon) {
			return phone.Position{}, false, usagef("give both --lat and --lon")
		}
		l := phone.Position{Latitude: *lat, Longitude: *lon, AccuracyMeters: *acc}
		if err := l.Validate(); err != nil {
			return l, false, usagef("%s", mipay.ErrorMessage(err))
		}
		return l, true, nil
	}
}

// syncPhoneCommands are the handset's Mi Cloud commands.
func syncPhoneCommands() []phoneCommand {
	return []phoneCommand{
		{"sync", "[--lat X --lon Y [--accuracy M]]", "go online with Mi Cloud: report the position and run queued commands (locate, ring, wipe)", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			pos := positionFlags(fs)
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				l, set, err := pos()
				if err != nil {
					return err
				}
				if set {
					if err := p.SetPosition(l); err != nil {
						return err
					}
				}
				res, err := p.Sync(ctx)
				if err != nil {
					return err
				}
				return o.result(res, func(w io.Writer) { printSync(w, res) })
			}
		}},
		{"report-location", "--lat X --lon Y [--accuracy M]", "set the handset's position and report it to Mi Cloud now", func(fs *flag.FlagSet) func(context.Context, *phone.Phone, *phoneOut) error {
			pos := positionFlags(fs)
			return func(ctx context.Context, p *phone.Phone, o *phoneOut) error {
				l, set, err := pos()
				if err != nil {
					return err
				}
				if !set {
					return usagef("phone report-location: --lat and --lon are required")
				}
				if err := p.SetPosition(l); err != nil {
					return err
				}
				if err := p.ReportPosition(ctx, l); err != nil {
					return err
				}
				return o.result(l, func(w io.Writer) {
					fmt.Fprintf(w, "Reported %.5f, %.5f (± %.0f m).\n", l.Latitude, l.Longitude, l.AccuracyMeters)
				})
			}
		}},
	}
}

func printSync(w io.Writer, r *phone.SyncResult) {
	if r.Reported != nil {
		fmt.Fprintf(w, "Position reported: %.5f, %.5f (± %.0f m).\n", r.Reported.Latitude, r.Reported.Longitude, r.Reported.AccuracyMeters)
	} else {
		fmt.Fprintln(w, "No position to report (set one with --lat and --lon).")
	}
	if len(r.Commands) == 0 {
		fmt.Fprintln(w, "No commands waiting.")
	}
	for _, c := range r.Commands {
		status := "done"
		if !c.OK {
			status = "failed"
		}
		fmt.Fprintf(w, "%s: %s (%s)\n", c.Kind, status, c.Result)
	}
	if r.Rang {
		fmt.Fprintln(w, "*** RING RING RING ***")
	}
}
