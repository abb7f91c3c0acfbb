package identity

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/clipgate/clipgate/topics"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// MaxUsernameLen bounds service account usernames.
const MaxUsernameLen = 128

// maxPasswordBytes is bcrypt's limit: it ignores everything after byte 72.
const maxPasswordBytes = 72

// maxBcryptCost refuses hashes so costly that each MQTT CONNECT would take seconds.
const maxBcryptCost = 15

// maxAccountsFile bounds the service accounts file.
const maxAccountsFile = 1 << 20

// ServiceAccounts are the non-device MQTT identities (token workers, consumers, admins),
// each a username, a bcrypt password hash and a role. It is read-only after loading and
// safe for concurrent use.
type ServiceAccounts struct {
	byName map[string]serviceAccount
	dummy  []byte // hash compared against for unknown users, at the accounts' highest cost
}

type serviceAccount struct {
	hash []byte
	role topics.Role
}

type accountsFile struct {
	Accounts *[]*accountEntry `yaml:"accounts"` // pointers: yaml.v3 drops null struct elements
}

type accountEntry struct {
	Username     string `yaml:"username"`
	PasswordHash string `yaml:"passwordHash"`
	Role         string `yaml:"role"`
}

// LoadServiceAccounts reads a YAML file of the form
//
//	accounts:
//	  - username: worker-1
//	    passwordHash: "$2a$10$..."   # from HashPassword (clipgate's admin tooling)
//	    role: tokenworker            # tokenworker, consumer or admin
//
// strictly: unknown fields, empty fields, malformed bcrypt hashes, unknown roles and
// duplicate usernames are errors naming the account. Like key files, the file must not
// be accessible by group or others.
func LoadServiceAccounts(path string) (*ServiceAccounts, error) {
	data, err := readPrivateFile(path, maxAccountsFile)
	if err != nil {
		return nil, fmt.Errorf("service accounts: %w", err)
	}
	s, err := parseServiceAccounts(data)
	if err != nil {
		return nil, fmt.Errorf("service accounts %s: %w", path, err)
	}
	return s, nil
}

func parseServiceAccounts(data []byte) (*ServiceAccounts, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f accountsFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file, want an \"accounts:\" list")
		}
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	if f.Accounts == nil {
		return nil, errors.New("no \"accounts:\" list")
	}
	s := &ServiceAccounts{byName: make(map[string]serviceAccount, len(*f.Accounts))}
	maxCost := bcrypt.MinCost
	for i, a := range *f.Accounts {
		where := fmt.Sprintf("account %d", i+1)
		if a == nil {
			return nil, fmt.Errorf("%s: empty entry", where)
		}
		if a.Username != "" {
			where += fmt.Sprintf(" (%q)", a.Username)
		}
		if err := checkUsername(a.Username); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if _, dup := s.byName[a.Username]; dup {
			return nil, fmt.Errorf("%s: duplicate username", where)
		}
		if a.PasswordHash == "" {
			return nil, fmt.Errorf("%s: empty passwordHash", where)
		}
		cost, err := bcrypt.Cost([]byte(a.PasswordHash))
		if err != nil {
			return nil, fmt.Errorf("%s: passwordHash is not a bcrypt hash: %w", where, err)
		}
		if cost > maxBcryptCost {
			return nil, fmt.Errorf("%s: bcrypt cost %d would make every login take seconds; at most %d", where, cost, maxBcryptCost)
		}
		maxCost = max(maxCost, cost)
		role, err := topics.ParseRole(a.Role)
		switch {
		case a.Role == "":
			return nil, fmt.Errorf("%s: empty role, want %s, %s, %s or %s", where, topics.RoleTokenWorker, topics.RoleConsumer, topics.RoleAdmin, topics.RoleConsole)
		case err != nil || role == topics.RoleDevice:
			return nil, fmt.Errorf("%s: unknown role %q, want %s, %s, %s or %s", where, a.Role, topics.RoleTokenWorker, topics.RoleConsumer, topics.RoleAdmin, topics.RoleConsole)
		}
		s.byName[a.Username] = serviceAccount{hash: []byte(a.PasswordHash), role: role}
	}
	var pw [16]byte
	rand.Read(pw[:])
	dummy, err := bcrypt.GenerateFromPassword(pw[:], maxCost)
	if err != nil {
		return nil, err
	}
	s.dummy = dummy
	return s, nil
}

func checkUsername(u string) error {
	if u == "" {
		return errors.New("empty username")
	}
	if len(u) > MaxUsernameLen {
		return fmt.Errorf("username longer than %d bytes", MaxUsernameLen)
	}
	if !utf8.ValidString(u) {
		return errors.New("username is not valid UTF-8")
	}
	for _, c := range u {
		if unicode.IsSpace(c) || unicode.IsControl(c) {
			return fmt.Errorf("username contains %q", c)
		}
	}
	return nil
}

// HashPassword returns the bcrypt hash (default cost) of a service account password for
// the accounts file. The password must be 1 to 72 bytes (bcrypt ignores what follows).
func HashPassword(pw string) (string, error) {
	return hashPassword(pw, bcrypt.DefaultCost)
}

func hashPassword(pw string, cost int) (string, error) {
	if pw == "" {
		return "", errors.New("empty password")
	}
	if len(pw) > maxPasswordBytes {
		return "", fmt.Errorf("password is %d bytes, at most %d", len(pw), maxPasswordBytes)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}

// Authenticate returns the role of username when password is its password. It costs one
// bcrypt comparison whether or not the user exists (an unknown user is compared against a
// dummy hash), so its timing does not tell which usernames exist.
func (s *ServiceAccounts) Authenticate(username, password string) (role topics.Role, ok bool) {
	if s == nil {
		return 0, false
	}
	a, found := s.byName[username]
	hash := s.dummy
	if found {
		hash = a.hash
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	if !found || err != nil || password == "" || len(password) > maxPasswordBytes {
		return 0, false
	}
	return a.role, true
}

// WeakHashes returns the usernames whose hash has a bcrypt cost below minCost, sorted.
func (s *ServiceAccounts) WeakHashes(minCost int) []string {
	if s == nil {
		return nil
	}
	var weak []string
	for name, a := range s.byName {
		if cost, err := bcrypt.Cost(a.hash); err == nil && cost < minCost {
			weak = append(weak, name)
		}
	}
	slices.Sort(weak)
	return weak
}

// Len returns the number of accounts.
func (s *ServiceAccounts) Len() int {
	if s == nil {
		return 0
	}
	return len(s.byName)
}
