package localcloud

import (
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/clipgate/clipgate/internal/policyeval"
	"github.com/clipgate/clipgate/policy"
)

// Error codes and details the authority returns, as Alibaba Cloud spells them.
const (
	ecInvalidSecurityToken = "0002-00000006"
	ecKeyTokenMismatch     = "0002-00000004"
	ecSTSAccessKeyNotFound = "0002-00000002"
	ecSecurityTokenExpired = "0002-00000007"

	tokenKeyFile = "sts-token.key"
	tokenKeySize = 32
	stsKeyPrefix = "STS."

	// tokenCacheMax bounds the cache of verified, parsed tokens.
	tokenCacheMax = 4096
)

// tokenEncoding decodes token parts strictly, so each token has exactly one spelling.
var tokenEncoding = base64.RawURLEncoding.Strict()

// Principal is the identity behind an access key, as the OSS side authorizes it.
type Principal struct {
	AccessKeyID, Secret string
	Temporary           bool      // issued by AssumeRole
	Role, SessionName   string    // for temporary credentials
	Expiration          time.Time // for temporary credentials
	// Policies must all allow a request; empty for an unrestricted long-term key.
	Policies []*policyeval.Document
}

// TempCredentials are the temporary credentials AssumeRole issues.
type TempCredentials struct {
	AccessKeyID, AccessKeySecret, SecurityToken string
	Expiration                                  time.Time
	RoleARN, SessionName                        string
}

// Authority holds the long-term keys and roles and issues and verifies STS credentials.
// Temporary credentials are stateless: the secret is derived from the access key ID and the
// token is signed, both under a token key kept in the data directory, so they stay valid
// across restarts. An Authority is safe for concurrent use.
type Authority struct {
	accountID string
	tokenKey  []byte
	keys      map[string]*longTermKey // by key ID
	roles     map[string]*roleEntry   // by lower-case role name

	mu    sync.Mutex
	cache map[string]*tokenEntry // verified tokens by their MAC

	sessionPolicies policyCache
}

// policyCache keeps parsed session policies by their text. A device's policy is the same
// text every time it asks, and AssumeRole checks it, then OSS evaluates it for every token
// issued with it; parsing it once serves both. Documents are read-only once parsed.
type policyCache struct {
	mu sync.Mutex
	m  map[string]*policyeval.Document
}

// policyCacheMax bounds the cache; when full it starts over.
const policyCacheMax = 4096

// parse returns the parsed session policy text, from the cache when it was parsed before.
// Errors are not cached.
func (c *policyCache) parse(text string) (*policyeval.Document, error) {
	c.mu.Lock()
	doc, ok := c.m[text]
	c.mu.Unlock()
	if ok {
		return doc, nil
	}
	doc, err := policyeval.ParseSession(text)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= policyCacheMax {
		c.m = make(map[string]*policyeval.Document)
	}
	c.m[text] = doc
	c.mu.Unlock()
	return doc, nil
}

type longTermKey struct {
	key      AccessKey
	policies []*policyeval.Document
	user     string // RAM user name: key.User, or the key ID
	userID   string // numeric RAM user ID, stable for a given token key and user name
}

type roleEntry struct {
	role   Role
	doc    *policyeval.Document
	trust  *policyeval.Document // who may assume the role
	id     string               // numeric role ID, stable for a given token key and name
	lcName string
}

// tokenClaims is the signed content of a security token. Field names are short because
// the token travels in every request header.
type tokenClaims struct {
	AccessKeyID string `json:"k"`
	Role        string `json:"r"`
	Session     string `json:"s"`
	Policy      string `json:"p,omitempty"`
	Issued      int64  `json:"i"`
	Expiration  int64  `json:"e"`
	Caller      string `json:"c"`
}

type tokenEntry struct {
	claims   tokenClaims
	secret   string // derived secret of claims.AccessKeyID
	policies []*policyeval.Document
}

