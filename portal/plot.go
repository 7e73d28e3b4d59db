package portal

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// The location plot: reported positions drawn on an inline SVG with a
// metric grid, the newest one marked with its accuracy circle. No map
// tiles: the page works offline and loads nothing from elsewhere.

// Plot geometry, in SVG user units.
const (
	plotWidth    = 320.0
	plotHeight   = 220.0
	plotMargin   = 20.0
	minSpanM     = 200.0 // the plot covers at least this many metres
	metresPerDeg = 111_320.0
)

// plotPoint is one position in SVG coordinates.
type plotPoint struct {
	X, Y float64
	Time string
}

// plot is what the template draws.
type plot struct {
	W, H     float64
	Points   []plotPoint // oldest first
	Path     string      // polyline points of the trail
	Last     plotPoint
	RadiusPx float64 // accuracy of the last position
	GridX    []float64
	GridY    []float64
	GridM    int // metres between grid lines
	Caption  string
}

// newPlot lays out locations (newest first, as the wallet lists them).
// It returns nil when there is nothing to draw.
func newPlot(locs []location) *plot {
	if len(locs) == 0 {
		return nil
	}
	// Equirectangular projection around the newest position: fine for the
	// few kilometres a lost phone's trail spans.
	ref := locs[0]
	cosLat := math.Cos(ref.Latitude * math.Pi / 180)
	type xy struct{ x, y float64 } // metres east and north of ref
	pts := make([]xy, len(locs))
	minX, maxX, minY, maxY := 0.0, 0.0, 0.0, 0.0
	for i, l := range locs {
		dLon := l.Longitude - ref.Longitude
		// The shorter way round the antimeridian.
		if dLon > 180 {
			dLon -= 360
		} else if dLon < -180 {
			dLon += 360
		}
		p := xy{dLon * metresPerDeg * cosLat, (l.Latitude - ref.Latitude) * metresPerDeg}
		pts[i] = p
		minX, maxX = math.Min(minX, p.x), math.Max(maxX, p.x)
		minY, maxY = math.Min(minY, p.y), math.Max(maxY, p.y)
	}
	acc := math.Max(ref.AccuracyMeters, 0)
	minX, maxX = math.Min(minX, -acc), math.Max(maxX, acc)
	minY, maxY = math.Min(minY, -acc), math.Max(maxY, acc)
	span := math.Max(math.Max(maxX-minX, maxY-minY), minSpanM)
	cx, cy := (minX+maxX)/2, (minY+maxY)/2
	innerW, innerH := plotWidth-2*plotMargin, plotHeight-2*plotMargin
	scale := math.Min(innerW, innerH) / (span * 1.1) // px per metre
	toSVG := func(p xy) (float64, float64) {
		return plotWidth/2 + (p.x-cx)*scale, plotHeight/2 - (p.y-cy)*scale
	}
	out := &plot{W: plotWidth, H: plotHeight}
	var path strings.Builder
	for i := len(pts) - 1; i >= 0; i-- {
		x, y := toSVG(pts[i])
		pp := plotPoint{X: round1(x), Y: round1(y), Time: locs[i].Time.UTC().Format(time.DateTime) + " UTC"}
		out.Points = append(out.Points, pp)
		if path.Len() > 0 {
			path.WriteByte(' ')
		}
		path.WriteString(strconv.FormatFloat(pp.X, 'f', 1, 64) + "," + strconv.FormatFloat(pp.Y, 'f', 1, 64))
	}
	out.Path = path.String()
	out.Last = out.Points[len(out.Points)-1]
	out.RadiusPx = round1(math.Max(acc*scale, 3))
	// Grid every 1, 2 or 5 ×10^n metres, about 4 lines across.
	step := niceStep(span / 4)
	out.GridM = int(step)
	for gx := math.Ceil((cx-innerW/2/scale)/step) * step; gx <= cx+innerW/2/scale; gx += step {
		x, _ := toSVG(xy{gx, 0})
		out.GridX = append(out.GridX, round1(x))
	}
	for gy := math.Ceil((cy-innerH/2/scale)/step) * step; gy <= cy+innerH/2/scale; gy += step {
		_, y := toSVG(xy{0, gy})
		out.GridY = append(out.GridY, round1(y))
	}
	out.Caption = strconv.FormatFloat(ref.Latitude, 'f', 5, 64) + ", " + strconv.FormatFloat(ref.Longitude, 'f', 5, 64) +
		" ± " + strconv.Itoa(int(math.Round(acc))) + " m at " + out.Last.Time
	return out
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
