package devicekit

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// errorReply is a refusal of the request in payload.
func errorReply(t *testing.T, payload []byte, code clipgate.Code, retryAfterMs int64) []byte {
	req, err := protocol.DecodeAuthRequest(payload)
	if err != nil {
		t.Errorf("the kit sent a malformed request: %v", err)
		return nil
	}
	b, err := json.Marshal(&protocol.AuthReply{V: 1, ID: req.ID, ServerTime: time.Now().UTC(),
		Error: &protocol.ReplyError{Code: code, Message: "scripted " + string(code), RetryAfterMs: retryAfterMs}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConcurrentCredentialsShareOneRequest(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-conc", nil)
	const n = 32
	var wg sync.WaitGroup
	got := make([]*Credentials, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { got[i], errs[i] = k.Credentials(t.Context()) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("caller %d got other credentials", i)
		}
	}
	c := got[0]
	if !strings.HasPrefix(c.AccessKeyID, "STS.") || c.SecurityToken == "" || c.OSS.Bucket != testBucket ||
		c.OSS.Prefix != testPrefix+"cam-conc/" || c.OSS.Endpoint != s.cloud.OSSEndpoint() {
		t.Errorf("credentials %+v", c)
	}
	if st := s.worker.Stats(); st.Requests != 1 {
		t.Errorf("the worker saw %d requests, want 1", st.Requests)
	}
	// Cached: no new request.
	if c2, err := k.Credentials(t.Context()); err != nil || c2 != c {
		t.Errorf("second call: %v, %v", c2, err)
	}
	if st := s.worker.Stats(); st.Requests != 1 {
		t.Errorf("the worker saw %d requests after a cached call, want 1", st.Requests)
	}
	// The provider hands the SDK the same credentials, through the error-returning method.
	pe, ok := k.CredentialsProvider().(oss.CredentialsProviderE)
	if !ok {
		t.Fatal("the provider does not implement oss.CredentialsProviderE")
	}
	oc, err := pe.GetCredentialsE()
	if err != nil || oc.GetAccessKeyID() != c.AccessKeyID || oc.GetAccessKeySecret() != c.AccessKeySecret || oc.GetSecurityToken() != c.SecurityToken {
		t.Errorf("provider: %v, %v", oc, err)
	}
}

func TestCredentialsRefreshedBeforeExpiry(t *testing.T) {
	t.Parallel()
	// 15-minute credentials, so that the clock moves less than the 15 minutes of skew OSS
	// and STS accept from the SDKs, which sign with the system clock.
	s := newStack(t, stackOptions{worker: func(c *tokenworker.Config) { c.STS.Duration = 15 * time.Minute }})
	k := s.kit("cam-refresh", nil) // RefreshMargin 5m
	c1, err := k.Credentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s.clock.Advance(c1.Expiration.Sub(s.clock.Now()) - DefaultRefreshMargin - time.Minute)
	if c, _ := k.Credentials(t.Context()); c != c1 {
		t.Fatal("credentials renewed more than RefreshMargin before expiry")
	}
	s.clock.Advance(2 * time.Minute) // now within the margin
	c2, err := k.Credentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c2 == c1 || c2.AccessKeyID == c1.AccessKeyID || !c2.Expiration.After(c1.Expiration) {
		t.Fatalf("not renewed: %+v then %+v", c1.Credentials, c2.Credentials)
	}
	if st := s.worker.Stats(); st.Requests != 2 || st.STSCalls != 2 {
		t.Errorf("worker stats %+v, want 2 requests and 2 STS calls", st)
	}
}

func TestClockSkewCorrected(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{2 * time.Hour, -2 * time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			t.Parallel()
			s := newStack(t, stackOptions{})
			k := s.kit("cam-skew", func(c *Config) {
				c.Now = func() time.Time { return time.Now().Add(skew) }
			})
			path, data := clipFile(t, "skew.mp4", 1000)
			ev, err := k.Upload(t.Context(), Clip{Path: path, RecordedAt: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			if ev.CRC64 != testutil.CRC64(data) {
				t.Errorf("event %+v", ev)
			}
			st := s.worker.Stats()
			if st.Errors[clipgate.CodeClockSkew] != 1 || st.OK != 1 || st.Requests != 2 {
				t.Errorf("worker stats %+v, want one clock_skew then one success", st)
			}
			if off := time.Duration(k.offset.Load()); (off + skew).Abs() > time.Minute {
				t.Errorf("learned offset %v, want about %v", off, -skew)
			}
			if d := k.now().Sub(time.Now()).Abs(); d > time.Minute {
				t.Errorf("corrected clock is %v off", d)
			}
			if d := ev.UploadedAt.Sub(time.Now()).Abs(); d > time.Minute {
				t.Errorf("uploadedAt %v is stamped with the skewed clock", ev.UploadedAt)
			}
			s.event()
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		code clipgate.Code
		cfg  func(*tokenworker.Config)
	}{
		// One STS call every 4 s: longer than the worker waits for the rate (3 s), so the
		// second device is told busy with the limiter's wait as retryAfterMs.
		{"busy", clipgate.CodeBusy, func(c *tokenworker.Config) { c.STSRate, c.STSBurst = rate.Limit(0.25), 1 }},
		// One request every 2 s per device: the same device asking again waits.
		{"rate_limited", clipgate.CodeRateLimited, func(c *tokenworker.Config) { c.DeviceRate, c.DeviceBurst = rate.Limit(0.5), 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, stackOptions{worker: func(c *tokenworker.Config) {
				tc.cfg(c)
				c.ReuseMargin = -1 // every request calls STS
			}})
			first := s.kit("cam-first", nil)
			if _, err := first.Credentials(t.Context()); err != nil {
				t.Fatal(err)
			}
			k := first
			if tc.code == clipgate.CodeBusy {
				k = s.kit("cam-second", nil)
			} else {
				k.invalidate(k.cache.Load())
			}
			type retry struct {
				err  error
				wait time.Duration
			}
			var mu sync.Mutex
			var retries []retry
			k.onRetry = func(err error, wait time.Duration) {
				mu.Lock()
				retries = append(retries, retry{err, wait})
				mu.Unlock()
			}
			if _, err := k.Credentials(t.Context()); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(retries) == 0 {
				t.Fatalf("no retry; worker stats %+v", s.worker.Stats())
			}
			for _, r := range retries {
				var ae *clipgate.AuthError
				if !errors.As(r.err, &ae) || ae.Code != tc.code || ae.RetryAfter <= 0 || ae.Terminal() {
					t.Fatalf("retry after %v, want a %s refusal with retryAfterMs", r.err, tc.code)
				}
				if r.wait < ae.RetryAfter {
					t.Errorf("waited %v, less than retryAfterMs %v", r.wait, ae.RetryAfter)
				}
			}
			if st := s.worker.Stats(); st.Errors[tc.code] != uint64(len(retries)) {
				t.Errorf("worker stats %+v, want %d %s", st, len(retries), tc.code)
			}
		})
	}
}

func TestTerminalErrors(t *testing.T) {
	t.Parallel()
	scripted := func(code clipgate.Code) stackOptions {
		return stackOptions{answer: func(w *tokenworker.Worker, topic string, payload []byte) [][]byte {
			return [][]byte{errorReply(t, payload, code, 1000)}
		}}
	}
	for _, tc := range []struct {
		code clipgate.Code
		opts func(t *testing.T) stackOptions
	}{
		{clipgate.CodeRevoked, func(t *testing.T) stackOptions {
			return stackOptions{worker: func(c *tokenworker.Config) { c.Revocations = identity.NewRevocations("cam-term") }}
		}},
		{clipgate.CodeUnauthenticated, func(t *testing.T) stackOptions {
			// The worker derives device keys from another fleet key than the broker.
			return stackOptions{worker: func(c *tokenworker.Config) {
				other, err := identity.NewFleetKeyring()
				if err != nil {
					t.Fatal(err)
				}
				c.FleetKeys = other
			}}
		}},
		{clipgate.CodeDenied, func(*testing.T) stackOptions { return scripted(clipgate.CodeDenied) }},
		{clipgate.CodeInvalid, func(*testing.T) stackOptions { return scripted(clipgate.CodeInvalid) }},
	} {
		t.Run(string(tc.code), func(t *testing.T) {
			t.Parallel()
			s := newStack(t, tc.opts(t))
			k := s.kit("cam-term", nil)
			var waits atomic.Int32
			k.onRetry = func(error, time.Duration) { waits.Add(1) }
			_, err := k.Credentials(t.Context())
			var ae *clipgate.AuthError
			if !errors.As(err, &ae) || ae.Code != tc.code || !ae.Terminal() {
				t.Fatalf("Credentials: %v, want a terminal *clipgate.AuthError %s", err, tc.code)
			}
			if waits.Load() != 0 {
				t.Errorf("a terminal %s was retried", tc.code)
			}
			// Upload fails the same way, without an event (no key is known).
			path, _ := clipFile(t, "t.mp4", 10)
			if ev, err := k.Upload(t.Context(), Clip{Path: path}); !errors.As(err, &ae) || ev != nil {
				t.Errorf("Upload: %v, %v", ev, err)
			}
			if tc.code == clipgate.CodeRevoked || tc.code == clipgate.CodeUnauthenticated {
				if st := s.worker.Stats(); st.Requests != 2 || st.Errors[tc.code] != 2 {
					t.Errorf("worker stats %+v, want one request per call", st)
				}
			}
			s.noEvent()
		})
	}
}

func TestReplayAndUnknownRepliesHandled(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var nonces []string
	s := newStack(t, stackOptions{answer: func(w *tokenworker.Worker, topic string, payload []byte) [][]byte {
		req, err := protocol.DecodeAuthRequest(payload)
		if err != nil {
			t.Errorf("malformed request: %v", err)
			return nil
		}
		mu.Lock()
		nonces = append(nonces, req.Nonce)
		n := len(nonces)
		mu.Unlock()
		if n == 1 {
			return [][]byte{errorReply(t, payload, clipgate.CodeReplay, 0)}
		}
		// Noise first: garbage, a reply to another request, a forged sealed reply for
		// this one. Only the worker's real reply may be taken.
		other := errorReply(t, payload, clipgate.CodeRevoked, 0)
		other = []byte(strings.Replace(string(other), req.ID, "someone-else", 1))
		replies := [][]byte{[]byte("not json"), []byte(`{"v":1}`), other}
		for _, r := range handle(w, topic, payload) {
			replies = append(replies, r)
		}
		return replies
	}})
	k := s.kit("cam-replay", nil)
	c, err := k.Credentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.AccessKeyID, "STS.") {
		t.Errorf("credentials %+v", c)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(nonces) != 2 || nonces[0] == nonces[1] {
		t.Errorf("nonces %v: want two requests with fresh nonces", nonces)
	}
}

func TestSealedAndPlainReplies(t *testing.T) {
	t.Parallel()
	t.Run("plain", func(t *testing.T) {
		t.Parallel()
		no := false
		s := newStack(t, stackOptions{worker: func(c *tokenworker.Config) { c.Seal = &no }})
		k := s.kit("cam-plain", nil)
		path, _ := clipFile(t, "p.mp4", 100)
		if _, err := k.Upload(t.Context(), Clip{Path: path}); err != nil {
			t.Fatal(err)
		}
		s.event()
	})
	t.Run("tampered", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, stackOptions{answer: func(w *tokenworker.Worker, topic string, payload []byte) [][]byte {
			var out [][]byte
			for _, r := range handle(w, topic, payload) {
				var rep protocol.AuthReply
				if err := json.Unmarshal(r, &rep); err != nil || rep.Sealed == "" {
					t.Errorf("the worker did not seal: %s", r)
					return nil
				}
				flip := byte('A')
				if rep.Sealed[5] == 'A' {
					flip = 'B'
				}
				rep.Sealed = rep.Sealed[:5] + string(flip) + rep.Sealed[6:]
				b, _ := json.Marshal(&rep)
				out = append(out, b)
			}
			return out
		}})
		k := s.kit("cam-tamper", nil)
		_, err := k.Credentials(t.Context())
		if err == nil || !strings.Contains(err.Error(), "could not be opened") {
			t.Fatalf("Credentials: %v, want a sealing error", err)
		}
		if k.cache.Load() != nil {
			t.Error("tampered credentials were cached")
		}
	})
}

func TestNoWorkerTimesOutAndCloseStopsTheFetch(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{answer: func(*tokenworker.Worker, string, []byte) [][]byte { return nil }})
	k := s.kit("cam-alone", func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var retried atomic.Int32
	k.onRetry = func(err error, _ time.Duration) {
		if strings.Contains(err.Error(), "no auth reply") {
			retried.Add(1)
		}
	}
	if _, err := k.Credentials(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Credentials: %v, want the caller's deadline", err)
	}
	if retried.Load() == 0 {
		t.Error("the request was not retried after its timeout")
	}
	// The shared fetch is still retrying; Close ends it.
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Credentials(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestConnectFailsWithWrongKey(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	cfg := s.kitConfig("cam-wrong")
	cfg.DeviceKey = zeroKey("cam-wrong")
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	err = k.Connect(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last attempt") {
		t.Fatalf("Connect: %v, want a timeout naming the last failure", err)
	}
	// Connect may be tried again.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel2()
	if err := k.Connect(ctx2); errors.Is(err, ErrClosed) || err == nil || strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Connect: %v", err)
	}
}

// TestConnectStopsWhenRefused: with StopWhenRefused, a refused login ends Connect at once
// with ErrRefused (the context would allow an hour); without it, TestConnectFailsWithWrongKey.
func TestConnectStopsWhenRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	cfg := s.kitConfig("cam-refused")
	cfg.DeviceKey = zeroKey("cam-refused")
	cfg.StopWhenRefused = true
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	err = k.Connect(ctx)
	if !errors.Is(err, ErrRefused) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect: %v, want ErrRefused", err)
	}
}
