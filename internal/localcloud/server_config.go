package localcloud

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/clipgate/clipgate/internal/policyeval"
)

// CheckConfig reports what in cfg would make Start fail, without touching the disk or the
// network. DataDir may still be empty (a command may fill it in later).
func CheckConfig(cfg Config) error {
	if cfg.DataDir == "" {
		cfg.DataDir = "."
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	for _, a := range []struct{ name, addr string }{{"ossAddr", c.OSSAddr}, {"stsAddr", c.STSAddr}} {
		if _, _, err := splitHostPort(a.addr); err != nil {
			return fmt.Errorf("localcloud: %s %q: %w", a.name, a.addr, err)
		}
	}
	if !validAccountID(c.AccountID) {
		return fmt.Errorf("localcloud: accountId %q must be 1 to 32 digits", c.AccountID)
	}
	if !validRegion(c.Region) {
		return fmt.Errorf("localcloud: region %q must be lower-case letters, digits and '-'", c.Region)
	}
	seen := map[string]bool{}
	for _, b := range c.Buckets {
		if !validBucketName(b) {
			return fmt.Errorf("localcloud: bucket %q: names are 3 to 63 of [a-z0-9-], not starting or ending with '-'", b)
		}
		if seen[b] {
			return fmt.Errorf("localcloud: bucket %q is listed twice", b)
		}
		seen[b] = true
	}
	_, _, err = parseKeysAndRoles(&c)
	return err
}

// parseKeysAndRoles checks the keys and roles of c (defaults applied) and parses their
// policies.
func parseKeysAndRoles(c *Config) (map[string]*longTermKey, map[string]*roleEntry, error) {
	keys := make(map[string]*longTermKey, len(c.Keys))
	for i, k := range c.Keys {
		if err := checkKeyID(k.ID); err != nil {
			return nil, nil, fmt.Errorf("localcloud: key %d: %w", i+1, err)
		}
		if err := checkSecret(k.Secret); err != nil {
			return nil, nil, fmt.Errorf("localcloud: key %q: %w", k.ID, err)
		}
		if _, dup := keys[k.ID]; dup {
			return nil, nil, fmt.Errorf("localcloud: key %q is listed twice", k.ID)
		}
		if k.User != "" && !validUserName(k.User) {
			return nil, nil, fmt.Errorf("localcloud: key %q: user %q must be 1 to 64 of letters, digits, '.', '@', '-' and '_'", k.ID, k.User)
		}
		e := &longTermKey{key: k}
		if k.Policy != "" {
			doc, err := policyeval.Parse([]byte(k.Policy))
			if err != nil {
				return nil, nil, fmt.Errorf("localcloud: key %q: policy: %w", k.ID, err)
			}
			e.policies = []*policyeval.Document{doc}
		}
		keys[k.ID] = e
	}
	roles := make(map[string]*roleEntry, len(c.Roles))
	for _, r := range c.Roles {
		if err := checkRoleName(r.Name); err != nil {
			return nil, nil, err
		}
		lc := strings.ToLower(r.Name)
		if _, dup := roles[lc]; dup {
			return nil, nil, fmt.Errorf("localcloud: role %q is listed twice (names are case-insensitive)", r.Name)
		}
		if strings.TrimSpace(r.Policy) == "" {
			return nil, nil, fmt.Errorf("localcloud: role %q has no policy", r.Name)
		}
		doc, err := policyeval.Parse([]byte(r.Policy))
		if err != nil {
			return nil, nil, fmt.Errorf("localcloud: role %q: policy: %w", r.Name, err)
		}
		trust := r.Trust
		if trust == "" {
			trust = defaultTrust(c.AccountID)
		}
		trustDoc, err := policyeval.ParseTrustPolicy([]byte(trust))
		if err != nil {
			return nil, nil, fmt.Errorf("localcloud: role %q: trust policy: %w", r.Name, err)
		}
		roles[lc] = &roleEntry{role: r, doc: doc, trust: trustDoc, lcName: lc}
	}
	return keys, roles, nil
}

// validUserName applies RAM's user name rule: 1 to 64 of [A-Za-z0-9.@_-].
func validUserName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && !strings.ContainsRune(".@-_", rune(s[i])) {
			return false
		}
	}
	return true
}

