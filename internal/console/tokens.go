package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"
)

// API tokens are "cgt_" + a 12-hex-digit ID + "_" + a 43-character random secret
// (base64url). The console stores the SHA-256 of the whole token; the ID finds it.
const (
	tokenPrefix    = "cgt_"
	tokenIDLen     = 12
	tokenLen       = len(tokenPrefix) + tokenIDLen + 1 + 43
	tokenTouchStep = time.Minute // a token's last use is recorded at most this often
	// MaxTokenTTL bounds a token's lifetime when one is given.
	MaxTokenTTL = 5 * 365 * 24 * time.Hour
)

// newAPIToken returns a new token and its ID.
func newAPIToken() (token, id string) {
	b := make([]byte, tokenIDLen/2)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	id = hex.EncodeToString(b)
	return tokenPrefix + id + "_" + newToken(), id
}

// parseAPIToken returns the ID of a well-formed token.
func parseAPIToken(tok string) (string, bool) {
	if len(tok) != tokenLen || !strings.HasPrefix(tok, tokenPrefix) || tok[len(tokenPrefix)+tokenIDLen] != '_' {
		return "", false
	}
	id := tok[len(tokenPrefix) : len(tokenPrefix)+tokenIDLen]
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id || !validToken(tok[len(tokenPrefix)+tokenIDLen+1:]) {
		return "", false
	}
	return id, true
}

// errBadToken is an API token that is malformed, unknown, revoked or expired.
var errBadToken = errors.New("invalid, revoked or expired API token")

// bearer returns the request's bearer token ("" if none).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(tok), true
}

// tokenPrincipal authenticates an API token.
func (c *Console) tokenPrincipal(ctx context.Context, tok string) (*principal, error) {
	id, ok := parseAPIToken(tok)
	if !ok {
		return nil, errBadToken
	}
	t, err := c.store.Token(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, errBadToken
	}
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	if subtle.ConstantTimeCompare([]byte(hashID(tok)), []byte(t.Hash)) != 1 || !t.Revoked.IsZero() ||
		(!t.Expires.IsZero() && !now.Before(t.Expires)) {
		return nil, errBadToken
	}
	if now.Sub(t.LastUsed) >= tokenTouchStep {
		if err := c.store.TouchToken(ctx, id, now); err != nil {
			c.log.Warn().Err(err).Str("token", id).Msg("recording a token's use")
		}
	}
	return &principal{Name: "token:" + t.Name, Role: t.Role, TokenID: id}, nil
}

// CreateToken makes an API token with a role and a name, valid for ttl (0: until
// revoked), and returns it: the only time the token itself is shown.
func (c *Console) CreateToken(ctx context.Context, by *principal, name string, role Role, ttl time.Duration) (string, *APIToken, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > maxNameLen || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", nil, invalidf("token name: want 1 to %d printable characters", maxNameLen)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return "", nil, err
	}
	if ttl < 0 || ttl > MaxTokenTTL {
		return "", nil, invalidf("token lifetime %v: want 0 (until revoked) to %v", ttl, MaxTokenTTL)
	}
	tok, id := newAPIToken()
	now := c.cfg.Now()
	t := APIToken{ID: id, Hash: hashID(tok), Name: name, Role: role, CreatedBy: by.Name, Created: now}
	if ttl > 0 {
		t.Expires = now.Add(ttl)
	}
	if err := c.store.CreateToken(ctx, t); err != nil {
		return "", nil, err
	}
	t.Hash = ""
	return tok, &t, nil
}
