//go:build unix

package clipgatetest

import (
	"fmt"
	"syscall"
	"testing"
)

// HoldAddr returns a loopback address, "127.0.0.1:PORT", where nothing listens and that
// no other socket takes until the test ends: a socket is bound to it, with SO_REUSEADDR,
// without listening. Connections to it are refused, and a listener with SO_REUSEADDR
// (every Go listener) may still bind it, e.g. a Stack given it as MQTTAddr. Tests use it
// to stop a stack and start it again on the same addresses, as a broker restart looks
// to its clients, with no other program taking a port in between.
func HoldAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("clipgatetest: HoldAddr: %v", err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		t.Fatalf("clipgatetest: HoldAddr: %v", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("clipgatetest: HoldAddr: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("clipgatetest: HoldAddr: %v", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
