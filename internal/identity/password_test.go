package identity

import (
	"encoding/base64"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// passwordRE is the documented form of a device password.
var passwordRE = regexp.MustCompile(`^v1\.k1\.(s?)(-?[0-9]+)\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$`)

func TestMQTTPasswordFormat(t *testing.T) {
	t.Parallel()
	key := randBytes(t, KeySize)
	now := time.Unix(1_700_000_000, 999_000_000)
	for _, synced := range []bool{false, true} {
		mk := MQTTPassword
		if synced {
			mk = SyncedMQTTPassword
		}
		p := mk(key, "k1", "cam-01", now)
		m := passwordRE.FindStringSubmatch(p)
		if m == nil {
			t.Fatalf("synced %v: %q is not of the documented form", synced, p)
		}
		if (m[1] == "s") != synced || m[2] != "1700000000" {
			t.Fatalf("synced %v: %q has the wrong stamp", synced, p)
		}
		body := m[1] + m[2] + "." + m[3]
		mac := base64.RawURLEncoding.EncodeToString(refMAC(key, []byte("clipgate-mqtt-v1\nk1\ncam-01\n"+body)))
		if m[4] != mac {
			t.Fatalf("synced %v: MAC %q, want %q", synced, m[4], mac)
		}
		if err := VerifyMQTTPassword(key, "cam-01", p, now, 0); err != nil {
			t.Fatal(err)
		}
		st, err := ParseMQTTPassword(p)
		if err != nil || st.Synced != synced || st.KeyID != "k1" || !st.Time.Equal(time.Unix(1_700_000_000, 0)) || st.Nonce != body {
			t.Fatalf("ParseMQTTPassword(%q) = %+v, %v", p, st, err)
		}
		// Every password is another: the nonce is random.
		if q := mk(key, "k1", "cam-01", now); q == p {
			t.Fatalf("two passwords at the same time are equal: %q", p)
		}
	}
}

func TestVerifyMQTTPassword(t *testing.T) {
	t.Parallel()
	key := randBytes(t, KeySize)
	other := randBytes(t, KeySize)
	now := time.Unix(1_700_000_000, 0)
	good := MQTTPassword(key, "k1", "cam-01", now)
	sig := good[strings.LastIndexByte(good, '.')+1:]
	const nonce = "AAAAAAAAAAAAAAAA"
	// withTS signs a password with the given timestamp text (and nonce).
	withStamp := func(ts, nonce string) string {
		body := ts + "." + nonce
		return "v1.k1." + body + "." + base64.RawURLEncoding.EncodeToString(refMAC(key, []byte("clipgate-mqtt-v1\nk1\ncam-01\n"+body)))
	}
	withTS := func(ts string) string { return withStamp(ts, nonce) }
	unix := func(d int64) string { return strconv.FormatInt(now.Unix()+d, 10) }
	day := int64(24 * 3600)
	synced := int64(SyncedPasswordWindow / time.Second)
	cases := []struct {
		name     string
		key      []byte
		device   string
		password string
		window   time.Duration
		want     error
	}{
		{"good", key, "cam-01", good, 0, nil},
		{"good synced", key, "cam-01", SyncedMQTTPassword(key, "k1", "cam-01", now), 0, nil},
		{"edge of default window, past", key, "cam-01", withTS(unix(-day)), 0, nil},
		{"edge of default window, future", key, "cam-01", withTS(unix(day)), 0, nil},
		{"beyond default window, past", key, "cam-01", withTS(unix(-day - 1)), 0, ErrPasswordExpired},
		{"beyond default window, future", key, "cam-01", withTS(unix(day + 1)), 0, ErrPasswordExpired},
		{"custom window", key, "cam-01", withTS(unix(-61)), time.Minute, ErrPasswordExpired},
		{"inside custom window", key, "cam-01", withTS(unix(-60)), time.Minute, nil},
		{"edge of synced window, past", key, "cam-01", withTS("s" + unix(-synced)), 0, nil},
		{"edge of synced window, future", key, "cam-01", withTS("s" + unix(synced)), 0, nil},
		{"beyond synced window, past", key, "cam-01", withTS("s" + unix(-synced-1)), 0, ErrPasswordExpired},
		{"beyond synced window, future", key, "cam-01", withTS("s" + unix(synced+1)), 0, ErrPasswordExpired},
		{"synced, custom window narrower", key, "cam-01", withTS("s" + unix(-61)), time.Minute, ErrPasswordExpired},
		{"synced mark dropped", key, "cam-01", "v1.k1." + SyncedMQTTPassword(key, "k1", "cam-01", now)[len("v1.k1.s"):], 0, ErrBadPassword},
		{"synced mark added", key, "cam-01", "v1.k1.s" + good[len("v1.k1."):], 0, ErrBadPassword},
		{"epoch", key, "cam-01", withTS("0"), 0, ErrPasswordExpired},
		{"negative", key, "cam-01", withTS("-5"), 0, ErrPasswordExpired},
		{"max int64", key, "cam-01", withTS("9223372036854775807"), 0, ErrPasswordExpired},
		{"min int64", key, "cam-01", withTS("-9223372036854775808"), 0, ErrPasswordExpired},
		{"wrong key", other, "cam-01", good, 0, ErrBadPassword},
		{"wrong device", key, "cam-02", good, 0, ErrBadPassword},
		{"invalid device", key, "cam/01", good, 0, ErrBadPassword},
		{"empty key", nil, "cam-01", good, 0, ErrBadPassword},
		{"changed timestamp", key, "cam-01", "v1.k1.1700000001" + good[len("v1.k1.1700000000"):], 0, ErrBadPassword},
		{"changed nonce", key, "cam-01", withTS(unix(0))[:len("v1.k1.1700000000.")] + "B" + withTS(unix(0))[len("v1.k1.1700000000.")+1:], 0, ErrBadPassword},
		{"empty", key, "cam-01", "", 0, ErrMalformedPassword},
		{"plain text", key, "cam-01", "hunter2", 0, ErrMalformedPassword},
		{"v2", key, "cam-01", "v2" + good[2:], 0, ErrMalformedPassword},
		{"old form without nonce", key, "cam-01", "v1.k1.1700000000." + sig, 0, ErrMalformedPassword},
		{"no timestamp", key, "cam-01", withTS(""), 0, ErrMalformedPassword},
		{"synced mark only", key, "cam-01", withTS("s"), 0, ErrMalformedPassword},
		{"two synced marks", key, "cam-01", withTS("ss" + unix(0)), 0, ErrMalformedPassword},
		{"other mark", key, "cam-01", withTS("t" + unix(0)), 0, ErrMalformedPassword},
		{"short nonce", key, "cam-01", withStamp(unix(0), nonce[1:]), 0, ErrMalformedPassword},
		{"long nonce", key, "cam-01", withStamp(unix(0), nonce+"A"), 0, ErrMalformedPassword},
		{"nonce with bad characters", key, "cam-01", withStamp(unix(0), strings.Repeat("*", 16)), 0, ErrMalformedPassword},
		{"nonce with a dot", key, "cam-01", withStamp(unix(0), "AAAAAAA.AAAAAAAA"), 0, ErrMalformedPassword},
		{"no nonce", key, "cam-01", withStamp(unix(0), ""), 0, ErrMalformedPassword},
		{"no mac", key, "cam-01", "v1.k1.1700000000." + nonce + ".", 0, ErrMalformedPassword},
		{"no dots", key, "cam-01", "v1" + strings.Repeat("A", 70), 0, ErrMalformedPassword},
		{"prefix only", key, "cam-01", "v1.", 0, ErrMalformedPassword},
		{"short mac", key, "cam-01", good[:len(good)-1], 0, ErrMalformedPassword},
		{"long mac", key, "cam-01", good + "A", 0, ErrMalformedPassword},
		{"padded mac", key, "cam-01", good + "=", 0, ErrMalformedPassword},
		{"mac with bad characters", key, "cam-01", good[:len(good)-sigLen] + strings.Repeat("*", 43), 0, ErrBadPassword},
		{"leading zero", key, "cam-01", withTS("01700000000"), 0, ErrMalformedPassword},
		{"plus sign", key, "cam-01", withTS("+1700000000"), 0, ErrMalformedPassword},
		{"minus zero", key, "cam-01", withTS("-0"), 0, ErrMalformedPassword},
		{"lone minus", key, "cam-01", withTS("-"), 0, ErrMalformedPassword},
		{"hex timestamp", key, "cam-01", withTS("0x6553f100"), 0, ErrMalformedPassword},
		{"space in timestamp", key, "cam-01", withTS(" 1700000000"), 0, ErrMalformedPassword},
		{"int64 overflow", key, "cam-01", withTS("9223372036854775808"), 0, ErrMalformedPassword},
		{"int64 underflow", key, "cam-01", withTS("-9223372036854775809"), 0, ErrMalformedPassword},
		{"20 digits", key, "cam-01", withTS("17000000000000000000"), 0, ErrMalformedPassword},
		{"huge", key, "cam-01", strings.Repeat("v1.", 10000), 0, ErrMalformedPassword},
		// Key IDs.
		{"other key ID", key, "cam-01", strings.Replace(good, ".k1.", ".k2.", 1), 0, ErrBadPassword},
		{"no key ID", key, "cam-01", strings.Replace(good, ".k1.", ".", 1), 0, ErrMalformedPassword},
		{"empty key ID", key, "cam-01", strings.Replace(good, ".k1.", "..", 1), 0, ErrMalformedPassword},
		{"key ID with space", key, "cam-01", strings.Replace(good, ".k1.", ".k 1.", 1), 0, ErrMalformedPassword},
		{"key ID with slash", key, "cam-01", strings.Replace(good, ".k1.", ".k/1.", 1), 0, ErrMalformedPassword},
		{"long key ID", key, "cam-01", strings.Replace(good, ".k1.", "."+strings.Repeat("k", MaxKeyIDLen+1)+".", 1), 0, ErrMalformedPassword},
	}
	for _, c := range cases {
		err := VerifyMQTTPassword(c.key, c.device, c.password, now, c.window)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s (%q): got %v, want %v", c.name, c.password, err, c.want)
		}
	}
}