// NewAuthority checks the keys and roles of cfg, parses their policies and loads the token
// key from {DataDir}/sts-token.key, creating it (mode 0600) on first use.
func NewAuthority(cfg *Config) (*Authority, error) {
	if cfg == nil {
		return nil, errors.New("localcloud: nil config")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	keys, roles, err := parseKeysAndRoles(&c)
	if err != nil {
		return nil, err
	}
	a := &Authority{accountID: c.AccountID, keys: keys, roles: roles, cache: make(map[string]*tokenEntry)}
	if a.tokenKey, err = loadOrCreateTokenKey(c.DataDir); err != nil {
		return nil, err
	}
	for _, r := range a.roles {
		r.id = a.roleID(r.lcName)
	}
	for _, k := range a.keys {
		k.user = cmp.Or(k.key.User, k.key.ID)
		k.userID = a.userID(k.user)
	}
	return a, nil
}

// RoleARN returns the ARN of the named role in this account.
func (a *Authority) RoleARN(name string) string {
	return "acs:ram::" + a.accountID + ":role/" + strings.ToLower(name)
}

// Resolve returns the principal behind an access key. A long-term key needs no token (and
// refuses one). A temporary ("STS.") key needs the security token AssumeRole issued with
// it: signed under the token key, naming this key, not expired at now, for a role that is
// still configured.
func (a *Authority) Resolve(accessKeyID, securityToken string, now time.Time) (*Principal, error) {
	if !strings.HasPrefix(accessKeyID, stsKeyPrefix) {
		k, ok := a.keys[accessKeyID]
		if !ok {
			return nil, errInvalidAccessKeyID()
		}
		if securityToken != "" {
			// With a token the request is an STS request, and a long-term key ID is then
			// unknown: https://www.alibabacloud.com/help/en/oss/support/0002-00000002.
			return nil, &Error{Status: http.StatusForbidden, Code: "InvalidAccessKeyId",
				Message: "The OSS Access Key Id you provided does not exist in our records.", EC: ecSTSAccessKeyNotFound}
		}
		return &Principal{AccessKeyID: k.key.ID, Secret: k.key.Secret, Policies: k.policies}, nil
	}
	if securityToken == "" {
		// OSS does not know a temporary key without its token.
		return nil, errInvalidAccessKeyID()
	}
	e, err := a.verifyToken(securityToken)
	if err != nil {
		return nil, err
	}
	if e.claims.AccessKeyID != accessKeyID {
		// A genuine token sent with another key: OSS's AccessKeyIdAndSecurityTokenNotMatch,
		// https://www.alibabacloud.com/help/en/oss/support/0002-00000004 (the page gives the
		// EC; the message is ours).
		return nil, &Error{Status: http.StatusForbidden, Code: "AccessKeyIdAndSecurityTokenNotMatch",
			Message: "The AccessKeyId and the SecurityToken you provided do not match.", EC: ecKeyTokenMismatch}
	}
	exp := time.Unix(e.claims.Expiration, 0).UTC()
	if !now.Before(exp) {
		return nil, &Error{Status: http.StatusForbidden, Code: "SecurityTokenExpired",
			Message: "The security token you provided has expired.", EC: ecSecurityTokenExpired}
	}
	return &Principal{
		AccessKeyID: accessKeyID,
		Secret:      e.secret,
		Temporary:   true,
		Role:        e.claims.Role,
		SessionName: e.claims.Session,
		Expiration:  exp,
		Policies:    e.policies,
	}, nil
}

// verifyToken checks a token's MAC and returns its claims and policies, from the cache when
// this token was seen before.
func (a *Authority) verifyToken(token string) (*tokenEntry, error) {
	body, macText, ok := strings.Cut(token, ".")
	if !ok || body == "" || len(macText) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return nil, errInvalidSecurityToken("the security token is malformed")
	}
	var got [sha256.Size]byte
	if n, err := tokenEncoding.Decode(got[:], []byte(macText)); err != nil || n != sha256.Size {
		return nil, errInvalidSecurityToken("the security token is malformed")
	}
	want := a.tokenMAC(body)
	if subtle.ConstantTimeCompare(got[:], want) != 1 {
		return nil, errInvalidSecurityToken("the security token signature does not verify")
	}
	a.mu.Lock()
	e, ok := a.cache[macText]
	a.mu.Unlock()
	if ok {
		return e, nil
	}
	raw, err := tokenEncoding.DecodeString(body)
	if err != nil {
		return nil, errInvalidSecurityToken("the security token is malformed")
	}
	e = &tokenEntry{}
	if err := json.Unmarshal(raw, &e.claims); err != nil {
		return nil, errInvalidSecurityToken("the security token is malformed")
	}
	role, ok := a.roles[strings.ToLower(e.claims.Role)]
	if !ok {
		return nil, errInvalidSecurityToken("the role of the security token no longer exists")
	}
	e.secret = a.secretFor(e.claims.AccessKeyID)
	e.policies = []*policyeval.Document{role.doc}
	if e.claims.Policy != "" {
		doc, err := a.sessionPolicies.parse(e.claims.Policy)
		if err != nil { // signed by us, so only a policyeval change gets here
			return nil, errInvalidSecurityToken("the session policy of the security token is invalid")
		}
		e.policies = append(e.policies, doc)
	}
	a.mu.Lock()
	if len(a.cache) >= tokenCacheMax {
		clear(a.cache)
	}
	a.cache[macText] = e
	a.mu.Unlock()
	return e, nil
}

