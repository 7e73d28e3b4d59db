package config

import (
	"encoding/hex"
	"fmt"
	"math"
)

// Bounds of a city's reference data.
const (
	MaxStations       = 1000
	MaxFareBands      = 32
	MinAIDBytes       = 5
	MaxAIDBytes       = 16
	MinCardDigits     = 10
	MaxCardDigits     = 20 // e-purse application serial: 10 bytes BCD
	MaxFareMinor      = 1_000_000
	MaxCityBalance    = 100_000_000 // 1,000,000 CNY: far above any real cap
	maxCardPrefixDigs = 8
)

// City returns the city with id.
func (r *Reference) City(id string) (*City, bool) {
	for i := range r.Cities {
		if r.Cities[i].ID == id {
			return &r.Cities[i], true
		}
	}
	return nil, false
}

// Transit reports whether the city carries the transit card data (an AID);
// a city with only an id and a name is a placeholder the transit party skips.
func (c *City) Transit() bool { return c.AID != "" }

// Station returns the station with id.
func (c *City) Station(id string) (*Station, bool) {
	for i := range c.Stations {
		if c.Stations[i].ID == id {
			return &c.Stations[i], true
		}
	}
	return nil, false
}

// MetroFare is the fare between two stations: the first band whose UpToKM
// covers the distance, or the last band.
func (c *City) MetroFare(from, to string) (int64, error) {
	a, ok := c.Station(from)
	if !ok {
		return 0, fmt.Errorf("city %s has no station %q", c.ID, from)
	}
	b, ok := c.Station(to)
	if !ok {
		return 0, fmt.Errorf("city %s has no station %q", c.ID, to)
	}
	return c.FareForKM(math.Abs(a.KM - b.KM)), nil
}

// FareForKM is the metro fare of a trip of km kilometres.
func (c *City) FareForKM(km float64) int64 {
	for _, f := range c.FareBands {
		if km <= f.UpToKM {
			return f.FareMinor
		}
	}
	if len(c.FareBands) == 0 {
		return 0
	}
	return c.FareBands[len(c.FareBands)-1].FareMinor
}

// MaxMetroFare is the highest metro fare (charged at an exit without entry).
func (c *City) MaxMetroFare() int64 {
	var m int64
	for _, f := range c.FareBands {
		m = max(m, f.FareMinor)
	}
	return m
}

// AIDBytes is the AID decoded.
func (c *City) AIDBytes() []byte {
	b, _ := hex.DecodeString(c.AID)
	return b
}

func (c *City) validate() error {
	if c.Name == "" {
		return fmt.Errorf("name is empty")
	}
	if !c.Transit() {
		if c.Product != "" || len(c.Stations) > 0 || c.CardPrefix != "" {
			return fmt.Errorf("aid is empty but transit data is set")
		}
		return nil
	}
	aid, err := hex.DecodeString(c.AID)
	if err != nil || len(aid) < MinAIDBytes || len(aid) > MaxAIDBytes {
		return fmt.Errorf("aid must be %d–%d bytes of hex", MinAIDBytes, MaxAIDBytes)
	}
	if c.Product == "" {
		return fmt.Errorf("product is empty")
	}
	if c.Art != "" && !artPattern.MatchString(c.Art) {
		return fmt.Errorf("art must look like #RRGGBB/#RRGGBB")
	}
	if c.CardDigits < MinCardDigits || c.CardDigits > MaxCardDigits {
		return fmt.Errorf("cardDigits must be %d–%d", MinCardDigits, MaxCardDigits)
	}
	if c.CardPrefix == "" || len(c.CardPrefix) > maxCardPrefixDigs || !allDigits(c.CardPrefix) || len(c.CardPrefix) >= c.CardDigits {
		return fmt.Errorf("cardPrefix must be 1–%d digits, shorter than cardDigits", maxCardPrefixDigs)
	}
	for _, v := range []struct {
		name string
		v    int64
		min  int64
		max  int64
	}{
		{"busFareMinor", c.BusFareMinor, 1, MaxFareMinor},
		{"minEntryBalanceMinor", c.MinEntryBalanceMinor, 0, MaxFareMinor},
		{"issueFeeMinor", c.IssueFeeMinor, 0, MaxFareMinor},
		{"maxBalanceMinor", c.MaxBalanceMinor, 1, MaxCityBalance},
		{"transfersPerYear", int64(c.TransfersPerYear), 0, 366},
	} {
		if v.v < v.min || v.v > v.max {
			return fmt.Errorf("%s must be %d–%d", v.name, v.min, v.max)
		}
	}
	if len(c.Stations) < 2 || len(c.Stations) > MaxStations {
		return fmt.Errorf("stations: want 2–%d", MaxStations)
	}
	seen := map[string]bool{}
	for _, s := range c.Stations {
		if !idPattern.MatchString(s.ID) || s.Name == "" {
			return fmt.Errorf("station %q: id must be lower-case letters, digits and dashes, and the name set", s.ID)
		}
		if seen[s.ID] {
			return fmt.Errorf("station %q: duplicate id", s.ID)
		}
		seen[s.ID] = true
		if s.KM < 0 || s.KM > 10000 || math.IsNaN(s.KM) {
			return fmt.Errorf("station %q: km must be 0–10000", s.ID)
		}
	}
	if len(c.FareBands) == 0 || len(c.FareBands) > MaxFareBands {
		return fmt.Errorf("fareBands: want 1–%d", MaxFareBands)
	}
	for i, f := range c.FareBands {
		if f.FareMinor < 1 || f.FareMinor > MaxFareMinor {
			return fmt.Errorf("fareBands[%d]: fareMinor must be 1–%d", i, MaxFareMinor)
		}
		if i > 0 && f.UpToKM <= c.FareBands[i-1].UpToKM {
			return fmt.Errorf("fareBands[%d]: upToKm must increase", i)
		}
	}
	return nil
}
