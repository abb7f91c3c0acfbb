package broker

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// BenchmarkLoginUnderAttack (issue 12.6): a legitimate device's connect latency (ns/op,
// p50 and p99) and the password guesses the broker evaluates per minute, while 8 source
// addresses guess a service account's password (or, "spread", a new username each time) (bcrypt cost 10, as in production) as fast as the broker answers (8 sockets, as in the attack), side by
// side with no attack, with the abuse
// limits at their defaults ("limits") and off ("nolimits"). Each device connects from its
// own address (127.0.1.x), as cameras do. Run with -benchtime=60s so that guesses/min is
// counted over a whole minute:
//
//	go test -run '^$' -bench LoginUnderAttack -benchtime=60s ./internal/broker/
func BenchmarkLoginUnderAttack(b *testing.B) {
	dir := b.TempDir()
	s := "accounts:\n"
	for _, a := range testAccounts {
		h, err := bcrypt.GenerateFromPassword([]byte(a.Password), bcrypt.DefaultCost)
		if err != nil {
			b.Fatal(err)
		}
		s += fmt.Sprintf("  - username: %s\n    passwordHash: %q\n    role: %s\n", a.User, h, a.Role)
	}
	accounts := filepath.Join(dir, "accounts.yaml")
	if err := os.WriteFile(accounts, []byte(s), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, limits := range []bool{true, false} {
		for _, attack := range []string{"quiet", "attack", "spread"} {
			name := map[bool]string{true: "limits", false: "nolimits"}[limits] + "/" + attack
			b.Run(name, func(b *testing.B) {
				e := newEnv(b, func(c *Config) {
					c.ServiceAccountsFile = accounts
					c.DataDir = ""
					c.Limits = LimitsConfig{}
					if !limits {
						c.Limits = noLimits()
					}
				})
				benchLogins(b, e, attack)
			})
		}
	}
}

// benchLogins measures device connects under attack: "quiet" (none), "attack" (guesses at
// one username) or "spread" (each guess at another username, so that only the source
// addresses' throttles apply).
func benchLogins(b *testing.B, e *testEnv, attack string) {
	var guesses, refused atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if attack != "quiet" {
		for src := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				guess(e, "127.0.0."+strconv.Itoa(100+src), attack == "spread", stop, &guesses, &refused)
			}()
		}
		time.Sleep(100 * time.Millisecond) // the attack is under way
	}
	guesses.Store(0)
	lat := make([]time.Duration, 0, b.N)
	failed := 0
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		id := "cam-b" + strconv.Itoa(i)
		src := "127.0.1." + strconv.Itoa(1+i%250)
		t0 := time.Now()
		code, err := rawLogin(e.b.Addr(), src, connectPacket{clientID: id, username: id, password: e.devicePassword(id), clean: true, keepalive: 30})
		lat = append(lat, time.Since(t0))
		if err != nil || code != 0 {
			failed++
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	evaluated := guesses.Load()
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(failed), "device-refusals")
	b.ReportMetric(float64(evaluated)/elapsed.Minutes(), "guesses/min")
	b.ReportMetric(float64(refused.Load()), "guesses-refused")
}

// guess sends wrong service passwords from src until stop, counting the ones the broker
// evaluated (CONNACK 4) and the others: refused unevaluated (3, the socket closed) or
// unanswered within the broker's handshake timeout.
func guess(e *testEnv, src string, spread bool, stop <-chan struct{}, guesses, refused *atomic.Int64) {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		user := "worker"
		if spread {
			user = "user-" + src + "-" + strconv.Itoa(n)
		}
		code, err := rawLogin(e.b.Addr(), src, connectPacket{clientID: "x:" + src + ":" + strconv.Itoa(n), username: user,
			password: "guess-" + strconv.Itoa(n), clean: true, keepalive: 30})
		if err == nil && code == 4 {
			guesses.Add(1)
			continue
		}
		refused.Add(1)
		time.Sleep(10 * time.Millisecond) // an attacker does not spin on refusals either
	}
}

// rawLogin connects from src, sends CONNECT, reads the CONNACK code and closes.
func rawLogin(addr, src string, c connectPacket) (byte, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(c.encode()); err != nil {
		return 0, err
	}
	var ack [4]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return 0, err
	}
	if ack[3] == 0 {
		_, _ = conn.Write([]byte{0xe0, 0x00}) // DISCONNECT
	}
	return ack[3], nil
}
