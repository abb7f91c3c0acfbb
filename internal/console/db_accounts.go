package console

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"strconv"
	"time"
)

// The SQL of operators, tokens, the audit log, retention rules and timelines: the same
// for both dialects.
const (
	qOperator    = "SELECT name, password_hash, role, created_at, updated_at FROM operators WHERE name = $1"
	qOperators   = "SELECT name, role, created_at, updated_at FROM operators ORDER BY name"
	qPutOperator = "INSERT INTO operators (name, password_hash, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) " +
		"ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role, updated_at = excluded.updated_at"
	qOperatorHash   = "SELECT password_hash FROM operators WHERE name = $1"
	qSetRole        = "UPDATE operators SET role = $2, updated_at = $3 WHERE name = $1"
	qDeleteOperator = "DELETE FROM operators WHERE name = $1"

	tokenColumns = "id, hash, name, role, created_by, created_at, expires_at, last_used_at, revoked_at"
	qCreateToken = "INSERT INTO api_tokens (id, hash, name, role, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
	qToken       = "SELECT " + tokenColumns + " FROM api_tokens WHERE id = $1"
	qTokens      = "SELECT " + tokenColumns + " FROM api_tokens ORDER BY created_at DESC, id"
	qRevokeToken = "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL"
	qTouchToken  = "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1"

	auditColumns = "id, at, actor, role, via, action, target, detail, client"
	qAddAudit    = "INSERT INTO audit_log (at, actor, role, via, action, target, detail, client) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
	qPruneAudit  = "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 LIMIT $2)"

	ruleColumns = "prefix, days, updated_by, updated_at, last_run_at, last_objects, last_error"
	qRules      = "SELECT " + ruleColumns + " FROM retention_rules ORDER BY prefix"
	qPutRule    = "INSERT INTO retention_rules (prefix, days, updated_by, updated_at) VALUES ($1, $2, $3, $4) " +
		"ON CONFLICT (prefix) DO UPDATE SET days = excluded.days, updated_by = excluded.updated_by, updated_at = excluded.updated_at"
	qDeleteRule = "DELETE FROM retention_rules WHERE prefix = $1"
	qRuleRun    = "UPDATE retention_rules SET last_run_at = $2, last_objects = $3, last_error = $4 WHERE prefix = $1"
)

// maxAuditText bounds the stored target and detail of an audit entry.
const maxAuditText = 2000

// Operator implements Store.
func (d *DB) Operator(ctx context.Context, name string) (*Operator, error) {
	var op Operator
	var created, updated int64
	err := d.r.QueryRowContext(ctx, qOperator, name).Scan(&op.Name, &op.PasswordHash, &op.Role, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	op.Created, op.Updated = fromUS(created), fromUS(updated)
	return &op, nil
}

// Operators implements Store.
func (d *DB) Operators(ctx context.Context) ([]Operator, error) {
	rows, err := d.r.QueryContext(ctx, qOperators)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ops []Operator
	for rows.Next() {
		var op Operator
		var created, updated int64
		if err := rows.Scan(&op.Name, &op.Role, &created, &updated); err != nil {
			return nil, err
		}
		op.Created, op.Updated = fromUS(created), fromUS(updated)
		ops = append(ops, op)
	}
	return ops, rows.Err()
}

// PutOperator implements Store.
func (d *DB) PutOperator(ctx context.Context, op Operator) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var old string
	err = tx.QueryRowContext(ctx, qOperatorHash, op.Name).Scan(&old)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	at := op.Updated
	if at.IsZero() {
		at = time.Now()
	}
	if _, err := tx.ExecContext(ctx, qPutOperator, op.Name, op.PasswordHash, string(op.Role), us(at)); err != nil {
		return err
	}
	if old != "" && old != op.PasswordHash {
		if _, err := tx.ExecContext(ctx, d.q.deleteOperatorSessions, op.Name); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// SetOperatorRole implements Store.
func (d *DB) SetOperatorRole(ctx context.Context, name string, role Role, at time.Time) error {
	return d.execOne(ctx, qSetRole, name, string(role), us(at))
}

// DeleteOperator implements Store.
func (d *DB) DeleteOperator(ctx context.Context, name string) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, qDeleteOperator, name)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return ErrNotFound
	}
	if _, err := tx.ExecContext(ctx, d.q.deleteOperatorSessions, name); err != nil {
		return err
	}
	return tx.Commit()
}

// execOne runs a statement that must change one row; none is ErrNotFound.
func (d *DB) execOne(ctx context.Context, query string, args ...any) error {
	res, err := d.w.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err == nil && n == 0 {
		return ErrNotFound
	}
	return err
}

func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: us(t), Valid: true}
}

func scanToken(s scanner) (APIToken, error) {
	var t APIToken
	var created int64
	var expires, used, revoked sql.NullInt64
	err := s.Scan(&t.ID, &t.Hash, &t.Name, &t.Role, &t.CreatedBy, &created, &expires, &used, &revoked)
	t.Created, t.Expires, t.LastUsed, t.Revoked = fromUS(created), nullUS(expires), nullUS(used), nullUS(revoked)
	return t, err
}

