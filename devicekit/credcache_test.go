package devicekit

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// syncBuffer is a log sink tests read while the kit writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// restartKit closes k and starts a new kit on the same state directory, logging to logs
// when it is not nil.
func (s *stack) restartKit(k *Kit, logs *syncBuffer) *Kit {
	s.t.Helper()
	if err := k.Close(); err != nil {
		s.t.Fatal(err)
	}
	return s.kit(k.cfg.DeviceID, func(c *Config) {
		if logs != nil {
			c.Logger = zerolog.New(logs).Level(zerolog.InfoLevel)
		}
	})
}

// A kit that restarts uses the credentials it kept on disk: no request, no STS call. The
// file is the sealed reply (mode 0600), which holds no secret in clear.
func TestCredentialsKeptAcrossRestart(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-keep", nil)
	c1, err := k.Credentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	path := k.credPath("")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no credentials file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	for _, secret := range []string{c1.AccessKeySecret, c1.SecurityToken} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatal("the credentials file holds a secret in clear")
		}
	}

	k2 := s.restartKit(k, nil)
	c2, err := k2.Credentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c2.AccessKeyID != c1.AccessKeyID || c2.AccessKeySecret != c1.AccessKeySecret || c2.SecurityToken != c1.SecurityToken ||
		!c2.Expiration.Equal(c1.Expiration) || c2.OSS != c1.OSS {
		t.Fatalf("after the restart got %+v, want the kept %+v", c2, c1)
	}
	if st := s.worker.Stats(); st.Requests != 1 || st.STSCalls != 1 {
		t.Errorf("worker stats %+v, want the first run's 1 request and 1 STS call only", st)
	}
	if n := k2.Stats().CredentialRefreshes; n != 0 {
		t.Errorf("CredentialRefreshes %d after a restart with kept credentials, want 0", n)
	}
	// And they work: an upload with them.
	p, data := clipFile(t, "kept.mp4", 1000)
	ev, err := k2.Upload(t.Context(), Clip{Path: p})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.object(ev.Key); !bytes.Equal(got, data) {
		t.Fatal("the object differs from the clip")
	}
	if st := s.worker.Stats(); st.Requests != 1 {
		t.Errorf("worker stats %+v after the upload, want still 1 request", st)
	}
}

// Kept credentials within RefreshMargin of their expiry (by the kit's clock, here moved
// forward) are not used: the kit asks, and keeps the new ones.
func TestKeptCredentialsExpired(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{worker: func(c *tokenworker.Config) { c.STS.Duration = 15 * time.Minute }})
	k := s.kit("cam-expired", nil)
	c1, err := k.Credentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// One minute short of the margin: still used.
	s.clock.Advance(c1.Expiration.Sub(s.clock.Now()) - DefaultRefreshMargin - time.Minute)
	k = s.restartKit(k, nil)
	if c, err := k.Credentials(t.Context()); err != nil || c.AccessKeyID != c1.AccessKeyID {
		t.Fatalf("credentials with 6 minutes left were not reused: %v", err)
	}
	// Within the margin: asked anew.
	s.clock.Advance(2 * time.Minute)
	logs := new(syncBuffer)
	k = s.restartKit(k, logs)
	c2, err := k.Credentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c2.AccessKeyID == c1.AccessKeyID {
		t.Fatal("credentials within RefreshMargin of their expiry were reused after a restart")
	}
	if !strings.Contains(logs.String(), "cached credentials expire soon") {
		t.Errorf("no log line for the expired file; logs:\n%s", logs)
	}
	if st := s.worker.Stats(); st.STSCalls != 2 {
		t.Errorf("worker stats %+v, want 2 STS calls", st)
	}
	// The new ones replaced the file.
	k = s.restartKit(k, nil)
	if c3, err := k.Credentials(t.Context()); err != nil || c3.AccessKeyID != c2.AccessKeyID {
		t.Fatalf("the renewed credentials were not kept: %v", err)
	}
}

