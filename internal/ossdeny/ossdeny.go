// Package ossdeny makes a revocation reach OSS. STS credentials cannot be recalled, so
// credentials a device got before its revocation would keep working until they expire;
// but OSS evaluates the bucket policy on every request, and an explicit Deny there beats
// any Allow of the role and session policies. So for each revoked device the bucket policy
// gets a Deny of everything ("oss:*") on its objects (acs:oss:*:*:{bucket}/{prefix}{id}/*)
// for its STS sessions (arn:sts::{uid}:assumed-role/{role}/{id}: the token workers name
// each session after its device), until its last credentials have expired.
//
// Only the device's own sessions are named, so consumers, the console and the reconciler
// keep reading its older clips. A Deny only has to outlive the credentials it blocks:
// after a revocation no new ones are issued, so each entry carries a DateLessThan
// condition on acs:CurrentTime at revocation time + Lifetime (rounded up to a step of
// Lifetime/6), which OSS enforces even if nothing ever removes the entry, and Sync drops
// expired entries to free room. Devices whose entries end within the same step share one
// statement (every listed session is denied on every listed prefix, which is exact:
// a device's credentials reach nothing but its own prefix anyway).
//
// Sync is a read-modify-write (GetBucketPolicy, PutBucketPolicy, or DeleteBucketPolicy
// when nothing is left): statements that are not clipgate's are kept as they are. OSS
// has no conditional write for bucket policies, so another tool editing the policy at the
// same instant can lose its change or ours; the console's periodic Sync restores ours.
//
// Limits (https://www.alibabacloud.com/help/en/oss/user-guide/bucket-policy): a policy is
// at most 16 KB and one value at most 4,095 bytes. A device ID is at most 64 characters,
// so every value fits; an entry costs its principal and resource, about 110 bytes with
// 16-character IDs, and each statement about 200 bytes. When the entries do not fit, Sync
// merges them into one statement that lasts until the latest expiry, and when even that
// does not fit it writes none and returns ErrPolicyFull (the revocation still stops new
// credentials and connections). See the README for how many revocations an hour fit.
package ossdeny

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/policy"
)

// MaxPolicySize is OSS's limit on a bucket policy's size.
const MaxPolicySize = 16 << 10

// ErrPolicyFull is returned by Sync when the revocations in force do not fit in the
// bucket policy beside its other statements.
var ErrPolicyFull = errors.New("ossdeny: the revocations in force do not fit in the bucket policy (16 KB)")

// Revoked is a revoked device and when it was revoked.
type Revoked = identity.Revocation

