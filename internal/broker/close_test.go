package broker

import (
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Close returns while clients connect and disconnect. mochi v2.7.9's Close takes the
// client table's read lock twice (Clients.GetByListener calls Len); a client leaving in
// between queues a write lock, and the second read lock then waits for ever (upstream
// issue #488). The broker therefore ends every connection itself before mochi's Close.
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
