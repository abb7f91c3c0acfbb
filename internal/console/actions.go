package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The operations an operator or a token asks for through the UI or the API: each does
// its work, then records it in the audit log with the request's principal.

// playback is what a viewer gets to watch a clip: signed URLs, valid until Expires.
type playback struct {
	URL      string // to play
	Download string // to download (as an attachment)
	Poster   string // the poster, if the clip has one
	Expires  time.Time
}

// issuePlayback signs the URLs to play and download a clip (and its poster), and
// records the issuance.
func (c *Console) issuePlayback(r *http.Request, clip *Clip) (*playback, error) {
	u, exp, err := c.SignedURL(clip.Key)
	if err != nil {
		return nil, err
	}
	dl, _, err := c.DownloadURL(clip.Key)
	if err != nil {
		return nil, err
	}
	p := &playback{URL: u, Download: dl, Expires: exp}
	if clip.Poster {
		if p.Poster, _, err = c.SignedURL(clip.Key + PosterSuffix); err != nil {
			return nil, err
		}
	}
	c.audit(r, AuditPlaybackURL, clip.Key, "valid until "+exp.UTC().Format(time.RFC3339))
	return p, nil
}

// posterURL signs the URL of a clip's poster ("" if it has none or signing fails: a
// list shows the clip without it).
func (c *Console) posterURL(clip *Clip) string {
	if !clip.Poster {
		return ""
	}
	u, _, err := c.SignedURL(clip.Key + PosterSuffix)
	if err != nil {
		return ""
	}
	return u
}

func (c *Console) deleteClipBy(r *http.Request, key string) (*Clip, error) {
	clip, err := c.clipOfKey(r, key)
	if err == nil {
		err = c.DeleteClip(r.Context(), key)
	}
	if err != nil {
		return nil, err
	}
	c.audit(r, AuditDeleteClip, key, fmt.Sprintf("%d bytes of %s", clip.Size, clip.Device))
	return clip, nil
}

func (c *Console) revokeBy(r *http.Request, id string, revoked bool) error {
	if err := validateDevice(id); err != nil {
		return err
	}
	if err := c.SetRevoked(r.Context(), id, revoked); err != nil {
		return err
	}
	action := AuditRestore
	if revoked {
		action = AuditRevoke
	}
	c.audit(r, action, id, "")
	return nil
}

func (c *Console) retentionBy(r *http.Request, prefix string, days int) (RetentionResult, error) {
	res, err := c.Retention(r.Context(), prefix, days)
	if errors.Is(err, ErrInvalid) {
		return res, err
	}
	c.audit(r, AuditRetentionRun, retentionTarget(prefix, c.cfg.Prefix), retentionDetail(days, res, err))
	return res, err
}

func retentionTarget(prefix, global string) string {
	if prefix == "" {
		return global
	}
	return prefix
}

func retentionDetail(days int, res RetentionResult, err error) string {
	d := fmt.Sprintf("older than %d days: %d objects, %d index rows deleted", days, res.Objects, res.Rows)
	if res.More {
		d += "; more left"
	}
	if err != nil {
		d += "; failed: " + err.Error()
	}
	return d
}

// checkRule checks a retention rule's prefix and days.
func (c *Console) checkRule(prefix string, days int) (string, error) {
	prefix, err := c.CheckRetentionPrefix(prefix)
	if err != nil {
		return "", err
	}
	if days < 1 || days > MaxRetentionDays {
		return "", invalidf("days %d: want 1 to %d", days, MaxRetentionDays)
	}
	return prefix, nil
}

// putRuleBy sets the retention rule of a prefix (and the bucket's lifecycle rules, with
// Config.Lifecycle).
func (c *Console) putRuleBy(r *http.Request, prefix string, days int) (*RetentionRule, error) {
	prefix, err := c.checkRule(prefix, days)
	if err != nil {
		return nil, err
	}
	p := principalFrom(r.Context())
	rule := RetentionRule{Prefix: prefix, Days: days, UpdatedBy: p.Name, Updated: c.cfg.Now()}
	if err := c.store.PutRetentionRule(r.Context(), rule); err != nil {
		return nil, err
	}
	c.audit(r, AuditRetentionRule, prefix, fmt.Sprintf("set: older than %d days", days))
	if err := c.syncLifecycleBy(r); err != nil {
		return nil, err
	}
	return &rule, nil
}

func (c *Console) deleteRuleBy(r *http.Request, prefix string) error {
	if prefix == "" {
		return invalidf("prefix is required")
	}
	if err := c.store.DeleteRetentionRule(r.Context(), prefix); err != nil {
		return err
	}
	c.audit(r, AuditRetentionRule, prefix, "removed")
	return c.syncLifecycleBy(r)
}

// syncLifecycleBy mirrors the rules as the bucket's lifecycle rules (with
// Config.Lifecycle) and records it.
func (c *Console) syncLifecycleBy(r *http.Request) error {
	if !c.cfg.Lifecycle {
		return nil
	}
	n, err := c.SyncLifecycle(r.Context())
	detail := fmt.Sprintf("%d rules of the console on the bucket", n)
	if err != nil {
		detail = "failed: " + err.Error()
		err = fmt.Errorf("the rule is saved, but the bucket's lifecycle rules were not updated: %w", err)
	}
	c.audit(r, AuditLifecycle, c.cfg.Bucket.BucketName, detail)
	return err
}

