package policyeval

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// pattern is a compiled RAM wildcard pattern: '*' matches any run of characters (also
// none), '?' exactly one character (one UTF-8 encoded rune).
//
// It is split at the stars into segments. The first segment must match at the start of
// the text, the last at its end, and each middle segment is found left-most after the
// previous one; every segment matches a fixed number of characters, so the greedy
// left-most choice is correct and there is no backtracking. A middle segment without '?'
// is found with strings.Index; one with '?' (or any, when case-folding) with a
// bit-parallel (shift-and) search, linear in the text whatever the pattern, so that a
// hostile pattern cannot make matching quadratic. Matching does not allocate.
type pattern struct {
	first, last string // segments anchored at the start and the end
	mids        []mid  // middle segments, searched in order
	star        bool   // false: the whole pattern is first, matched exactly
	fold        bool   // ASCII case-insensitive; segments are lower-cased
}

// mid is a middle segment.
type mid struct {
	lit   string    // the segment's text
	words []bitWord // shift-and tables when lit has a '?' or the pattern folds case
}

// bitWord covers up to 64 consecutive units (characters or '?') of a segment.
type bitWord struct {
	any   uint64   // bits of the '?' units
	top   uint64   // bit of the word's last unit
	runes []rune   // distinct literal characters, sorted
	masks []uint64 // masks[i]: bits of the units equal to runes[i]
}

// badRune stands for a byte of invalid UTF-8 in the text: '?' matches it, no literal does.
const badRune = -1

// compilePattern compiles p; fold makes it ASCII case-insensitive (for actions).
func compilePattern(p string, fold bool) pattern {
	if fold {
		p = asciiLower(p)
	}
	segs := strings.Split(p, "*")
	pat := pattern{first: segs[0], fold: fold, star: len(segs) > 1}
	if !pat.star {
		return pat
	}
	pat.last = segs[len(segs)-1]
	for _, s := range segs[1 : len(segs)-1] {
		if s == "" {
			continue // "**" is "*"
		}
		m := mid{lit: s}
		if fold || strings.IndexByte(s, '?') >= 0 {
			m.words = compileWords(s)
		}
		pat.mids = append(pat.mids, m)
	}
	return pat
}

// compileWords builds the shift-and tables of a segment.
func compileWords(s string) []bitWord {
	units := []rune(s)
	words := make([]bitWord, (len(units)+63)/64)
	for i, u := range units {
		w, bit := &words[i/64], uint64(1)<<(i%64)
		w.top = bit
		if u == '?' {
			w.any |= bit
			continue
		}
		j, found := slices.BinarySearch(w.runes, u)
		if !found {
			w.runes = slices.Insert(w.runes, j, u)
			w.masks = slices.Insert(w.masks, j, 0)
		}
		w.masks[j] |= bit
	}
	return words
}

// mask returns the bits of the units that match character r.
func (w *bitWord) mask(r rune) uint64 {
	lo, hi := 0, len(w.runes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := w.runes[m]; {
		case c == r:
			return w.any | w.masks[m]
		case c < r:
			lo = m + 1
		default:
			hi = m
		}
	}
	return w.any
}

// match reports whether the whole of s matches the pattern.
func (p *pattern) match(s string) bool {
	start, ok := p.matchAt(s, p.first)
	if !p.star || !ok {
		return ok && start == len(s)
	}
	end, ok := p.matchSuffix(s[start:], p.last)
	if !ok {
		return false
	}
	end += start
	for i := range p.mids {
		n, ok := p.find(s[start:end], &p.mids[i])
		if !ok {
			return false
		}
		start += n
	}
	return true
}

// matchAt matches seg against the start of s and returns the length of s it consumed.
func (p *pattern) matchAt(s string, seg string) (int, bool) {
	i := 0
	for j := 0; j < len(seg); j++ {
		if i >= len(s) {
			return 0, false
		}
		if c := seg[j]; c == '?' {
			i += runeLen(s, i)
		} else if !p.eq(s[i], c) {
			return 0, false
		} else {
			i++
		}
	}
	return i, true
}

// matchSuffix matches seg against the end of s and returns where the match starts.
func (p *pattern) matchSuffix(s string, seg string) (int, bool) {
	i := len(s)
	for j := len(seg) - 1; j >= 0; j-- {
		if i == 0 {
			return 0, false
		}
		if c := seg[j]; c == '?' {
			_, n := utf8.DecodeLastRuneInString(s[:i])
			i -= n
		} else if !p.eq(s[i-1], c) {
			return 0, false
		} else {
			i--
		}
	}
	return i, true
}

// find returns where the left-most match of m in s ends.
func (p *pattern) find(s string, m *mid) (end int, ok bool) {
	if m.words == nil {
		at := strings.Index(s, m.lit)
		return at + len(m.lit), at >= 0
	}
	// Shift-and: bit k of state[w] is set when units ..k of word w match the text just
	// read (for w > 0, following a full match of the words before).
	words := m.words
	if len(words) == 1 { // the usual case: one word of state in a register
		w := &words[0]
		var state uint64
		for i := 0; i < len(s); {
			r, n := p.next(s, i)
			i += n
			if state = (state<<1 | 1) & w.mask(r); state&w.top != 0 {
				return i, true
			}
		}
		return 0, false
	}
	var state [(MaxStringLen + 63) / 64]uint64
	last := &words[len(words)-1]
	for i := 0; i < len(s); {
		r, n := p.next(s, i)
		i += n
		carry := uint64(1) // a match may start at every character
		for w := range words {
			d := state[w]
			state[w] = (d<<1 | carry) & words[w].mask(r)
			carry = d >> 63
		}
		if state[len(words)-1]&last.top != 0 {
			return i, true
		}
	}
	return 0, false
}

// next decodes the text character at s[i] for the shift-and search, and its length.
func (p *pattern) next(s string, i int) (rune, int) {
	r := rune(s[i])
	if r < utf8.RuneSelf {
		if p.fold && 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return r, 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && n == 1 {
		r = badRune
	}
	return r, n
}

// eq compares a byte of the text with a byte of the pattern.
func (p *pattern) eq(t, c byte) bool {
	if p.fold && 'A' <= t && t <= 'Z' {
		t += 'a' - 'A'
	}
	return t == c
}

// runeLen is the length of the UTF-8 rune at s[i] (1 for an invalid byte).
func runeLen(s string, i int) int {
	if s[i] < utf8.RuneSelf {
		return 1
	}
	_, n := utf8.DecodeRuneInString(s[i:])
	return n
}

// asciiLower lower-cases ASCII letters only, as action names are compared.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
