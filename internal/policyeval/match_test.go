package policyeval

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("ab?", 50) // 150 units: three words of shift-and state
	cases := []struct {
		pat, s string
		fold   bool
		want   bool
	}{
		{"", "", false, true},
		{"", "a", false, false},
		{"*", "", false, true},
		{"**", "anything", false, true},
		{"abc", "abc", false, true},
		{"abc", "abcd", false, false},
		{"abc", "ABC", false, false},
		{"abc", "ABC", true, true},
		{"a?c", "abc", false, true},
		{"a?c", "ac", false, false},
		{"a?c", "a視c", false, true},
		{"a??c", "a視c", false, false},
		{"a*c", "ac", false, true},
		{"a*c", "abbbc", false, true},
		{"a*c", "abbbcd", false, false},
		{"a*a", "a", false, false},
		{"a*b*c", "axbxc", false, true},
		{"a*b*c", "axcxb", false, false},
		{"*b?d*", "abcde", false, true},
		{"*b?d*", "abde", false, false},
		{"*x?y*", "x視y", false, true},
		{"*X?Y*", "..x-y..", true, true},
		{"*x?y*", "..X-Y..", true, true},
		{"*x?y*", "..X-Y..", false, false},
		{"*?*", "", false, false},
		{"*?*", "\xff", false, true},
		{"*\ufffd*", "\xff", false, false},
		{"*\ufffd*", "a\ufffdb", false, true},
		{"x*" + long + "*y", "x" + strings.Repeat("abZ", 50) + "y", false, true},
		{"x*" + long + "*y", "x" + strings.Repeat("abZ", 49) + "aZZy", false, false},
		{"x*" + long + "*y", "x" + strings.Repeat("ab", 200) + strings.Repeat("ab視", 50) + "y", false, true},
	}
	for _, c := range cases {
		p := compilePattern(c.pat, c.fold)
		if got := p.match(c.s); got != c.want {
			t.Errorf("%q (fold %v) against %q = %v, want %v", truncate(c.pat), c.fold, truncate(c.s), got, c.want)
		}
	}
}

// TestPatternMatchRandom compares the compiled matcher with the reference matcher on
// random patterns and texts over a small alphabet, where partial matches abound.
func TestPatternMatchRandom(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "視"}
	gen := func(n int, wild bool) string {
		var b strings.Builder
		for range n {
			k := rng.IntN(len(alphabet) + 2)
			switch {
			case wild && k == len(alphabet):
				b.WriteByte('*')
			case wild && k == len(alphabet)+1:
				b.WriteByte('?')
			default:
				b.WriteString(alphabet[k%len(alphabet)])
			}
		}
		return b.String()
	}
	matched := 0
	for range 20000 {
		pat := gen(rng.IntN(12), true)
		if rng.IntN(50) == 0 {
			pat = "*" + gen(70+rng.IntN(100), false) + "?" + "*" // a multi-word segment
		}
		s := gen(rng.IntN(30), false)
		switch rng.IntN(4) {
		case 0:
			s = strings.Repeat(s, 8)
		case 1: // an instance of the pattern, perhaps with one character changed
			var b strings.Builder
			for _, r := range pat {
				switch r {
				case '*':
					b.WriteString(gen(rng.IntN(5), false))
				case '?':
					b.WriteString(gen(1, false))
				default:
					b.WriteRune(r)
				}
			}
			s = b.String()
			if rs := []rune(s); len(rs) > 0 && rng.IntN(2) == 0 {
				rs[rng.IntN(len(rs))] = 'b'
				s = string(rs)
			}
		}
		p := compilePattern(pat, false)
		if got, want := p.match(s), refMatch(pat, s); got != want {
			t.Fatalf("%q against %q = %v, reference says %v", pat, s, got, want)
		} else if got {
			matched++
		}
	}
	if matched < 2000 {
		t.Errorf("only %d of 20000 random cases matched: the test is not exercising matches", matched)
	}
}
