package policy

import (
	"strings"
	"unicode/utf8"
)

// pattern is a compiled RAM wildcard pattern: '*' matches any run of characters (also
// none), '?' exactly one character (one UTF-8 encoded rune). It is split at the stars,
// so matching is a prefix check, a suffix check and a left-most search for each middle
// segment: linear in the text for each segment, no backtracking and no allocation.
type pattern struct {
	segs []string // the pattern split at '*' (runs of stars collapsed); len 1 = no star
	fold bool     // ASCII case-insensitive; segs are lower-cased
	qm   bool     // some segment holds a '?'
}

// compilePattern compiles p; fold makes it ASCII case-insensitive (for actions).
func compilePattern(p string, fold bool) pattern {
	if fold {
		p = asciiLower(p)
	}
	segs := strings.Split(p, "*")
	if len(segs) > 2 { // drop the empty middle segments left by "**"
		mid := segs[1 : len(segs)-1]
		kept := segs[:1]
		for _, s := range mid {
			if s != "" {
				kept = append(kept, s)
			}
		}
		segs = append(kept, segs[len(segs)-1])
	}
	return pattern{segs: segs, fold: fold, qm: strings.IndexByte(p, '?') >= 0}
}

// match reports whether the whole of s matches the pattern.
func (p *pattern) match(s string) bool {
	if len(p.segs) == 1 {
		n, ok := p.matchAt(s, 0, p.segs[0])
		return ok && n == len(s)
	}
	first, last := p.segs[0], p.segs[len(p.segs)-1]
	start, ok := p.matchAt(s, 0, first)
	if !ok {
		return false
	}
	end, ok := p.matchSuffix(s[start:], last)
	if !ok {
		return false
	}
	end += start
	for _, seg := range p.segs[1 : len(p.segs)-1] {
		i, n, ok := p.find(s[start:end], seg)
		if !ok {
			return false
		}
		start += i + n
	}
	return true
}

// matchAt matches seg against s from offset i and returns the length of s it consumed.
func (p *pattern) matchAt(s string, i int, seg string) (int, bool) {
	start := i
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
	return i - start, true
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

// find returns the left-most match of seg in s: its offset and length.
func (p *pattern) find(s, seg string) (at, n int, ok bool) {
	if !p.fold && !p.qm {
		at = strings.Index(s, seg)
		return at, len(seg), at >= 0
	}
	for i := 0; i < len(s); i += runeLen(s, i) {
		if n, ok := p.matchAt(s, i, seg); ok {
			return i, n, true
		}
	}
	return 0, 0, false
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