// Whatever is found at the credentials file's place that is not this device's sealed
// credentials is logged and ignored: the kit asks the token worker, and its new
// credentials replace the file.
func TestKeptCredentialsGarbageIgnored(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	// A valid file of another device, to copy.
	other := s.kit("cam-other", nil)
	if _, err := other.Credentials(t.Context()); err != nil {
		t.Fatal(err)
	}
	otherFile, err := os.ReadFile(other.credPath(""))
	if err != nil {
		t.Fatal(err)
	}
	var rec credFile
	if err := json.Unmarshal(otherFile, &rec); err != nil {
		t.Fatal(err)
	}
	edit := func(f func(r *credFile)) []byte {
		r := rec
		f(&r)
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const dev = "cam-garbage"
	cases := []struct {
		name, want string
		data       []byte // nil: a directory at the file's place
	}{
		{"empty", "not a credentials file", []byte{}},
		{"text", "not a credentials file", []byte("hello\n")},
		{"truncated", "not a credentials file", otherFile[:len(otherFile)/2]},
		{"huge", "larger than", bytes.Repeat([]byte(" "), maxCredFileSize+1)},
		{"directory", "is a directory", nil},
		{"version", "format version", edit(func(r *credFile) { r.V = 99 })},
		{"other device", "not of this device", otherFile},
		{"other device's seal", "do not open with this device's key", edit(func(r *credFile) { r.Device = dev })},
		{"mode", "of mode", edit(func(r *credFile) { r.Device, r.Mode = dev, "r" })},
		{"nonce", "nonce", edit(func(r *credFile) { r.Device, r.Nonce = dev, "AAAA" })},
		{"reply", "the kept reply", edit(func(r *credFile) { r.Device, r.Reply = dev, json.RawMessage(`{"v":1}`) })},
		{"failed reply", "no sealed credentials", edit(func(r *credFile) {
			r.Device, r.Reply = dev, json.RawMessage(`{"v":1,"id":"x","ok":false,"serverTime":"2026-01-01T00:00:00Z","error":{"code":"busy"}}`)
		})},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			device := dev
			if tc.name != "other device's seal" && tc.name != "mode" && tc.name != "nonce" && tc.name != "reply" && tc.name != "failed reply" {
				device = dev + "-" + string(rune('a'+i))
			}
			cfg := s.kitConfig(device)
			if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(cfg.StateDir, "credentials-w.json")
			if tc.data == nil {
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if device == dev {
				t.Cleanup(func() { os.RemoveAll(cfg.StateDir) }) // the next case of dev starts clean
			}
			logs := new(syncBuffer)
			k := s.kit(device, func(c *Config) {
				c.StateDir = cfg.StateDir
				c.Logger = zerolog.New(logs).Level(zerolog.InfoLevel)
			})
			c, err := k.Credentials(t.Context())
			if err != nil {
				t.Fatalf("Credentials with a bad file: %v", err)
			}
			if k.Stats().CredentialRefreshes != 1 {
				t.Error("the kit did not ask the token worker")
			}
			if l := logs.String(); !strings.Contains(l, "cached credentials ignored") || !strings.Contains(l, tc.want) {
				t.Errorf("logs do not say %q:\n%s", tc.want, l)
			}
			if tc.data == nil {
				return // the directory stays: the kit cannot keep its credentials
			}
			k2 := s.restartKit(k, nil)
			if c2, err := k2.Credentials(t.Context()); err != nil || c2.AccessKeyID != c.AccessKeyID || k2.Stats().CredentialRefreshes != 0 {
				t.Errorf("the new credentials did not replace the bad file (err %v)", err)
			}
			k2.Close()
		})
	}
}

// Credentials OSS refused (invalidate) leave the disk too; plain credentials (a worker
// that does not seal) are never written.
func TestKeptCredentialsForgottenAndPlainNotKept(t *testing.T) {
	t.Parallel()
	t.Run("invalidated", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, stackOptions{})
		k := s.kit("cam-forget", nil)
		c, err := k.Credentials(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		k.invalidate(c)
		if _, err := os.Stat(k.credPath("")); !os.IsNotExist(err) {
			t.Fatalf("the invalidated credentials are still on disk: %v", err)
		}
		c2, err := k.Credentials(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		k.invalidate(c) // stale: the cache holds c2, whose file stays
		if _, err := os.Stat(k.credPath("")); err != nil {
			t.Fatalf("invalidating old credentials removed the new ones' file: %v", err)
		}
		k = s.restartKit(k, nil)
		if c3, err := k.Credentials(t.Context()); err != nil || c3.AccessKeyID != c2.AccessKeyID {
			t.Fatalf("after the restart: %v", err)
		}
	})
	t.Run("plain", func(t *testing.T) {
		t.Parallel()
		no := false
		s := newStack(t, stackOptions{worker: func(c *tokenworker.Config) { c.Seal = &no }})
		k := s.kit("cam-plainkeep", nil)
		if _, err := k.Credentials(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(k.credPath("")); !os.IsNotExist(err) {
			t.Fatalf("plain credentials were written to disk: %v", err)
		}
	})
	t.Run("modes", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, stackOptions{})
		k := s.kit("cam-modes", nil)
		cw, err := k.Credentials(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		cr, err := k.credentials(t.Context(), clipgate.ModeRead)
		if err != nil {
			t.Fatal(err)
		}
		k = s.restartKit(k, nil)
		cr2, err := k.credentials(t.Context(), clipgate.ModeRead)
		if err != nil {
			t.Fatal(err)
		}
		cw2, err := k.Credentials(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if cr2.AccessKeyID != cr.AccessKeyID || cw2.AccessKeyID != cw.AccessKeyID || cr.AccessKeyID == cw.AccessKeyID {
			t.Fatal("each mode did not get its own kept credentials back")
		}
		if k.Stats().CredentialRefreshes != 0 {
			t.Error("a mode asked again after the restart")
		}
	})
}