// minPasswordLen is the shortest operator password the console accepts.
const minPasswordLen = 10

// putOperatorBy creates an operator (a password is then required) or changes one's role
// and, if given, password. The configured admin cannot be changed here, and the last
// admin cannot become a viewer.
func (c *Console) putOperatorBy(r *http.Request, name string, role Role, password string) (*Operator, error) {
	ctx := r.Context()
	if err := validName(name); err != nil {
		return nil, err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return nil, err
	}
	if c.configured(name) {
		return nil, invalidf("operator %q comes from the console's configuration (its password hash): change it there", name)
	}
	if password != "" && (len(password) < minPasswordLen || len(password) > maxPasswordBytes) {
		return nil, invalidf("password: want %d to %d bytes", minPasswordLen, maxPasswordBytes)
	}
	old, err := c.store.Operator(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		if password == "" {
			return nil, invalidf("a new operator needs a password")
		}
	case err != nil:
		return nil, err
	case old.Role == RoleAdmin && role != RoleAdmin:
		if err := c.keepAnAdmin(ctx, name); err != nil {
			return nil, err
		}
	}
	now := c.cfg.Now()
	detail := "role " + string(role)
	if password == "" {
		if err := c.store.SetOperatorRole(ctx, name, role, now); err != nil {
			return nil, err
		}
	} else {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), c.cfg.BcryptCost)
		if err != nil {
			return nil, err
		}
		if err := c.store.PutOperator(ctx, Operator{Name: name, Role: role, PasswordHash: string(hash), Updated: now}); err != nil {
			return nil, err
		}
		detail += ", password set"
	}
	c.audit(r, AuditOperatorPut, name, detail)
	op, err := c.store.Operator(ctx, name)
	if err != nil {
		return nil, err
	}
	op.PasswordHash = ""
	return op, nil
}

func (c *Console) deleteOperatorBy(r *http.Request, name string) error {
	if err := validName(name); err != nil {
		return err
	}
	if c.configured(name) {
		return invalidf("operator %q comes from the console's configuration: remove its password hash there", name)
	}
	op, err := c.store.Operator(r.Context(), name)
	if err != nil {
		return err
	}
	if op.Role == RoleAdmin {
		if err := c.keepAnAdmin(r.Context(), name); err != nil {
			return err
		}
	}
	if err := c.store.DeleteOperator(r.Context(), name); err != nil {
		return err
	}
	c.audit(r, AuditOperatorDelete, name, "")
	return nil
}

// keepAnAdmin refuses a change that would leave no admin but name.
func (c *Console) keepAnAdmin(ctx context.Context, name string) error {
	ops, err := c.store.Operators(ctx)
	if err != nil {
		return err
	}
	for _, op := range ops {
		if op.Role == RoleAdmin && op.Name != name {
			return nil
		}
	}
	return invalidf("%s is the last admin: make another operator an admin first", name)
}

// configured reports whether name is the operator of Config.PasswordHash.
func (c *Console) configured(name string) bool {
	return c.cfg.PasswordHash != "" && name == c.cfg.AdminName
}

// operators lists the operators, marking the configured one.
func (c *Console) operators(ctx context.Context) ([]Operator, error) {
	ops, err := c.store.Operators(ctx)
	for i := range ops {
		ops[i].Configured = c.configured(ops[i].Name)
	}
	return ops, err
}

func (c *Console) createTokenBy(r *http.Request, name string, role Role, ttl time.Duration) (string, *APIToken, error) {
	tok, t, err := c.CreateToken(r.Context(), principalFrom(r.Context()), name, role, ttl)
	if err != nil {
		return "", nil, err
	}
	detail := "role " + string(role) + ", " + t.Name
	if !t.Expires.IsZero() {
		detail += ", expires " + t.Expires.UTC().Format(time.RFC3339)
	}
	c.audit(r, AuditTokenCreate, t.ID, detail)
	return tok, t, nil
}

func (c *Console) revokeTokenBy(r *http.Request, id string) error {
	id = strings.TrimSpace(id)
	if len(id) != tokenIDLen {
		return invalidf("token ID %q: want %d hexadecimal digits", truncate(id, 40), tokenIDLen)
	}
	if err := c.store.RevokeToken(r.Context(), id, c.cfg.Now()); err != nil {
		return err
	}
	c.audit(r, AuditTokenRevoke, id, "")
	return nil
}

// ensureAdmin runs at start: the configured admin (Config.PasswordHash) is created or
// updated; without one, the database must hold an operator (else an ErrInvalidConfig).
func (c *Console) ensureAdmin(ctx context.Context) error {
	if c.cfg.PasswordHash == "" {
		ops, err := c.store.Operators(ctx)
		if err != nil {
			return err
		}
		if len(ops) == 0 {
			return fmt.Errorf("%w: no operator can log in: configure the admin's password hash (PasswordHash; the command's --password-hash-file or CLIPGATE_PASSWORD_HASH)", ErrInvalidConfig)
		}
		return nil
	}
	old, err := c.store.Operator(ctx, c.cfg.AdminName)
	if err == nil && old.PasswordHash == c.cfg.PasswordHash && old.Role == RoleAdmin {
		return nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return c.store.PutOperator(ctx, Operator{Name: c.cfg.AdminName, Role: RoleAdmin, PasswordHash: c.cfg.PasswordHash, Updated: c.cfg.Now()})
}
