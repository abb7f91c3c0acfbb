package inproc

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/clipgate/clipgate/internal/atomicfile"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/topics"
)

// Files the stack keeps in its directory. A stack started again on the same directory
// reuses them, so keys, passwords and stored objects survive a restart.
const (
	fleetKeysFile       = "fleet.keys"            // the workers' fleet keyring (identity.WriteKeyring)
	connectKeysFile     = "connect.keys"          // the broker's connect roots, derived from fleet.keys
	keysFile            = "keys.json"             // access keys and service account passwords
	serviceAccountsFile = "service-accounts.yaml" // bcrypt hashes, rewritten at every start
	localcloudDir       = "localcloud"
	devicesDir          = "devices"
)

// Service account usernames, one per role. The passwords are hex, so they can never be
// taken for a device password ("v1.…") by the broker.
var serviceRoles = []topics.Role{topics.RoleTokenWorker, topics.RoleConsumer, topics.RoleAdmin, topics.RoleConsole}

// keyPair is a localcloud long-term access key.
type keyPair struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// stackKeys is the content of keys.json.
type stackKeys struct {
	// OSSAdmin is the full-access key of the admin OSS client.
	OSSAdmin keyPair `json:"ossAdmin"`
	// STSCaller is the token workers' key: it may only call sts:AssumeRole on the role.
	STSCaller keyPair `json:"stsCaller"`
	// Passwords maps each service role's name (also its username) to its password.
	Passwords map[string]string `json:"passwords"`
}

// maxKeysFile bounds keys.json; it is a few hundred bytes.
const maxKeysFile = 64 << 10

// loadOrCreateKeys returns the fleet keyring and the other secrets kept in dir, generating
// and writing (0600) whichever is missing, and writes the broker's connect keys beside.
func loadOrCreateKeys(dir string) (*identity.Keyring, *stackKeys, error) {
	fleetPath := filepath.Join(dir, fleetKeysFile)
	fleet, err := identity.LoadKeyring(fleetPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if fleet, err = identity.NewFleetKeyring(); err != nil {
			return nil, nil, err
		}
		if err := identity.WriteKeyring(fleetPath, fleet); err != nil {
			return nil, nil, err
		}
	case err != nil:
		return nil, nil, fmt.Errorf("%w (delete it to start with new keys)", err)
	}
	if err := identity.WriteKeyring(filepath.Join(dir, connectKeysFile), fleet.ConnectRoots()); err != nil {
		return nil, nil, err
	}

	keysPath := filepath.Join(dir, keysFile)
	keys, err := readKeys(keysPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if keys, err = newKeys(); err != nil {
			return nil, nil, err
		}
		data, err := json.MarshalIndent(keys, "", "  ")
		if err != nil {
			return nil, nil, err
		}
		if err := atomicfile.Write(keysPath, append(data, '\n'), 0o600); err != nil {
			return nil, nil, err
		}
	case err != nil:
		return nil, nil, fmt.Errorf("keys file %s: %w (delete it to start with new keys)", keysPath, err)
	case keys.Passwords[topics.RoleConsole.String()] == "":
		// A stack directory from before the console role: add its account.
		if keys.Passwords[topics.RoleConsole.String()], err = randomHex(16); err != nil {
			return nil, nil, err
		}
		data, err := json.MarshalIndent(keys, "", "  ")
		if err != nil {
			return nil, nil, err
		}
		if err := atomicfile.Write(keysPath, append(data, '\n'), 0o600); err != nil {
			return nil, nil, err
		}
	}
	return fleet, keys, nil
}

func newKeys() (*stackKeys, error) {
	k := &stackKeys{Passwords: make(map[string]string, len(serviceRoles))}
	var err error
	gen := func(prefix string, n int) string {
		if err != nil {
			return ""
		}
		var s string
		s, err = randomHex(n)
		return prefix + s
	}
	k.OSSAdmin = keyPair{ID: gen("LTAIadmin", 8), Secret: gen("", 16)}
	k.STSCaller = keyPair{ID: gen("LTAIworker", 8), Secret: gen("", 16)}
	for _, role := range serviceRoles {
		k.Passwords[role.String()] = gen("", 16)
	}
	return k, err
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// readKeys reads and checks keys.json, refusing a file that others may read.
func readKeys(path string) (*stackKeys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w (mode %v); chmod 600 it", identity.ErrInsecurePermissions, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeysFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeysFile {
		return nil, fmt.Errorf("larger than %d bytes", maxKeysFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var k stackKeys
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("not a keys file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	for _, p := range []struct {
		name string
		kp   keyPair
	}{{"ossAdmin", k.OSSAdmin}, {"stsCaller", k.STSCaller}} {
		if !alnum(p.kp.ID, 1) || !alnum(p.kp.Secret, 8) {
			return nil, fmt.Errorf("%s: id and secret must be letters and digits (secret at least 8)", p.name)
		}
	}
	if k.OSSAdmin.ID == k.STSCaller.ID {
		return nil, errors.New("ossAdmin and stsCaller have the same id")
	}
	for _, role := range serviceRoles {
		pw, ok := k.Passwords[role.String()]
		if !ok && role == topics.RoleConsole {
			continue // added by loadOrCreateKeys
		}
		if !alnum(pw, 8) || len(pw) > 72 {
			return nil, fmt.Errorf("passwords.%s: want 8 to 72 letters and digits", role)
		}
	}
	for name := range k.Passwords {
		if r, err := topics.ParseRole(name); err != nil || r == topics.RoleDevice {
			return nil, fmt.Errorf("passwords: unknown role %q; want %v", name, serviceRoles)
		}
	}
	return &k, nil
}

// alnum reports whether s is at least min ASCII letters and digits (at most 128).
func alnum(s string, min int) bool {
	if len(s) < min || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// writeServiceAccounts writes the broker's accounts file for the passwords in k, with
// bcrypt at cost (0: its minimum, for tests, which log in often) and loads it.
func writeServiceAccounts(path string, k *stackKeys, cost int) (*identity.ServiceAccounts, error) {
	if cost == 0 {
		cost = bcrypt.MinCost
	}
	type account struct {
		Username     string `yaml:"username"`
		PasswordHash string `yaml:"passwordHash"`
		Role         string `yaml:"role"`
	}
	var f struct {
		Accounts []account `yaml:"accounts"`
	}
	for _, role := range serviceRoles {
		name := role.String()
		h, err := bcrypt.GenerateFromPassword([]byte(k.Passwords[name]), cost)
		if err != nil {
			return nil, err
		}
		f.Accounts = append(f.Accounts, account{Username: name, PasswordHash: string(h), Role: name})
	}
	data, err := yaml.Marshal(&f)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return nil, err
	}
	return identity.LoadServiceAccounts(path)
}
