package console

import (
	"time"
)

// Role is what an operator or an API token may do.
type Role string

// The roles. A viewer watches: the fleet, the clips (playing them), the problems. An
// admin also deletes clips, revokes and restores devices, sets and runs retention,
// manages operators and API tokens, and reads the audit log.
const (
	RoleViewer Role = "viewer"
	RoleAdmin  Role = "admin"
)

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleViewer, RoleAdmin:
		return r, nil
	}
	return "", invalidf("role %q: want viewer or admin", truncate(s, 40))
}

// can reports whether the role includes need.
func (r Role) can(need Role) bool {
	return r == RoleAdmin || (r == RoleViewer && need == RoleViewer)
}

// Operator is a person who logs in to the console.
type Operator struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// PasswordHash is the bcrypt hash of the password (never in API answers).
	PasswordHash string    `json:"-"`
	Created      time.Time `json:"created"`
	Updated      time.Time `json:"updated"`
	// Configured marks the operator whose password comes from the console's
	// configuration (Config.PasswordHash): it cannot be changed or removed in the console.
	Configured bool `json:"configured,omitempty"`
}

// APIToken is a bearer token for the JSON API, with a role. The console keeps only the
// SHA-256 of the token, which it shows once, at creation.
type APIToken struct {
	// ID is the token's public part ("cgt_{ID}_{secret}"), which lists and the audit log
	// name it by.
	ID        string    `json:"id"`
	Hash      string    `json:"-"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	CreatedBy string    `json:"createdBy"`
	Created   time.Time `json:"created"`
	// Expires is when the token stops working; zero means never.
	Expires  time.Time `json:"expires,omitzero"`
	LastUsed time.Time `json:"lastUsed,omitzero"`
	// Revoked is when an admin revoked it; zero while it is valid.
	Revoked time.Time `json:"revoked,omitzero"`
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	ID int64     `json:"id"`
	At time.Time `json:"at"`
	// Actor is the operator (or "scheduler" for the console's own retention runs), Role
	// its role then, Via how it authenticated ("session", "token {id}", or empty).
	Actor string `json:"actor"`
	Role  Role   `json:"role,omitempty"`
	Via   string `json:"via,omitempty"`
	// Action is one of the Audit* constants; Target what it acted on (a clip key, a
	// device, an operator, a prefix); Detail the outcome.
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Client is the request's remote address.
	Client string `json:"client,omitempty"`
}

// Audit log actions.
const (
	AuditLogin          = "login"
	AuditLoginFailed    = "login_failed"
	AuditLogout         = "logout"
	AuditPlaybackURL    = "playback_url"
	AuditDeleteClip     = "delete_clip"
	AuditRevoke         = "revoke"
	AuditRestore        = "restore"
	AuditRetentionRun   = "retention_run"
	AuditRetentionRule  = "retention_rule"
	AuditLifecycle      = "lifecycle"
	AuditOperatorPut    = "operator_put"
	AuditOperatorDelete = "operator_delete"
	AuditTokenCreate    = "token_create"
	AuditTokenRevoke    = "token_revoke"
)

// AuditActions lists the actions, for the audit page's filter.
func AuditActions() []string {
	return []string{AuditLogin, AuditLoginFailed, AuditLogout, AuditPlaybackURL, AuditDeleteClip, AuditRevoke, AuditRestore,
		AuditRetentionRun, AuditRetentionRule, AuditLifecycle, AuditOperatorPut, AuditOperatorDelete, AuditTokenCreate, AuditTokenRevoke}
}

// AuditQuery selects audit entries, newest first.
type AuditQuery struct {
	// Action and Actor filter the list when set.
	Action, Actor string
	// After continues a list: only entries with a smaller ID. 0 starts at the newest.
	After int64
	// Limit is the page size, 1 to MaxPageSize.
	Limit int
}

// RetentionRule deletes the clips under Prefix uploaded more than Days days ago, on the
// console's schedule (Config.RetentionEvery) and, with Config.Lifecycle, through an OSS
// lifecycle rule too.
type RetentionRule struct {
	Prefix    string    `json:"prefix"`
	Days      int       `json:"days"`
	UpdatedBy string    `json:"updatedBy"`
	Updated   time.Time `json:"updated"`
	// LastRun, LastObjects and LastError are the outcome of the rule's latest run.
	LastRun     time.Time `json:"lastRun,omitzero"`
	LastObjects int       `json:"lastObjects"`
	LastError   string    `json:"lastError,omitempty"`
}