// Config configures a Writer.
type Config struct {
	// Client is an OSS client whose key may read and write the bucket policy
	// (oss:GetBucketPolicy, oss:PutBucketPolicy, oss:DeleteBucketPolicy on the bucket).
	Client *oss.Client
	// Bucket and Prefix are the clips bucket and the global key prefix ("" or ending
	// in "/").
	Bucket, Prefix string
	// RoleARN is the role the token workers assume, "acs:ram::{uid}:role/{name}".
	RoleARN string
	// Lifetime is the longest lifetime of the credentials the workers issue (their STS
	// duration) plus the time a revocation may take to reach them; a Deny lasts this long
	// after its revocation.
	Lifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Writer keeps the bucket policy's revocation entries. Its methods are not safe for
// concurrent use: the caller serializes them (the console does, under its revocation
// lock).
type Writer struct {
	cfg       Config
	principal string // arn:sts::{uid}:assumed-role/{role}/
	resource  string // acs:oss:*:*:{bucket}/{prefix}
	step      time.Duration
}

// New checks cfg.
func New(cfg Config) (*Writer, error) {
	if cfg.Client == nil {
		return nil, errors.New("ossdeny: Client is required")
	}
	if err := policy.ValidateBucket(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("ossdeny: %w", err)
	}
	if err := policy.ValidatePrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("ossdeny: %w", err)
	}
	uid, role, err := parseRoleARN(cfg.RoleARN)
	if err != nil {
		return nil, err
	}
	if cfg.Lifetime < time.Minute || cfg.Lifetime > 24*time.Hour {
		return nil, fmt.Errorf("ossdeny: Lifetime %v: want 1m to 24h", cfg.Lifetime)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	step := (cfg.Lifetime / 6).Truncate(time.Minute)
	if step < time.Minute {
		step = time.Minute
	}
	return &Writer{
		cfg: cfg,
		// OSS names a role session with the role's name in lower case, as STS's
		// AssumedRoleUser.Arn does.
		principal: "arn:sts::" + uid + ":assumed-role/" + strings.ToLower(role) + "/",
		resource:  "acs:oss:*:*:" + cfg.Bucket + "/" + cfg.Prefix,
		step:      step,
	}, nil
}

// parseRoleARN splits "acs:ram::{uid}:role/{name}".
func parseRoleARN(arn string) (uid, role string, err error) {
	rest, ok := strings.CutPrefix(arn, "acs:ram::")
	if ok {
		uid, role, ok = strings.Cut(rest, ":role/")
	}
	if !ok || uid == "" || role == "" || strings.ContainsAny(uid+role, ":/*\"\\ ") {
		return "", "", fmt.Errorf("ossdeny: RoleARN %q: want acs:ram::{account ID}:role/{role name}", arn)
	}
	return uid, role, nil
}

// statement is a bucket policy statement as clipgate writes it.
type statement struct {
	Effect    string                         `json:"Effect"`
	Principal []string                       `json:"Principal"`
	Action    []string                       `json:"Action"`
	Resource  []string                       `json:"Resource"`
	Condition map[string]map[string][]string `json:"Condition"`
}

const (
	condOp  = "DateLessThan"
	condKey = "acs:CurrentTime"
)

// entries returns the statements Sync writes for revoked at the current time: one per
// expiry step, sorted by expiry, without the expired ones.
func (w *Writer) entries(revoked []Revoked) []statement {
	now := w.cfg.Now()
	groups := map[time.Time][]string{}
	for _, r := range revoked {
		end := r.At.Add(w.cfg.Lifetime)
		if !end.After(now) || deviceid.Validate(r.Device) != nil {
			continue
		}
		// Round up: an entry may last a little longer, never shorter.
		end = end.Truncate(w.step)
		if end.Before(r.At.Add(w.cfg.Lifetime)) {
			end = end.Add(w.step)
		}
		groups[end] = append(groups[end], r.Device)
	}
	ends := make([]time.Time, 0, len(groups))
	for end := range groups {
		ends = append(ends, end)
	}
	slices.SortFunc(ends, time.Time.Compare)
	out := make([]statement, 0, len(ends))
	for _, end := range ends {
		out = append(out, w.statement(groups[end], end))
	}
	return out
}

func (w *Writer) statement(devices []string, end time.Time) statement {
	slices.Sort(devices)
	devices = slices.Compact(devices)
	st := statement{
		Effect:    "Deny",
		Action:    []string{"oss:*"},
		Condition: map[string]map[string][]string{condOp: {condKey: {end.UTC().Format(time.RFC3339)}}},
	}
	for _, d := range devices {
		st.Principal = append(st.Principal, w.principal+d)
		st.Resource = append(st.Resource, w.resource+d+"/*")
	}
	return st
}

// merged returns one statement for all of sts, lasting until the latest expiry.
func (w *Writer) merged(sts []statement) []statement {
	if len(sts) < 2 {
		return sts
	}
	var devices []string
	for _, st := range sts {
		for _, p := range st.Principal {
			devices = append(devices, strings.TrimPrefix(p, w.principal))
		}
	}
	end, _ := time.Parse(time.RFC3339, sts[len(sts)-1].Condition[condOp][condKey][0])
	return []statement{w.statement(devices, end)}
}

// ours reports whether raw is a statement Sync wrote for this bucket, prefix and role:
// exactly the fields and shape of statement, Deny of oss:* for this role's sessions on
// this prefix until a time. Any other statement is the operator's, kept as it is.
func (w *Writer) ours(raw json.RawMessage) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var st statement
	if dec.Decode(&st) != nil || st.Effect != "Deny" || !slices.Equal(st.Action, []string{"oss:*"}) ||
		len(st.Principal) == 0 || len(st.Principal) != len(st.Resource) || len(st.Condition) != 1 ||
		len(st.Condition[condOp]) != 1 || len(st.Condition[condOp][condKey]) != 1 {
		return false
	}
	for i, p := range st.Principal {
		d, ok := strings.CutPrefix(p, w.principal)
		if !ok || st.Resource[i] != w.resource+d+"/*" {
			return false
		}
	}
	return true
}

// document is a bucket policy: its statements as they are, and any other field.
type document struct {
	fields     map[string]json.RawMessage
	statements []json.RawMessage
}

