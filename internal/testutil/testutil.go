// Package testutil holds the helpers that the tests of several packages share: a service
// accounts file for a test broker, random text, a buffer that concurrent loggers may
// write to, and WaitFor, which polls for a state. Only tests import it.
package testutil

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"hash/crc64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Account is a broker service account: its username, password and role name
// ("tokenworker", "consumer", "admin").
type Account struct{ User, Password, Role string }

// hashes caches a bcrypt hash per password, so that the many stacks of a test binary hash
// each password once.
var hashes sync.Map // password -> hash

// AccountsFile writes the broker's service accounts file for accounts to dir/accounts.yaml
// (mode 0600) and returns its path. The hashes use bcrypt's minimum cost: tests connect
// often, and a production-cost hash under -race on a busy machine can outlast the
// broker's handshake timeout.
func AccountsFile(t testing.TB, dir string, accounts ...Account) string {
	t.Helper()
	var s strings.Builder
	s.WriteString("accounts:\n")
	for _, a := range accounts {
		h, ok := hashes.Load(a.Password)
		if !ok {
			b, err := bcrypt.GenerateFromPassword([]byte(a.Password), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			h, _ = hashes.LoadOrStore(a.Password, string(b))
		}
		fmt.Fprintf(&s, "  - username: %s\n    passwordHash: %q\n    role: %s\n", a.User, h, a.Role)
	}
	p := filepath.Join(dir, "accounts.yaml")
	if err := os.WriteFile(p, []byte(s.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// RandomText returns n random URL-safe base64 characters.
func RandomText(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// SyncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// LogSignal is a log writer whose Seen channel is closed at the first line containing a
// given string: a test waits for something a component logs.
type LogSignal struct {
	what []byte
	once sync.Once
	ch   chan struct{}
}

// NewLogSignal returns a LogSignal for lines containing what.
func NewLogSignal(what string) *LogSignal {
	return &LogSignal{what: []byte(what), ch: make(chan struct{})}
}

// Write closes Seen if p contains the string.
func (l *LogSignal) Write(p []byte) (int, error) {
	if bytes.Contains(p, l.what) {
		l.once.Do(func() { close(l.ch) })
	}
	return len(p), nil
}

// Seen is closed once a line with the string was written.
func (l *LogSignal) Seen() <-chan struct{} { return l.ch }

var crcTable = crc64.MakeTable(crc64.ECMA)

// CRC64 returns the CRC-64 (ECMA) of b in decimal, as OSS reports it
// (x-oss-hash-crc64ecma) and upload events carry it.
func CRC64(b []byte) string { return strconv.FormatUint(crc64.Checksum(b, crcTable), 10) }

// WaitTimeout is how long WaitFor waits before it fails the test: long enough for a
// machine busy with other test binaries (it bounds only how late a failure is reported).
const WaitTimeout = time.Minute

// WaitFor polls cond every 10 ms until it holds, and fails t if it does not within
// WaitTimeout. It is synchronisation on state another goroutine or process reaches and
// that the test has no event for, never a timing assertion.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