// AssumeRole issues temporary credentials for a role to the holder of a long-term key, as
// STS AssumeRole does. duration 0 means one hour. sessionPolicy "" means none. Errors are
// *Error with STS codes.
func (a *Authority) AssumeRole(callerKeyID, roleARN, sessionName, sessionPolicy string, duration time.Duration, now time.Time) (*TempCredentials, error) {
	caller, ok := a.keys[callerKeyID]
	if !ok {
		return nil, stsError(http.StatusNotFound, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
	}
	p := &Principal{AccessKeyID: callerKeyID, Secret: caller.key.Secret, Policies: caller.policies}
	return a.assumeRole(p, roleARN, sessionName, sessionPolicy, duration, now)
}

// assumeRole issues temporary credentials for a role to an authenticated caller: a RAM
// user (long-term key) or a role session (STS credentials).
func (a *Authority) assumeRole(caller *Principal, roleARN, sessionName, sessionPolicy string, duration time.Duration, now time.Time) (*TempCredentials, error) {
	if roleARN == "" {
		return nil, stsError(http.StatusBadRequest, "MissingParameter.RoleArn", "Parameter RoleArn is required.")
	}
	roleName, err := a.parseRoleARN(roleARN)
	if err != nil {
		return nil, err
	}
	if (len(caller.Policies) > 0 || caller.Temporary) && !policyeval.Authorize(&policyeval.Request{
		Action: "sts:AssumeRole", Resource: a.RoleARN(roleName), CurrentTime: now,
	}, caller.Policies...) {
		return nil, stsError(http.StatusForbidden, "NoPermission", "You are not authorized to do this action. You should be authorized by RAM.")
	}
	role, ok := a.roles[roleName]
	if !ok {
		return nil, stsError(http.StatusNotFound, "EntityNotExist.Role", "The specified Role not exists .")
	}
	if !a.trusts(role, caller, now) {
		return nil, stsError(http.StatusForbidden, "NoPermission", "You are not authorized to do this action. You should be authorized by RAM.")
	}
	if !validSessionName(sessionName) {
		return nil, stsError(http.StatusBadRequest, "InvalidParameter.RoleSessionName", "The parameter RoleSessionName is wrongly formed.")
	}
	if duration == 0 {
		duration = DefaultMaxSessionDuration
	}
	if duration < MinSessionDuration || duration > role.role.MaxSessionDuration || duration%time.Second != 0 {
		return nil, stsError(http.StatusBadRequest, "InvalidParameter.DurationSeconds",
			fmt.Sprintf("The Min/Max value of DurationSeconds is 15min/%s.", fmtHours(role.role.MaxSessionDuration)))
	}
	if sessionPolicy != "" {
		if utf8.RuneCountInString(sessionPolicy) > policy.MaxSessionPolicyLen {
			return nil, stsError(http.StatusBadRequest, "InvalidParameter.PolicySize",
				fmt.Sprintf("The Policy must be at most %d characters long.", policy.MaxSessionPolicyLen))
		}
		if _, err := a.sessionPolicies.parse(sessionPolicy); err != nil {
			return nil, stsError(http.StatusBadRequest, "InvalidParameter.PolicyGrammar",
				"The parameter Policy has not passed grammar check: "+err.Error())
		}
	}
	akid, err := newTempKeyID()
	if err != nil {
		return nil, stsError(http.StatusInternalServerError, "InternalError", "STS Server Internal Error happened.")
	}
	now = now.UTC().Truncate(time.Second)
	exp := now.Add(duration)
	claims := tokenClaims{
		AccessKeyID: akid,
		Role:        role.role.Name,
		Session:     sessionName,
		Policy:      sessionPolicy,
		Issued:      now.Unix(),
		Expiration:  exp.Unix(),
		Caller:      caller.AccessKeyID,
	}
	raw, err := json.Marshal(&claims)
	if err != nil {
		return nil, stsError(http.StatusInternalServerError, "InternalError", "STS Server Internal Error happened.")
	}
	body := base64.RawURLEncoding.EncodeToString(raw)
	token := body + "." + base64.RawURLEncoding.EncodeToString(a.tokenMAC(body))
	return &TempCredentials{
		AccessKeyID:     akid,
		AccessKeySecret: a.secretFor(akid),
		SecurityToken:   token,
		Expiration:      exp,
		RoleARN:         a.RoleARN(role.lcName),
		SessionName:     sessionName,
	}, nil
}

// assumedRoleID is the AssumedRoleId STS returns: "{roleID}:{session}".
func (a *Authority) assumedRoleID(roleARN, session string) string {
	name, err := a.parseRoleARN(roleARN)
	if err != nil {
		return ""
	}
	if r, ok := a.roles[name]; ok {
		return r.id + ":" + session
	}
	return ""
}

// parseRoleARN returns the lower-case role name of "acs:ram::{AccountID}:role/{name}".
func (a *Authority) parseRoleARN(arn string) (string, error) {
	const prefix = "acs:ram::"
	lc := strings.ToLower(arn)
	rest, ok := strings.CutPrefix(lc, prefix)
	if !ok {
		return "", errBadRoleARN()
	}
	account, name, ok := strings.Cut(rest, ":role/")
	if !ok || account == "" || name == "" || checkRoleName(name) != nil {
		return "", errBadRoleARN()
	}
	if account != strings.ToLower(a.accountID) {
		return "", stsError(http.StatusNotFound, "EntityNotExist.Role", "The specified Role not exists .")
	}
	return name, nil
}

func (a *Authority) tokenMAC(body string) []byte {
	m := hmac.New(sha256.New, a.tokenKey)
	m.Write([]byte("token\n"))
	m.Write([]byte(body))
	return m.Sum(nil)
}

// secretFor derives the secret of a temporary access key.
func (a *Authority) secretFor(akid string) string {
	m := hmac.New(sha256.New, a.tokenKey)
	m.Write([]byte("secret\n"))
	m.Write([]byte(akid))
	return base58(m.Sum(nil))
}

// roleID derives a stable 19-digit role ID, shaped like RAM's.
func (a *Authority) roleID(lcName string) string {
	m := hmac.New(sha256.New, a.tokenKey)
	m.Write([]byte("role\n"))
	m.Write([]byte(lcName))
	n := binary.BigEndian.Uint64(m.Sum(nil)) % 9e18
	return strconv.FormatUint(n+1e18, 10)
}

func newTempKeyID() (string, error) {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return stsKeyPrefix + base58(b[:]), nil
}

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// base58 encodes b in the Bitcoin alphabet (no 0, O, I, l), which is how Alibaba's STS
// keys and secrets look. It converts base 256 to base 58 digit by digit on a small array
// (keys are at most a few dozen bytes), without math/big's allocations.
func base58(b []byte) string {
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	var stack [96]byte
	var digits []byte // base-58 digits, least significant first
	if n := len(b) * 138 / 100; n < len(stack) {
		digits = stack[: 0 : n+1]
	} else {
		digits = make([]byte, 0, n+1)
	}
	for _, c := range b[zeros:] {
		carry := int(c)
		for i := range digits {
			carry += int(digits[i]) << 8
			digits[i] = byte(carry % 58)
			carry /= 58
		}
		for carry > 0 {
			digits = append(digits, byte(carry%58))
			carry /= 58
		}
	}
	out := make([]byte, zeros+len(digits))
	for i := 0; i < zeros; i++ {
		out[i] = base58Alphabet[0]
	}
	for i, d := range digits {
		out[len(out)-1-i] = base58Alphabet[d]
	}
	return string(out)
}

// loadOrCreateTokenKey reads the hex token key from dir, or creates it atomically: the
// key is written to a temporary file and linked into place, so concurrent first starts
// agree on one key and a crash never leaves a partial key.
func loadOrCreateTokenKey(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("localcloud: data dir: %w", err)
	}
	path := filepath.Join(dir, tokenKeyFile)
	key, err := readTokenKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key = make([]byte, tokenKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("localcloud: token key: %w", err)
	}
	created, err := createFileOnce(dir, path, []byte(hex.EncodeToString(key)+"\n"))
	if err != nil {
		return nil, fmt.Errorf("localcloud: token key: %w", err)
	}
	if !created {
		return readTokenKey(path) // another process won the race
	}
	return key, nil
}

