// Package logmask keeps card numbers out of logs. Its slog handler masks every
// Luhn-valid run of 13–19 digits — in the message and in every attribute value,
// whatever its type — to the first 6 and last 4 digits, keeping the length, so
// "6225881234567894" becomes "622588******7894". Numbers that are not
// Luhn-valid (phone numbers, amounts, timestamps) are left alone.
//
// Besides plain runs, the common printed forms with groups separated by one
// space or dash ("6225 8812 3456 7894", Amex "3782-822463-10005") are masked.
package logmask

import "strings"

// PAN length bounds (ISO/IEC 7812).
const (
	MinPANDigits = 13
	MaxPANDigits = 19
)

// Digits kept in clear on each side of a masked PAN (PCI DSS first 6 / last 4).
const (
	keepFirst = 6
	keepLast  = 4
)

// maxGroups bounds how many separated digit groups one candidate may span; a
// printed PAN has at most 5 groups ("4-4-4-4-3").
const maxGroups = 5

// Mask returns text with every Luhn-valid 13–19 digit number masked to first
// 6 / last 4 digits. Text without such a number is returned unchanged and
// without allocating.
func Mask(text string) string {
	var out []byte // copy of text, made on the first match
	i := 0
	for i < len(text) {
		if !isDigit(text[i]) {
			i++
			continue
		}
		end := runEnd(text, i)
		if gEnd, ok := groupedPAN(text, i, end); ok {
			out = maskDigits(out, text, i, gEnd)
			i = gEnd
			continue
		}
		n := end - i
		switch {
		case n >= MinPANDigits && n <= MaxPANDigits && luhnValid(text[i:end]):
			out = maskDigits(out, text, i, end)
		case n > MaxPANDigits || (n >= MinPANDigits && hexAdjacent(text, i, end)):
			out = maskEmbedded(out, text, i, end)
		}
		i = end
	}
	if out == nil {
		return text
	}
	return string(out)
}

// hexAdjacent reports whether the digit run text[start:end] touches a hex
// letter: it is then likely part of a hex dump (a TLV "5A08" followed by
// the PAN's BCD digits), where a PAN does not form a run of its own.
func hexAdjacent(text string, start, end int) bool {
	return (start > 0 && isHexLetter(text[start-1])) || (end < len(text) && isHexLetter(text[end]))
}

