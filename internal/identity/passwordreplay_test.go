package identity

import (
	"errors"
	"testing"
	"time"
)

// TestPasswordReplayCache: a password connects once; a synced one is forgotten once its
// short window has passed, a wide one is remembered for the whole wide window.
func TestPasswordReplayCache(t *testing.T) {
	t.Parallel()
	key := randBytes(t, KeySize)
	now := time.Unix(1_700_000_000, 0)
	c := NewPasswordReplayCache(0, 1000) // one shard: every Check sweeps all
	check := func(pw string, at time.Time) error {
		t.Helper()
		if err := VerifyMQTTPassword(key, "cam-01", pw, at, 0); err != nil {
			return err
		}
		st, err := ParseMQTTPassword(pw)
		if err != nil {
			t.Fatal(err)
		}
		return c.Check("cam-01", st, at)
	}
	wide := MQTTPassword(key, "k1", "cam-01", now.Add(-2*time.Hour)) // a clock 2 h behind
	synced := SyncedMQTTPassword(key, "k1", "cam-01", now)
	for _, pw := range []string{wide, synced} {
		if err := check(pw, now); err != nil {
			t.Fatalf("first use of %q: %v", pw, err)
		}
		if err := check(pw, now.Add(time.Second)); !errors.Is(err, ErrReplay) {
			t.Fatalf("second use of %q: got %v, want ErrReplay", pw, err)
		}
	}
	// Another device may not be confused with this one.
	st, _ := ParseMQTTPassword(wide)
	if err := c.Check("cam-02", st, now); err != nil {
		t.Fatalf("same nonce, other device: %v", err)
	}
	// Twenty hours later the wide password is still remembered; the synced one has
	// expired and is refused by its timestamp instead.
	later := now.Add(20 * time.Hour)
	if err := check(wide, later); !errors.Is(err, ErrReplay) {
		t.Fatalf("wide password 20 h later: got %v, want ErrReplay", err)
	}
	if err := check(synced, later); !errors.Is(err, ErrPasswordExpired) {
		t.Fatalf("synced password 20 h later: got %v, want ErrPasswordExpired", err)
	}
	// The synced entries are swept: after its window only the wide ones remain.
	if err := check(SyncedMQTTPassword(key, "k1", "cam-01", later), later); err != nil {
		t.Fatal(err)
	}
	if n := c.synced.Len(); n != 1 {
		t.Fatalf("synced cache holds %d entries, want 1 (the old one swept)", n)
	}
	if n := c.Len(); n != 3 {
		t.Fatalf("cache holds %d entries, want 3", n)
	}
}

// TestPasswordReplayCacheFull: when full, new passwords are refused, never an old one
// forgotten.
func TestPasswordReplayCacheFull(t *testing.T) {
	t.Parallel()
	key := randBytes(t, KeySize)
	now := time.Unix(1_700_000_000, 0)
	c := NewPasswordReplayCache(time.Hour, 2)
	var first PasswordStamp
	for i := range 3 {
		st, err := ParseMQTTPassword(MQTTPassword(key, "k1", "cam-01", now))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Check("cam-01", st, now)
		switch {
		case i == 0:
			first = st
			fallthrough
		case i < 2:
			if err != nil {
				t.Fatalf("password %d: %v", i, err)
			}
		default:
			if !errors.Is(err, ErrReplayCacheFull) {
				t.Fatalf("password %d: got %v, want ErrReplayCacheFull", i, err)
			}
		}
	}
	if err := c.Check("cam-01", first, now); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay when full: got %v, want ErrReplay", err)
	}
}

func TestParseMQTTPasswordGarbage(t *testing.T) {
	t.Parallel()
	for _, pw := range []string{"", "v1.", "x", "v1.1.2.3", "v1.s.AAAAAAAAAAAAAAAA." + string(make([]byte, 43))} {
		if _, err := ParseMQTTPassword(pw); !errors.Is(err, ErrMalformedPassword) {
			t.Errorf("ParseMQTTPassword(%q): got %v, want ErrMalformedPassword", pw, err)
		}
	}
}