// createFileOnce creates path (mode 0600) with data unless it exists, atomically: the
// data goes to a synced temporary file that is then hard-linked into place, so readers
// never see a partial file and concurrent creators agree on one winner. It reports
// whether this call created the file.
func createFileOnce(dir, path string, data []byte) (bool, error) {
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

func readTokenKey(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("localcloud: token key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("localcloud: token key %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("localcloud: token key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(text)))
	if err != nil || len(key) != tokenKeySize {
		return nil, fmt.Errorf("localcloud: token key %s is not %d hex-encoded bytes; delete it to make a new one (outstanding tokens become invalid)", path, tokenKeySize)
	}
	return key, nil
}

// checkKeyID accepts the characters that survive every signature format: OSS V1
// ("OSS id:sig"), V4 ("Credential=id/...") and the STS RPC parameters.
func checkKeyID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("access key ID %q must be 1 to 128 characters", id)
	}
	if strings.HasPrefix(id, stsKeyPrefix) {
		return fmt.Errorf("access key ID %q: the prefix %q is reserved for temporary keys", id, stsKeyPrefix)
	}
	for i := 0; i < len(id); i++ {
		if !isAlnum(id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-' {
			return fmt.Errorf("access key ID %q may contain only letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

func checkSecret(s string) error {
	if len(s) < 8 || len(s) > 128 {
		return errors.New("secret must be 8 to 128 characters")
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return errors.New("secret must be printable ASCII without spaces")
		}
	}
	return nil
}

// checkRoleName applies RAM's role name rule: 1 to 64 letters, digits, '.', '-' and '_'.
func checkRoleName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("localcloud: role name %q must be 1 to 64 characters", name)
	}
	for i := 0; i < len(name); i++ {
		if !isAlnum(name[i]) && name[i] != '.' && name[i] != '-' && name[i] != '_' {
			return fmt.Errorf("localcloud: role name %q may contain only letters, digits, '.', '-' and '_'", name)
		}
	}
	return nil
}

// validSessionName applies STS's RoleSessionName rule: 2 to 64 of [A-Za-z0-9.@_-].
func validSessionName(s string) bool {
	if len(s) < 2 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '.' && s[i] != '@' && s[i] != '_' && s[i] != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func fmtHours(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.Itoa(int(d/time.Hour)) + "hr"
	}
	return strconv.Itoa(int(d/time.Minute)) + "min"
}

func stsError(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

func errBadRoleARN() *Error {
	return stsError(http.StatusBadRequest, "InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed.")
}

func errInvalidAccessKeyID() *Error {
	return &Error{Status: http.StatusForbidden, Code: "InvalidAccessKeyId",
		Message: "The OSS Access Key Id you provided does not exist in our records."}
}

func errInvalidSecurityToken(detail string) *Error {
	return &Error{Status: http.StatusForbidden, Code: "InvalidSecurityToken",
		Message: "The security token you provided is invalid: " + detail + ".", EC: ecInvalidSecurityToken}
}