func parseDocument(text string) (*document, error) {
	d := &document{fields: map[string]json.RawMessage{}}
	if text == "" {
		return d, nil
	}
	if err := json.Unmarshal([]byte(text), &d.fields); err != nil {
		return nil, fmt.Errorf("ossdeny: the bucket policy is not a JSON object: %w", err)
	}
	if raw, ok := d.fields["Statement"]; ok {
		if err := json.Unmarshal(raw, &d.statements); err != nil {
			return nil, fmt.Errorf("ossdeny: the bucket policy's Statement is not an array: %w", err)
		}
	}
	return d, nil
}

func (d *document) text(statements []json.RawMessage) ([]byte, error) {
	fields := make(map[string]json.RawMessage, len(d.fields)+2)
	for k, v := range d.fields {
		fields[k] = v
	}
	if _, ok := fields["Version"]; !ok {
		fields["Version"] = json.RawMessage(`"1"`)
	}
	if statements == nil {
		statements = []json.RawMessage{}
	}
	st, err := json.Marshal(statements)
	if err != nil {
		return nil, err
	}
	fields["Statement"] = st
	return json.Marshal(fields) // sorted keys: the same content gives the same text
}

// Result tells what Sync did.
type Result struct {
	// Devices is the number of devices denied now; Statements the number of clipgate
	// statements; Size the policy's size in bytes (0 when it was deleted).
	Devices, Statements, Size int
	// Written reports whether the policy was changed; Merged whether the entries had to
	// be merged into one statement to fit.
	Written, Merged bool
}

// Sync makes the bucket policy's clipgate entries those of revoked (every revoked device
// with its revocation time; restored devices are simply absent) at the current time, and
// leaves other statements as they are. It writes only when something changes.
func (w *Writer) Sync(ctx context.Context, revoked []Revoked) (Result, error) {
	var res Result
	opts := []oss.Option{oss.WithContext(ctx)}
	cur, err := w.cfg.Client.GetBucketPolicy(w.cfg.Bucket, opts...)
	if err != nil {
		var se oss.ServiceError
		if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || se.Code != "NoSuchBucketPolicy" {
			return res, fmt.Errorf("ossdeny: reading the bucket policy: %w", err)
		}
		cur = ""
	}
	doc, err := parseDocument(cur)
	if err != nil {
		return res, err
	}
	var others, old []json.RawMessage
	for _, raw := range doc.statements {
		if w.ours(raw) {
			old = append(old, raw)
		} else {
			others = append(others, raw)
		}
	}
	ours := w.entries(revoked)
	text, err := w.compose(doc, others, ours)
	if err != nil {
		return res, err
	}
	if len(text) > MaxPolicySize {
		ours, res.Merged = w.merged(ours), true
		if text, err = w.compose(doc, others, ours); err != nil {
			return res, err
		}
		if len(text) > MaxPolicySize {
			return res, fmt.Errorf("%w: %d bytes with %d revoked devices", ErrPolicyFull, len(text), countDevices(ours))
		}
	}
	res.Devices, res.Statements = countDevices(ours), len(ours)
	if sameStatements(old, ours) {
		res.Size = len(cur)
		return res, nil
	}
	if len(others) == 0 && len(ours) == 0 && len(doc.fields) <= 2 {
		if err := w.cfg.Client.DeleteBucketPolicy(w.cfg.Bucket, opts...); err != nil {
			return res, fmt.Errorf("ossdeny: deleting the bucket policy: %w", err)
		}
		res.Written = true
		return res, nil
	}
	if err := w.cfg.Client.SetBucketPolicy(w.cfg.Bucket, string(text), opts...); err != nil {
		return res, fmt.Errorf("ossdeny: writing the bucket policy: %w", err)
	}
	res.Written, res.Size = true, len(text)
	return res, nil
}

func (w *Writer) compose(doc *document, others []json.RawMessage, ours []statement) ([]byte, error) {
	all := slices.Clip(others)
	for _, st := range ours {
		raw, err := json.Marshal(st)
		if err != nil {
			return nil, err
		}
		all = append(all, raw)
	}
	return doc.text(all)
}

func countDevices(sts []statement) int {
	n := 0
	for _, st := range sts {
		n += len(st.Principal)
	}
	return n
}

// sameStatements reports whether the clipgate statements in the policy are those of want.
func sameStatements(old []json.RawMessage, want []statement) bool {
	if len(old) != len(want) {
		return false
	}
	for i, raw := range old {
		var st statement
		if json.Unmarshal(raw, &st) != nil {
			return false
		}
		a, _ := json.Marshal(st)
		b, _ := json.Marshal(want[i])
		if !bytes.Equal(a, b) {
			return false
		}
	}
	return true
}
