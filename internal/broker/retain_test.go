package broker

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

// Retained publishes and wildcard subscriptions at the same time: mochi v2.7.9 writes a
// topic's retained path under its index lock but reads it without the lock while it scans
// the retained messages for a new wildcard subscription (TopicsIndex.scanMessages), a data
// race the race detector reported in the console's tests (devices publish their retained
// status while the console subscribes to every device's status). The broker serialises
// the two (retainGate); this test fails under -race without it.
func TestRetainedPublishDuringWildcardSubscribe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const devices, rounds = 4, 50
	var wg sync.WaitGroup
	for i := range devices {
		id := "cam-r" + strconv.Itoa(i)
		c := e.device(id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				tok := c.Publish(e.scheme.Status(id), 1, true, `{"round":`+strconv.Itoa(r)+`}`)
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Errorf("%s: retained publish %d: %v", id, r, tok.Error())
					return
				}
			}
		}()
	}
	watcher := e.service("admin", "watch")
	filter := e.scheme.Root() + "/devices/+/status"
	for range rounds {
		watcher.subscribe(t, filter, 1)
		if tok := watcher.Unsubscribe(filter); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("unsubscribe: %v", tok.Error())
		}
	}
	wg.Wait()
	// Each device's last status is retained, and a new subscriber gets all of them.
	late := e.service("admin", "late")
	late.subscribe(t, filter, 1)
	late.waitCount(t, devices)
}
