package identity

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/clipgate/clipgate/topics"
	"golang.org/x/crypto/bcrypt"
)

func minHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := hashPassword(pw, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestServiceAccounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "accounts.yaml")
	writeFile(t, path, `# clipgate service accounts
accounts:
  - username: worker-1
    passwordHash: "`+minHash(t, "w-secret")+`"
    role: tokenworker
  - username: indexer
    passwordHash: '`+minHash(t, "i-secret")+`'
    role: consumer
  - {username: ops@example.com, passwordHash: "`+minHash(t, "o-secret")+`", role: admin}
`)
	s, err := LoadServiceAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 3 {
		t.Fatalf("Len = %d", s.Len())
	}
	cases := []struct {
		user, pw string
		role     topics.Role
		ok       bool
	}{
		{"worker-1", "w-secret", topics.RoleTokenWorker, true},
		{"indexer", "i-secret", topics.RoleConsumer, true},
		{"ops@example.com", "o-secret", topics.RoleAdmin, true},
		{"worker-1", "i-secret", 0, false},
		{"worker-1", "w-secret ", 0, false},
		{"worker-1", "", 0, false},
		{"Worker-1", "w-secret", 0, false},
		{"nobody", "w-secret", 0, false},
		{"", "", 0, false},
		{"worker-1", strings.Repeat("x", 100), 0, false},
	}
	for _, c := range cases {
		role, ok := s.Authenticate(c.user, c.pw)
		if role != c.role || ok != c.ok {
			t.Errorf("Authenticate(%q, %q) = %v, %v; want %v, %v", c.user, c.pw, role, ok, c.role, c.ok)
		}
	}
	// Unknown users are compared against a dummy hash as costly as the real ones.
	if cost, err := bcrypt.Cost(s.dummy); err != nil || cost != bcrypt.MinCost {
		t.Fatalf("dummy hash cost %d, %v; want %d", cost, err, bcrypt.MinCost)
	}
	var nilS *ServiceAccounts
	if _, ok := nilS.Authenticate("worker-1", "w-secret"); ok || nilS.Len() != 0 {
		t.Fatal("nil accounts authenticate")
	}
}

