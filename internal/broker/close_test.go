package broker

import (
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/system"
)

// Close returns while clients connect and disconnect. mochi v2.7.9's Close takes the
// client table's read lock twice (Clients.GetByListener calls Len); a client leaving in
// between queues a write lock, and the second read lock then waits for ever (upstream
// issue #488). The broker therefore closes the listeners with its own client closer before
// mochi's Close. (The deadlock's window is a few instructions wide: this test did not
// reproduce it in 150 rounds; it guards the shutdown path as a whole.)
func TestCloseWhileClientsChurn(t *testing.T) {
	t.Parallel()
	for round := range 30 {
		e := newEnv(t, nil)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 8 {
			id := "cam-" + string(rune('a'+i))
			opts, _ := e.options(clientOpts{clientID: id, username: id, password: e.devicePassword(id)})
			opts.SetConnectTimeout(time.Second)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					c := paho.NewClient(opts)
					if tok := c.Connect(); tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
						c.Disconnect(0)
					}
				}
			}()
		}
		time.Sleep(20 * time.Millisecond) // let the churn start: not an assertion
		closed := make(chan error, 1)
		go func() { closed <- e.b.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("round %d: Close: %v", round, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Close did not return", round)
		}
		close(stop)
		wg.Wait()
	}
}

// mochi's housekeeping loop may still run a tick while Close stops the hooks: the storage
// hook then skips the tick's writes instead of panicking on the closed database.
func TestStorageHookAfterStop(t *testing.T) {
	t.Parallel()
	h := &storageHook{Hook: new(pebble.Hook)}
	if err := h.Init(&pebble.Options{Path: t.TempDir(), Mode: pebble.Sync}); err != nil {
		t.Fatal(err)
	}
	h.OnSysInfoTick(&system.Info{Uptime: 1}) // written while open
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	h.OnSysInfoTick(&system.Info{Uptime: 2})
	h.OnRetainedExpired("a/b")
	if err := h.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}
