package devicekit

import (
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// The SDKs sign with the system clock and OSS and STS accept 15 minutes of skew, so the
// shared test clock never moves more than that away from the system clock.

// fifteenMinutes makes the worker ask STS for the shortest credentials it may.
func fifteenMinutes(c *tokenworker.Config) { c.STS.Duration = 15 * time.Minute }

func TestCredentialsRotateDuringMultipart(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{worker: fifteenMinutes})
	k := s.kit("cam-rotate", func(c *Config) {
		c.PartSize = MinPartSize
		c.MultipartThreshold = 2 * MinPartSize
	})
	c1, err := k.Credentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// After the first part, 11 minutes pass: 4 are left, less than the 5-minute margin.
	var once sync.Once
	parts := 0
	k.onProgress = func(done, total int64) {
		parts++
		once.Do(func() { s.clock.Advance(11 * time.Minute) })
	}
	path, data := clipFile(t, "rotate.bin", 8*MinPartSize)
	ev, err := k.Upload(t.Context(), Clip{Path: path, Name: "rotate.mp4"})
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, s, k, ev, "rotate.mp4", data, mustStat(t, path).ModTime())
	c2 := k.cache.Load()
	if c2 == nil || c2.AccessKeyID == c1.AccessKeyID || !c2.Expiration.After(c1.Expiration) {
		t.Fatalf("credentials not rotated: %v then %v", c1.AccessKeyID, c2)
	}
	if st := s.worker.Stats(); st.Requests != 2 || st.STSCalls != 2 {
		t.Errorf("worker stats %+v, want a second request midway", st)
	}
	if parts != 8 || ev.Attempts != 1 {
		t.Errorf("%d parts, %d attempts: want 8 parts in one attempt (renewal before expiry, no 403)", parts, ev.Attempts)
	}
}

func TestExpiredTokenRenewedAfter403(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{worker: fifteenMinutes})
	// The kit keeps the system clock; the cloud and the worker run 14 minutes behind, so
	// the kit learns a -14m offset and its credentials expire a minute from now.
	s.clock.Advance(-14 * time.Minute)
	k := s.kit("cam-expire", func(c *Config) { c.Now = time.Now })
	c1, err := k.Credentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(c1.Expiration); d > 90*time.Second || d < 0 {
		t.Fatalf("credentials expire in %v, want about a minute", d)
	}
	// The cloud's clock jumps 16 minutes: the token has expired at OSS, but the kit (still
	// on its -14m offset) believes it good for another 10 minutes.
	s.clock.Advance(16 * time.Minute)
	if k.cached() != c1 {
		t.Fatal("the kit dropped the credentials itself; the test needs OSS to refuse them")
	}
	path, data := clipFile(t, "expired.mp4", 4000)
	ev, err := k.Upload(t.Context(), Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, s, k, ev, "expired.mp4", data, mustStat(t, path).ModTime())
	if ev.Attempts != 2 {
		t.Errorf("%d attempts, want 2 (403 SecurityTokenExpired, then success)", ev.Attempts)
	}
	// The renewal met the worker's clock window and corrected the offset again.
	if st := s.worker.Stats(); st.STSCalls != 2 || st.Errors[clipgate.CodeClockSkew] != 2 {
		t.Errorf("worker stats %+v, want 2 STS calls and 2 clock_skew", st)
	}
	if c2 := k.cache.Load(); c2 == nil || c2.AccessKeyID == c1.AccessKeyID {
		t.Errorf("credentials not renewed")
	}
}

func TestUploadRetriesAfterCredentialsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		size int
		key  string // the bogus access key ID
	}{
		{"put-bad-token", 1000, "STS.NoSuchTemporaryKey"},
		{"put-unknown-key", 1000, "LTAINoSuchKey000001"},
		{"multipart-bad-token", 5 * MinPartSize, "STS.NoSuchTemporaryKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, stackOptions{})
			device := "cam-403"
			k := s.kit(device, func(c *Config) {
				c.PartSize = MinPartSize
				c.MultipartThreshold = 2 * MinPartSize
			})
			info := s.workerCfg.OSS
			info.Prefix += device + "/"
			bogus := &Credentials{
				Credentials: clipgate.Credentials{AccessKeyID: tc.key, AccessKeySecret: "not-a-secret",
					SecurityToken: "bogus-token", Expiration: time.Now().Add(time.Hour)},
				OSS: info,
			}
			k.cache.Store(bogus)
			path, data := clipFile(t, "refused.mp4", tc.size)
			ev, err := k.Upload(t.Context(), Clip{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			checkCompleted(t, s, k, ev, "refused.mp4", data, mustStat(t, path).ModTime())
			if ev.Attempts != 2 {
				t.Errorf("%d attempts, want 2", ev.Attempts)
			}
			if st := s.worker.Stats(); st.Requests != 1 {
				t.Errorf("worker saw %d requests, want 1 (the renewal)", st.Requests)
			}
		})
	}
}
