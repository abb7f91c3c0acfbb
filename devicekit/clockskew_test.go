package devicekit

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// skewedCloud is a second local cloud whose clock is skew away from the system clock,
// serving OSS for a stack whose STS stays on the system clock. It shares the first cloud's
// token key, so the temporary credentials STS issues are valid here.
//
// The split is the test's only artifice: the token worker's STS SDK signs with the system
// clock too, so STS must keep it. Everything the device deals with (OSS, and the token
// worker's clock and serverTime) is skew away from the device's clock, which is the system
// clock the OSS SDK would sign with.
type skewedCloud struct {
	*localcloud.Server
	skew atomic.Int64 // from the system clock
}

func (sc *skewedCloud) now() time.Time { return time.Now().Add(time.Duration(sc.skew.Load())) }

// skewedStack starts a stack whose OSS and token worker run skew away from the system
// clock; the kit keeps the system clock.
func skewedStack(t *testing.T, skew time.Duration) (*stack, *skewedCloud) {
	t.Helper()
	sc := &skewedCloud{}
	sc.skew.Store(int64(skew))
	var cloudCfg localcloud.Config
	s := newStack(t, stackOptions{
		cloud: func(c *localcloud.Config) {
			c.Now = nil // STS: the system clock, like the SDK that calls it
			for i := range c.Roles {
				c.Roles[i].MaxSessionDuration = localcloud.MaxMaxSessionDuration
			}
			cloudCfg = *c
		},
		worker: func(c *tokenworker.Config) {
			cfg := cloudCfg
			cfg.DataDir = filepath.Join(filepath.Dir(cloudCfg.DataDir), "skewed-oss")
			cfg.OSSAddr, cfg.STSAddr = "", ""
			cfg.Now = sc.now
			copyFile(t, filepath.Join(cloudCfg.DataDir, "sts-token.key"), filepath.Join(cfg.DataDir, "sts-token.key"))
			srv, err := localcloud.Start(cfg)
			if err != nil {
				t.Fatalf("skewed localcloud: %v", err)
			}
			t.Cleanup(func() { srv.Close() })
			sc.Server = srv
			c.OSS.Endpoint = srv.OSSEndpoint()
			c.Now = sc.now
			// Credentials must outlive the 2 hours between the clocks.
			c.STS.Duration = 4 * time.Hour
		},
	})
	return s, sc
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A camera whose clock is 2 hours off the cloud's uploads small and multipart clips: the kit
// learns the offset from the worker's serverTime and signs every OSS request, each part of a
// multipart upload included, with the corrected time. Signed with the system clock (as the
// SDK does by itself), OSS refuses them with RequestTimeTooSkewed.
func TestUploadWithDeviceClockHoursOff(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{2 * time.Hour, -2 * time.Hour} {
		for _, size := range []int{20 << 10, 5*MinPartSize + 77} {
			t.Run(skew.String()+"/"+sizeName(size), func(t *testing.T) {
				t.Parallel()
				s, sc := skewedStack(t, skew)
				k := s.kit("cam-clock", func(c *Config) {
					c.Now = time.Now // the device's clock is the system clock
					c.PartSize = MinPartSize
					c.MultipartThreshold = 2 * MinPartSize
				})
				parts := 0
				k.onProgress = func(done, total int64) { parts++ }
				path, data := clipFile(t, "clock.mp4", size)
				ev, err := k.Upload(t.Context(), Clip{Path: path})
				if err != nil {
					t.Fatal(err)
				}
				if ev.Status != clipgate.StatusCompleted || ev.Size != int64(size) || ev.CRC64 != testutil.CRC64(data) || ev.Attempts != 1 {
					t.Fatalf("event %+v", ev)
				}
				if got := sc.get(t, s, ev.Key); !bytes.Equal(got, data) {
					t.Fatalf("stored object: %d bytes, differing from the clip's %d", len(got), len(data))
				}
				if got := s.event(); got.ID != ev.ID || got.Status != clipgate.StatusCompleted {
					t.Fatalf("consumer got %+v, want %+v", got, ev)
				}
				if wantParts := map[bool]int{true: 6, false: 0}[size > MinPartSize]; parts != wantParts {
					t.Errorf("%d parts, want %d", parts, wantParts)
				}
				if off := time.Duration(k.offset.Load()); (off - skew).Abs() > time.Minute {
					t.Errorf("learned offset %v, want about %v", off, skew)
				}
				if st := s.worker.Stats(); st.Errors[clipgate.CodeClockSkew] != 1 || st.OK != 1 {
					t.Errorf("worker stats %+v, want one clock_skew, then credentials", st)
				}
			})
		}
	}
}

func sizeName(n int) string {
	if n > MinPartSize {
		return "multipart"
	}
	return "small"
}

// get reads an object back with the admin key, signing with the skewed cloud's clock.
func (sc *skewedCloud) get(t *testing.T, s *stack, key string) []byte {
	t.Helper()
	c, err := oss.New(sc.OSSEndpoint(), testAdminAK, s.admin, oss.AuthVersion(oss.AuthV4), oss.Region(sc.Region()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Bucket(testBucket)
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.GetObject(key, oss.SetHeader(oss.HTTPHeaderDate, sc.now().UTC().Format(http.TimeFormat)))
	if err != nil {
		t.Fatalf("GetObject %s: %v", key, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// The cloud's clock moves 20 minutes during a multipart upload: the kit's offset is stale,
// OSS refuses the next parts with RequestTimeTooSkewed, and the kit renews its credentials
// (the worker's clock_skew reply brings the new server time) and resumes from the
// checkpoint.
func TestMultipartSurvivesClockJump(t *testing.T) {
	t.Parallel()
	s, sc := skewedStack(t, 2*time.Hour)
	k := s.kit("cam-jump", func(c *Config) {
		c.Now = time.Now
		c.PartSize = MinPartSize
		c.MultipartThreshold = 2 * MinPartSize
	})
	var once sync.Once
	parts := 0
	k.onProgress = func(done, total int64) {
		parts++
		once.Do(func() { sc.skew.Add(int64(20 * time.Minute)) })
	}
	path, data := clipFile(t, "jump.mp4", 8*MinPartSize)
	ev, err := k.Upload(t.Context(), Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Status != clipgate.StatusCompleted || ev.CRC64 != testutil.CRC64(data) || ev.Attempts != 2 {
		t.Fatalf("event %+v, want completed at the second attempt", ev)
	}
	if got := sc.get(t, s, ev.Key); !bytes.Equal(got, data) {
		t.Fatal("stored object differs from the clip")
	}
	if parts > 8+uploadRoutines {
		t.Errorf("%d parts sent for 8: not resumed from the checkpoint", parts)
	}
	if off := time.Duration(k.offset.Load()); (off - 2*time.Hour - 20*time.Minute).Abs() > time.Minute {
		t.Errorf("offset %v after the jump, want about 2h20m", off)
	}
	if st := s.worker.Stats(); st.Errors[clipgate.CodeClockSkew] != 2 || st.OK != 2 {
		t.Errorf("worker stats %+v, want two clock_skew replies and two credentials", st)
	}
	s.event()
}
