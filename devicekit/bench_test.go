package devicekit

import (
	"context"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
)

// cachedKit is a kit (never connected) with fresh credentials in its cache.
func cachedKit(tb testing.TB) *Kit {
	cfg := Config{BrokerURL: "tcp://127.0.0.1:1", DeviceID: "cam-bench", DeviceKey: zeroKey("cam-bench"), StateDir: tb.TempDir()}
	k, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { k.Close() })
	k.cache.Store(&Credentials{Credentials: clipgate.Credentials{AccessKeyID: "STS.x", AccessKeySecret: "s",
		SecurityToken: "t", Expiration: time.Now().Add(time.Hour)}})
	return k
}

// The SDK asks the provider before every OSS request: the cached path must not allocate.
func TestCachedCredentialsDoNotAllocate(t *testing.T) {
	k := cachedKit(t)
	p := provider{k: k, ctx: context.Background()}
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := p.GetCredentialsE(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("GetCredentialsE allocates %v times per call", n)
	}
}

func BenchmarkCachedCredentials(b *testing.B) {
	k := cachedKit(b)
	p := provider{k: k, ctx: context.Background()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.GetCredentialsE(); err != nil {
			b.Fatal(err)
		}
	}
}