func TestMQTTPasswordWrongClockStillConnects(t *testing.T) {
	t.Parallel()
	key := randBytes(t, KeySize)
	server := time.Unix(1_700_000_000, 0)
	device := server.Add(-23 * time.Hour) // a camera whose clock is most of a day behind
	if err := VerifyMQTTPassword(key, "cam-01", MQTTPassword(key, "k1", "cam-01", device), server, 0); err != nil {
		t.Fatalf("device 23h behind refused: %v", err)
	}
	device = server.Add(25 * time.Hour)
	if err := VerifyMQTTPassword(key, "cam-01", MQTTPassword(key, "k1", "cam-01", device), server, 0); !errors.Is(err, ErrPasswordExpired) {
		t.Fatalf("device 25h ahead: got %v, want ErrPasswordExpired", err)
	}
	// A pre-1970 clock gives a negative timestamp that still round-trips.
	device = time.Unix(-1000, 0)
	if err := VerifyMQTTPassword(key, "cam-01", MQTTPassword(key, "k1", "cam-01", device), device, 0); err != nil {
		t.Fatalf("negative timestamp: %v", err)
	}
}

func TestVerifyMQTTPasswordDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	key := randBytes(t, KeySize)
	now := time.Unix(1_700_000_000, 0)
	p := MQTTPassword(key, "k1", "cam-000123", now)
	if n := testing.AllocsPerRun(100, func() {
		if VerifyMQTTPassword(key, "cam-000123", p, now, 0) != nil {
			panic("refused")
		}
	}); n != 0 {
		t.Fatalf("VerifyMQTTPassword allocates %v times per call", n)
	}
	// Another digit in the MAC (not "AA" at the end, which left 1 password in 4096 as it was).
	i := len(p) - 5
	bad := p[:i] + "A" + p[i+1:]
	if p[i] == 'A' {
		bad = p[:i] + "B" + p[i+1:]
	}
	if n := testing.AllocsPerRun(100, func() {
		if VerifyMQTTPassword(key, "cam-000123", bad, now, 0) == nil {
			panic("accepted")
		}
	}); n != 0 {
		t.Fatalf("refusing a password allocates %v times per call", n)
	}
}