func isHexLetter(c byte) bool { return c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// maskEmbedded masks every Luhn-valid window of 13–19 digits inside the run
// text[start:end] (a run too long to be a PAN itself, or one inside a hex
// dump): raw ISO 8583 messages and hex dumps carry PANs run together with
// other digits. Windows are checked in O(1) each with prefix sums.
func maskEmbedded(out []byte, text string, start, end int) []byte {
	n := end - start
	var stack [2 * 64]int
	var sums []int
	if 2*(n+1) <= len(stack) {
		sums = stack[:2*(n+1)]
	} else {
		sums = make([]int, 2*(n+1))
	}
	// evenDbl[k]/oddDbl[k]: Luhn sums of the first k digits when digits at
	// even/odd offsets are the doubled ones.
	evenDbl, oddDbl := sums[:n+1], sums[n+1:]
	evenDbl[0], oddDbl[0] = 0, 0
	for k := 0; k < n; k++ {
		d := int(text[start+k] - '0')
		dd := 2 * d
		if dd > 9 {
			dd -= 9
		}
		if k%2 == 0 {
			evenDbl[k+1], oddDbl[k+1] = evenDbl[k]+dd, oddDbl[k]+d
		} else {
			evenDbl[k+1], oddDbl[k+1] = evenDbl[k]+d, oddDbl[k]+dd
		}
	}
	// Every Luhn-valid window is masked, overlapping ones too: skipping a
	// window because another covered part of it could leave most of a PAN
	// in clear. PANs do not start with 0, which keeps zero padding
	// (amounts, fillers) clear.
	for s := 0; s+MinPANDigits <= n; s++ {
		if text[start+s] == '0' {
			continue
		}
		for l := MinPANDigits; l <= MaxPANDigits && s+l <= n; l++ {
			e := s + l
			// The rightmost digit (offset e-1) is not doubled; digits of the
			// other parity are.
			var sum int
			if (e-1)%2 == 1 {
				sum = evenDbl[e] - evenDbl[s]
			} else {
				sum = oddDbl[e] - oddDbl[s]
			}
			if sum%10 == 0 {
				out = maskDigits(out, text, start+s, start+e)
			}
		}
	}
	return out
}

// Contains reports whether text holds a number Mask would mask.
func Contains(text string) bool {
	return Mask(text) != text
}

// MaskPAN masks one card number: first 6 and last 4 digits kept, the rest
// replaced by '*', length kept. Input too short to keep 10 digits in clear
// keeps only the last 4 (or nothing, under 8 characters), so a short value is
// never shown whole.
func MaskPAN(pan string) string {
	n := len(pan)
	b := []byte(pan)
	switch {
	case n >= MinPANDigits:
		for k := keepFirst; k < n-keepLast; k++ {
			b[k] = '*'
		}
	case n >= 2*keepLast:
		for k := 0; k < n-keepLast; k++ {
			b[k] = '*'
		}
	default:
		for k := range b {
			b[k] = '*'
		}
	}
	return string(b)
}

// groupedPAN recognises a PAN printed in groups: a first group of exactly 4
// digits, then 2–4 more groups each after the same single separator (' ' or
// '-'); middle groups have 4–6 digits, the last 1–6. The longest prefix of
// groups with 13–19 digits in total that is Luhn-valid wins. Dates and times
// ("2026-11-26 01:28") never match: their later groups are 2 digits.
// It returns the end offset of the match in text.
func groupedPAN(text string, start, firstEnd int) (int, bool) {
	if firstEnd-start != 4 || firstEnd+1 >= len(text) {
		return 0, false
	}
	sep := text[firstEnd]
	if sep != ' ' && sep != '-' {
		return 0, false
	}
	var ends [maxGroups]int
	ends[0] = firstEnd
	groups := 1
	digits := 4
	for groups < maxGroups {
		prev := ends[groups-1]
		if prev+1 >= len(text) || text[prev] != sep || !isDigit(text[prev+1]) {
			break
		}
		e := runEnd(text, prev+1)
		n := e - (prev + 1)
		if n > 6 {
			break
		}
		ends[groups] = e
		groups++
		digits += n
		if n < 4 || digits > MaxPANDigits {
			break // a short group can only be the last
		}
	}
	best := -1
	for g := 3; g <= groups; g++ {
		if !middleGroupsOK(ends[:g]) {
			break
		}
		if d := countDigits(text[start:ends[g-1]]); d >= MinPANDigits && d <= MaxPANDigits &&
			luhnValidSkipping(text[start:ends[g-1]]) {
			best = ends[g-1]
		}
	}
	if best < 0 {
		return 0, false
	}
	return best, true
}

// middleGroupsOK checks every group but the first and last has 4–6 digits.
func middleGroupsOK(ends []int) bool {
	for k := 1; k < len(ends)-1; k++ {
		start := ends[k-1] + 1
		if n := ends[k] - start; n < 4 || n > 6 {
			return false
		}
	}
	return true
}

// maskDigits copies text into out (once) and masks the digits of text[start:end]
// beyond the first 6 and before the last 4, leaving separators.
func maskDigits(out []byte, text string, start, end int) []byte {
	if out == nil {
		out = []byte(text)
	}
	total := countDigits(text[start:end])
	seen := 0
	for k := start; k < end; k++ {
		if !isDigit(text[k]) {
			continue
		}
		if seen >= keepFirst && seen < total-keepLast {
			out[k] = '*'
		}
		seen++
	}
	return out
}

func runEnd(text string, i int) int {
	for i < len(text) && isDigit(text[i]) {
		i++
	}
	return i
}

func countDigits(s string) int {
	n := 0
	for k := 0; k < len(s); k++ {
		if isDigit(s[k]) {
			n++
		}
	}
	return n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// LuhnValid reports whether s is all digits and passes the Luhn (mod 10) check.
func LuhnValid(s string) bool {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return false
	}
	return luhnValid(s)
}

// luhnValid assumes s is all digits.
func luhnValid(s string) bool { return luhnValidSkipping(s) }

// luhnValidSkipping runs the Luhn check over the digits of s, skipping
// separators.
func luhnValidSkipping(s string) bool {
	sum := 0
	double := false
	for k := len(s) - 1; k >= 0; k-- {
		c := s[k]
		if !isDigit(c) {
			continue
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}
