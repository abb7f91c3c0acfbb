package console

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

// e2eEnv set to "1" turns the skips of tests that need an installed program (PostgreSQL,
// Chromium) into failures; CI sets it.
const e2eEnv = "CLIPGATE_E2E"

// needProgram skips the test with msg, or fails it under CLIPGATE_E2E=1.
func needProgram(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(e2eEnv) == "1" {
		t.Fatalf("%s (required with %s=1)", msg, e2eEnv)
	}
	t.Skip(msg)
}

// pgServer is one PostgreSQL server for the package's tests, started by the first test
// that needs it and stopped by TestMain. Each test gets a database of its own.
type pgServer struct {
	dir, bin string
	port     int
	asUser   string // run the server as this user (when the tests run as root)
	admin    *sql.DB
}

var (
	pgOnce sync.Once
	pg     *pgServer
	pgErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pg != nil {
		pg.stop()
	}
	if benchDB != nil {
		_ = benchDB.Close()
	}
	if seedDir != "" {
		_ = os.RemoveAll(seedDir)
	}
	if benchDir != "" {
		_ = os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// pgBinDir finds initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/*/bin.
func pgBinDir() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			if real, err := filepath.EvalSymlinks(p); err == nil {
				return filepath.Dir(real)
			}
			return filepath.Dir(p)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	return ""
}

// postgresDSN returns the DSN of a new, empty database on the package's server, or skips.
func postgresDSN(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() { pg, pgErr = startPostgres() })
	if pgErr != nil {
		if pgErr == errNoPostgres {
			needProgram(t, "PostgreSQL (initdb, pg_ctl) is not installed: apt-get install postgresql")
		}
		t.Fatalf("starting PostgreSQL: %v", pgErr)
	}
	name := "t_" + randHex(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := pg.admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pg.admin.ExecContext(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	return pg.dsn(name)
}

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

var errNoPostgres = fmt.Errorf("postgres not installed")

// dsn returns the URL of database db over the server's Unix socket.
func (s *pgServer) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%d&sslmode=disable", db, url.QueryEscape(s.dir), s.port)
}

// command runs a PostgreSQL program, as s.asUser when set (PostgreSQL refuses root).
func (s *pgServer) command(name string, args ...string) *exec.Cmd {
	prog := filepath.Join(s.bin, name)
	if s.asUser == "" {
		return exec.Command(prog, args...)
	}
	return exec.Command("runuser", append([]string{"-u", s.asUser, "--", prog}, args...)...)
}

func startPostgres() (*pgServer, error) {
	bin := pgBinDir()
	if bin == "" {
		return nil, errNoPostgres
	}
	// A directory of our own (TestMain outlives any test's TempDir), removed by stop.
	dir, err := os.MkdirTemp("", "clipgate-console-pg-")
	if err != nil {
		return nil, err
	}
	s := &pgServer{dir: dir, bin: bin}
	ok := false
	defer func() {
		if !ok {
			s.stop()
		}
	}()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and there is no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		s.asUser = "postgres"
		if _, err := exec.LookPath("runuser"); err != nil {
			return nil, fmt.Errorf("running as root needs runuser to start PostgreSQL as postgres: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := s.command("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// No TCP at all: the server listens on a Unix socket in dir only, so that the tests
	// never need a free loopback port (a busy machine can run out of ephemeral ports to
	// TIME-WAIT sockets: "connect: cannot assign requested address"), and no other
	// process can take the server's address. The port only names the socket file.
	s.port = 5432
	opts := fmt.Sprintf("-c listen_addresses= -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off", s.port, dir)
	if out, err := s.command("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return nil, fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	if s.admin, err = sql.Open("pgx", s.dsn("postgres")); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.admin.PingContext(ctx); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *pgServer) stop() {
	if s.admin != nil {
		_ = s.admin.Close()
	}
	if _, err := os.Stat(filepath.Join(s.dir, "data", "postmaster.pid")); err == nil {
		if out, err := s.command("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "pg_ctl stop: %v\n%s\n", err, out)
		}
	}
	_ = os.RemoveAll(s.dir)
}

// TestPostgresOverUnixSocket checks that the tests reach PostgreSQL over its Unix socket
// and that the server has no TCP listener, so that they never depend on free loopback
// ports (inet_client_addr() is NULL for a Unix-socket connection).
func TestPostgresOverUnixSocket(t *testing.T) {
	t.Parallel()
	db := openTestDB(t, Postgres)
	ctx := context.Background()
	var client sql.NullString
	var listen string
	if err := db.r.QueryRowContext(ctx, "SELECT host(inet_client_addr()), current_setting('listen_addresses')").Scan(&client, &listen); err != nil {
		t.Fatal(err)
	}
	if client.Valid || listen != "" {
		t.Fatalf("connected from %q, server listening on %q: want a Unix socket and no TCP listener", client.String, listen)
	}
}