func splitHostPort(addr string) (string, string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", err
	}
	if port == "" {
		return "", "", errors.New("no port")
	}
	return host, port, nil
}

func validAccountID(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func validRegion(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validBucketName applies OSS's bucket naming rule.
func validBucketName(s string) bool {
	if len(s) < 3 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Development defaults, used when a configuration names no keys, roles or buckets.
const (
	DevKeyFile  = "dev-keys.json"
	DevRoleName = "clipgate-dev"
	DevBucket   = "clipgate-dev"
)

// DevDefaults says what ApplyDevDefaults filled in.
type DevDefaults struct {
	Key         *AccessKey // the development key, when cfg had no keys
	KeyCreated  bool       // the key was generated now (else reused from DataDir)
	Role        string     // the development role, when cfg had no roles
	Bucket      string     // the development bucket, when cfg had no buckets
	KeyFilePath string
}

// ApplyDevDefaults makes a configuration without keys, roles or buckets usable for
// development: a long-term key generated once and kept in {DataDir}/dev-keys.json (0600)
// so a restart reuses it, a bucket "clipgate-dev", and a role "clipgate-dev" that may do
// anything in the configured buckets. What is already configured is left alone.
func ApplyDevDefaults(cfg *Config) (DevDefaults, error) {
	var d DevDefaults
	if cfg.DataDir == "" {
		return d, errors.New("localcloud: DataDir is required")
	}
	if len(cfg.Buckets) == 0 {
		cfg.Buckets = []string{DevBucket}
		d.Bucket = DevBucket
	}
	if len(cfg.Roles) == 0 {
		res := make([]string, 0, 2*len(cfg.Buckets))
		for _, b := range cfg.Buckets {
			res = append(res, "acs:oss:*:*:"+b, "acs:oss:*:*:"+b+"/*")
		}
		doc := map[string]any{"Version": "1", "Statement": []any{map[string]any{
			"Effect": "Allow", "Action": []string{"oss:*"}, "Resource": res}}}
		text, err := json.Marshal(doc)
		if err != nil {
			return d, err
		}
		cfg.Roles = []Role{{Name: DevRoleName, Policy: string(text), MaxSessionDuration: MaxMaxSessionDuration}}
		d.Role = DevRoleName
	}
	if len(cfg.Keys) == 0 {
		d.KeyFilePath = filepath.Join(cfg.DataDir, DevKeyFile)
		k, created, err := loadOrCreateDevKey(cfg.DataDir, d.KeyFilePath)
		if err != nil {
			return d, err
		}
		cfg.Keys = []AccessKey{k}
		d.Key, d.KeyCreated = &cfg.Keys[0], created
	}
	return d, nil
}

func loadOrCreateDevKey(dir, path string) (AccessKey, bool, error) {
	var k AccessKey
	text, err := os.ReadFile(path)
	if err == nil {
		st, err := os.Stat(path)
		if err != nil {
			return k, false, fmt.Errorf("localcloud: dev key: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return k, false, fmt.Errorf("localcloud: dev key file %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
		}
		if err := json.Unmarshal(text, &k); err != nil {
			return k, false, fmt.Errorf("localcloud: dev key file %s: %w (delete it to make a new key)", path, err)
		}
		if err := checkKeyID(k.ID); err != nil {
			return k, false, fmt.Errorf("localcloud: dev key file %s: %w", path, err)
		}
		if err := checkSecret(k.Secret); err != nil {
			return k, false, fmt.Errorf("localcloud: dev key file %s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return k, false, fmt.Errorf("localcloud: dev key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return k, false, fmt.Errorf("localcloud: data dir: %w", err)
	}
	var idb, secb [20]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return k, false, err
	}
	if _, err := rand.Read(secb[:]); err != nil {
		return k, false, err
	}
	k = AccessKey{ID: "LTAI" + base58(idb[:14]), Secret: base58(secb[:])}
	text, err = json.MarshalIndent(k, "", "  ")
	if err != nil {
		return k, false, err
	}
	created, err := createFileOnce(dir, path, append(text, '\n'))
	if err != nil {
		return k, false, fmt.Errorf("localcloud: dev key: %w", err)
	}
	if !created { // another process made one first: use that
		return loadOrCreateDevKey(dir, path)
	}
	return k, true, nil
}
