package broker

import (
	"strconv"
	"testing"
)

// A device that connects again right after a clean disconnect (the CLI's commands run one
// after another, each a connection) keeps its new connection: mochi's cleanup of the old,
// clean-session connection (unsubscribe, then delete its client ID) must not run after the
// new connection has taken the ID, or the new one loses its subscriptions and its entry in
// the client table, and with them every message, such as its auth replies.
func TestReconnectAfterCleanDisconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	worker := e.service("worker", "1")
	reply := e.scheme.AuthReply("cam-1")
	const rounds = 300
	for i := range rounds {
		c := e.device("cam-1")
		c.subscribe(t, reply, 1)
		payload := strconv.Itoa(i)
		worker.publish(t, reply, 1, payload)
		c.waitMessage(t, reply, payload)
		c.Disconnect(0) // sends DISCONNECT; the next round connects at once
	}
}