// bcrypt ignores bytes past 72; a password that only shares its first 72 bytes must fail.
func TestAuthenticateLongPassword(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("p", 72)
	s, err := parseServiceAccounts([]byte("accounts:\n- {username: u, passwordHash: \"" + minHash(t, long) + "\", role: admin}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Authenticate("u", long); !ok {
		t.Fatal("72-byte password refused")
	}
	if _, ok := s.Authenticate("u", long+"extra"); ok {
		t.Fatal("password longer than 72 bytes accepted")
	}
}

func TestLoadServiceAccountsErrors(t *testing.T) {
	t.Parallel()
	h := minHash(t, "pw")
	entry := func(user, hash, role string) string {
		return "  - {username: " + user + ", passwordHash: \"" + hash + "\", role: " + role + "}\n"
	}
	cases := []struct{ name, text, want string }{
		{"empty file", "", "empty file"},
		{"only comments", "# nothing\n", "empty file"},
		{"no accounts key", "other: 1\n", "field other not found"},
		{"empty document", "{}\n", `no "accounts:" list`},
		{"accounts null", "accounts:\n", `no "accounts:" list`},
		{"accounts not a list", "accounts: yes\n", "cannot unmarshal"},
		{"unknown field", "accounts:\n  - {username: a, passwordHash: \"" + h + "\", role: admin, extra: 1}\n", "field extra not found"},
		{"typo field", "accounts:\n  - {username: a, password_hash: \"" + h + "\", role: admin}\n", "field password_hash not found"},
		{"empty username", "accounts:\n" + entry(`""`, h, "admin"), "account 1: empty username"},
		{"username with space", "accounts:\n" + entry(`"a b"`, h, "admin"), "contains ' '"},
		{"username with newline", "accounts:\n" + entry(`"a\nb"`, h, "admin"), "contains"},
		{"long username", "accounts:\n" + entry(strings.Repeat("u", 129), h, "admin"), "longer than 128"},
		{"empty hash", "accounts:\n" + entry("a", "", "admin"), "empty passwordHash"},
		{"plain password", "accounts:\n" + entry("a", "hunter2", "admin"), "not a bcrypt hash"},
		{"truncated hash", "accounts:\n" + entry("a", h[:30], "admin"), "not a bcrypt hash"},
		{"sha256 hash", "accounts:\n" + entry("a", strings.Repeat("ab", 32), "admin"), "not a bcrypt hash"},
		{"costly hash", "accounts:\n" + entry("a", "$2a$20$"+h[7:], "admin"), "cost 20"},
		{"empty role", "accounts:\n" + entry("a", h, `""`), "empty role"},
		{"device role", "accounts:\n" + entry("a", h, "device"), `unknown role "device"`},
		{"capitalised role", "accounts:\n" + entry("a", h, "Admin"), `unknown role "Admin"`},
		{"duplicate", "accounts:\n" + entry("a", h, "admin") + entry("b", h, "consumer") + entry("a", h, "consumer"), `account 3 ("a"): duplicate username`},
		{"null entry", "accounts:\n  - null\n", "account 1: empty entry"},
		{"two documents", "accounts: []\n---\naccounts: []\n", "more than one YAML document"},
		{"not yaml", "accounts: [\n", "yaml"},
		{"binary", "\x00\x01\x02", "yaml"},
	}
	dir := t.TempDir()
	for i, c := range cases {
		path := filepath.Join(dir, "accounts-"+strings.ReplaceAll(c.name, " ", "_"))
		writeFile(t, path, c.text)
		_, err := LoadServiceAccounts(path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%d %s: got %v, want an error containing %q", i, c.name, err, c.want)
		}
	}
	// An explicitly empty list is valid: no service may connect.
	path := filepath.Join(dir, "none.yaml")
	writeFile(t, path, "accounts: []\n")
	s, err := LoadServiceAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Authenticate("a", "pw"); ok {
		t.Fatal("empty accounts authenticate")
	}
}

func TestLoadServiceAccountsPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits on Windows")
	}
	t.Parallel()
	path := filepath.Join(t.TempDir(), "accounts.yaml")
	writeFile(t, path, "accounts: []\n")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadServiceAccounts(path)
	if !errors.Is(err, ErrInsecurePermissions) || !strings.Contains(err.Error(), "chmod 600 "+path) {
		t.Fatalf("got %v", err)
	}
	if _, err := LoadServiceAccounts(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}

func TestHashPassword(t *testing.T) {
	t.Parallel()
	hash, wantCost := HashPassword, bcrypt.DefaultCost
	if raceEnabled { // bcrypt at the default cost takes many seconds under the race detector
		hash = func(pw string) (string, error) { return hashPassword(pw, bcrypt.MinCost) }
		wantCost = bcrypt.MinCost
	}
	h, err := hash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost != wantCost {
		t.Fatalf("cost %d, %v", cost, err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret")) != nil {
		t.Fatal("hash does not match")
	}
	if _, err := HashPassword(""); err == nil {
		t.Fatal("empty password hashed")
	}
	if _, err := HashPassword(strings.Repeat("x", 73)); err == nil {
		t.Fatal("73-byte password hashed")
	}
}

func TestWeakHashes(t *testing.T) {
	t.Parallel()
	cheap, err := hashPassword("pw-cheap", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	strong, err := hashPassword("pw-strong", bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseServiceAccounts([]byte("accounts:\n" +
		"  - {username: b-cheap, passwordHash: \"" + cheap + "\", role: consumer}\n" +
		"  - {username: strong, passwordHash: \"" + strong + "\", role: admin}\n" +
		"  - {username: a-cheap, passwordHash: \"" + cheap + "\", role: tokenworker}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.WeakHashes(bcrypt.DefaultCost); !slices.Equal(got, []string{"a-cheap", "b-cheap"}) {
		t.Fatalf("WeakHashes = %q", got)
	}
	if got := (*ServiceAccounts)(nil).WeakHashes(10); got != nil {
		t.Fatalf("nil accounts: %q", got)
	}
}