// CreateToken implements Store.
func (d *DB) CreateToken(ctx context.Context, t APIToken) error {
	_, err := d.w.ExecContext(ctx, qCreateToken, t.ID, t.Hash, t.Name, string(t.Role), t.CreatedBy, us(t.Created), nullTime(t.Expires))
	return err
}

// Token implements Store.
func (d *DB) Token(ctx context.Context, id string) (*APIToken, error) {
	t, err := scanToken(d.r.QueryRowContext(ctx, qToken, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// Tokens implements Store.
func (d *DB) Tokens(ctx context.Context) ([]APIToken, error) {
	rows, err := d.r.QueryContext(ctx, qTokens)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []APIToken
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		t.Hash = ""
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken implements Store.
func (d *DB) RevokeToken(ctx context.Context, id string, at time.Time) error {
	return d.execOne(ctx, qRevokeToken, id, us(at))
}

// TouchToken implements Store.
func (d *DB) TouchToken(ctx context.Context, id string, at time.Time) error {
	_, err := d.w.ExecContext(ctx, qTouchToken, id, us(at))
	return err
}

// AddAudit implements Store.
func (d *DB) AddAudit(ctx context.Context, a AuditEntry) error {
	_, err := d.w.ExecContext(ctx, qAddAudit, us(a.At), truncate(a.Actor, 200), string(a.Role), truncate(a.Via, 200), a.Action,
		truncate(a.Target, maxAuditText), truncate(a.Detail, maxAuditText), truncate(a.Client, 100))
	return err
}

// Audit implements Store.
func (d *DB) Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	after := q.After
	if after <= 0 {
		after = math.MaxInt64
	}
	query := "SELECT " + auditColumns + " FROM audit_log WHERE id < $1"
	args := []any{after, q.Limit}
	if q.Action != "" {
		args = append(args, q.Action)
		query += " AND action = $3"
	}
	if q.Actor != "" {
		args = append(args, q.Actor)
		query += " AND actor = $" + strconv.Itoa(len(args))
	}
	rows, err := d.r.QueryContext(ctx, query+" ORDER BY id DESC LIMIT $2", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]AuditEntry, 0, min(q.Limit, 256))
	for rows.Next() {
		var a AuditEntry
		var at int64
		if err := rows.Scan(&a.ID, &at, &a.Actor, &a.Role, &a.Via, &a.Action, &a.Target, &a.Detail, &a.Client); err != nil {
			return nil, err
		}
		a.At = fromUS(at)
		out = append(out, a)
	}
	return out, rows.Err()
}

// PruneAudit implements Store.
func (d *DB) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	return d.pruneBatches(ctx, qPruneAudit, before)
}

// RetentionRules implements Store.
func (d *DB) RetentionRules(ctx context.Context) ([]RetentionRule, error) {
	// From the writer: the scheduler and the pages must see a change just made.
	rows, err := d.w.QueryContext(ctx, qRules)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RetentionRule
	for rows.Next() {
		var r RetentionRule
		var updated int64
		var lastRun sql.NullInt64
		if err := rows.Scan(&r.Prefix, &r.Days, &r.UpdatedBy, &updated, &lastRun, &r.LastObjects, &r.LastError); err != nil {
			return nil, err
		}
		r.Updated, r.LastRun = fromUS(updated), nullUS(lastRun)
		out = append(out, r)
	}
	return out, rows.Err()
}

// PutRetentionRule implements Store.
func (d *DB) PutRetentionRule(ctx context.Context, r RetentionRule) error {
	_, err := d.w.ExecContext(ctx, qPutRule, r.Prefix, r.Days, r.UpdatedBy, us(r.Updated))
	return err
}

// DeleteRetentionRule implements Store.
func (d *DB) DeleteRetentionRule(ctx context.Context, prefix string) error {
	return d.execOne(ctx, qDeleteRule, prefix)
}

// RecordRetentionRun implements Store.
func (d *DB) RecordRetentionRun(ctx context.Context, prefix string, at time.Time, objects int, errText string) error {
	_, err := d.w.ExecContext(ctx, qRuleRun, prefix, us(at), objects, truncate(errText, maxProblemText))
	return err
}

// Timeline implements Store.
func (d *DB) Timeline(ctx context.Context, device string, from, to time.Time, step time.Duration) ([]TimelineSlot, error) {
	stepUS := step.Microseconds()
	if stepUS <= 0 {
		return nil, invalidf("timeline step %v", step)
	}
	var rows *sql.Rows
	var err error
	if device != "" {
		rows, err = d.r.QueryContext(ctx, d.q.timelineDevice, us(from), us(to), stepUS, device)
	} else {
		rows, err = d.r.QueryContext(ctx, d.q.timelineAll, us(from), us(to), stepUS)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TimelineSlot
	for rows.Next() {
		var slot int64
		var s TimelineSlot
		if err := rows.Scan(&slot, &s.Clips, &s.Bytes, &s.RecordedMS); err != nil {
			return nil, err
		}
		s.Start = from.Add(time.Duration(slot) * step).UTC()
		out = append(out, s)
	}
	return out, rows.Err()
}

// Totals implements Store.
func (d *DB) Totals(ctx context.Context) (Totals, error) {
	var t Totals
	err := d.r.QueryRowContext(ctx, d.q.totals).Scan(&t.Devices, &t.Clips, &t.Bytes)
	return t, err
}
