//go:build unix

package clipgatetest

import (
	"net"
	"testing"
)

// TestHoldAddr: connections to a held address are refused; a Go listener may bind it,
// and after that listener closes, connections are refused again.
func TestHoldAddr(t *testing.T) {
	t.Parallel()
	addr := HoldAddr(t)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("a held address accepted a connection")
	}
	for range 2 { // a listener, then another after it (a restart)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listening on a held address: %v", err)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dialing the listener: %v", err)
		}
		c.Close()
		l.Close()
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Fatal("a held address accepted a connection after its listener closed")
		}
	}
}