func FuzzVerifyMQTTPassword(f *testing.F) {
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = byte(i)
	}
	now := time.Unix(1_700_000_000, 0)
	f.Add("cam-01", MQTTPassword(key, "k1", "cam-01", now), int64(0))
	f.Add("cam-01", SyncedMQTTPassword(key, "k1", "cam-01", now), int64(0))
	f.Add("cam-01", "v1.1700000000.", int64(time.Hour))
	f.Add("x", "v1.-0.AAAA", int64(-1))
	f.Add("cam-01", "v1.99999999999999999999."+strings.Repeat("A", 43), int64(1))
	f.Fuzz(func(t *testing.T, device, password string, window int64) {
		err := VerifyMQTTPassword(key, device, password, now, time.Duration(window))
		if err == nil {
			// Only a password made with the key can pass: of the documented form, with
			// the MAC of its stamp.
			m := passwordRE.FindStringSubmatch(password)
			if m == nil || base64.RawURLEncoding.EncodeToString(refMAC(key, []byte("clipgate-mqtt-v1\nk1\n"+device+"\n"+m[1]+m[2]+"."+m[3]))) != m[4] {
				t.Fatalf("accepted %q for %q", password, device)
			}
			return
		}
		if !errors.Is(err, ErrMalformedPassword) && !errors.Is(err, ErrBadPassword) && !errors.Is(err, ErrPasswordExpired) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func BenchmarkVerifyMQTTPassword(b *testing.B) {
	key := randBytes(b, KeySize)
	now := time.Unix(1_700_000_000, 0)
	p := MQTTPassword(key, "k1", "cam-000123", now)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := VerifyMQTTPassword(key, "cam-000123", p, now, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
