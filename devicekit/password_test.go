package devicekit

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// Issue 12.4 on the kit's side: a camera whose clock is 2 hours behind connects (with a
// wide password); once an auth reply has told it the server time, its reconnections use
// synced passwords (narrow window), which the broker accepts because the kit corrects its
// clock. If its clock then jumps by hours, the synced password is refused once and the
// next attempt, with a wide password, connects.
func TestConnectPasswordsWithClockHoursOff(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	var skew atomic.Int64
	skew.Store(int64(-2 * time.Hour))
	k := s.kit("cam-pwclock", func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	if st := s.broker.Stats(); st.AuthFailures != 0 || st.SyncedPasswords != 0 {
		t.Fatalf("first connection: %d auth failures, %d synced passwords; want a wide password accepted", st.AuthFailures, st.SyncedPasswords)
	}
	if _, err := k.Credentials(t.Context()); err != nil { // learns the server time
		t.Fatal(err)
	}
	reconnect := func() {
		t.Helper()
		gen := k.gen.Load()
		s.restartBroker()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		for k.gen.Load() == gen {
			if ctx.Err() != nil {
				t.Fatal("the kit did not reconnect")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	reconnect()
	if st := s.broker.Stats(); st.AuthFailures != 0 || st.SyncedPasswords != 1 {
		t.Fatalf("reconnection: %d auth failures, %d synced passwords; want 0 and 1", st.AuthFailures, st.SyncedPasswords)
	}
	skew.Store(int64(3 * time.Hour)) // the camera's clock jumps 5 hours ahead
	reconnect()
	if st := s.broker.Stats(); st.AuthFailures != 1 || st.SyncedPasswords != 0 {
		t.Fatalf("after the clock jump: %d auth failures, %d synced passwords; want 1 and 0", st.AuthFailures, st.SyncedPasswords)
	}
}
