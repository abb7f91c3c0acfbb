package console

import (
	"net/http"
	"strconv"
	"time"
)

// The admin's API: retention rules, operators, API tokens and the audit log.

type rulesPage struct {
	Rules []RetentionRule `json:"rules"`
	// Every is the interval of the scheduled runs ("" if there are none); Lifecycle
	// says whether the rules are mirrored as the bucket's lifecycle rules.
	Every     string `json:"every,omitempty"`
	Lifecycle bool   `json:"lifecycle"`
}

func (c *Console) apiRetentionRules(w http.ResponseWriter, r *http.Request) {
	rules, err := c.store.RetentionRules(r.Context())
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c.rulesPage(rules))
}

func (c *Console) rulesPage(rules []RetentionRule) rulesPage {
	p := rulesPage{Rules: rules, Lifecycle: c.cfg.Lifecycle}
	if p.Rules == nil {
		p.Rules = []RetentionRule{}
	}
	if c.cfg.RetentionEvery > 0 {
		p.Every = c.cfg.RetentionEvery.String()
	}
	return p
}

// apiPutRetentionRule: PUT {"prefix": ..., "days": ...} sets a prefix's rule.
func (c *Console) apiPutRetentionRule(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Prefix string `json:"prefix"`
		Days   int    `json:"days"`
	}
	if !decodeJSON(w, r, &body) {
		return
	}
	rule, err := c.putRuleBy(r, body.Prefix, body.Days)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rule)
}

// apiDeleteRetentionRule: DELETE ?prefix=... removes a prefix's rule.
func (c *Console) apiDeleteRetentionRule(w http.ResponseWriter, r *http.Request) {
	if err := c.deleteRuleBy(r, r.URL.Query().Get("prefix")); err != nil {
		c.apiError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type rulesRun struct {
	Runs []RuleRun `json:"runs"`
}

// apiRunRetentionRules applies every rule now.
func (c *Console) apiRunRetentionRules(w http.ResponseWriter, r *http.Request) {
	runs, err := c.runRulesBy(r)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rulesRun{Runs: runs})
}

// runRulesBy applies the rules for the request's principal.
func (c *Console) runRulesBy(r *http.Request) ([]RuleRun, error) {
	p := principalFrom(r.Context())
	runs, err := c.RunRetentionRules(r.Context(), AuditEntry{Actor: p.Name, Role: p.Role, Via: p.via(), Client: clientAddr(r)})
	if runs == nil {
		runs = []RuleRun{}
	}
	return runs, err
}

type operatorsPage struct {
	Operators []Operator `json:"operators"`
}

func (c *Console) apiOperators(w http.ResponseWriter, r *http.Request) {
	ops, err := c.operators(r.Context())
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, operatorsPage{Operators: ops})
}

// apiPutOperator: PUT /api/operators/{name} {"role": ..., "password": ...} creates an
// operator or changes its role (and its password, if given).
func (c *Console) apiPutOperator(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Role     Role   `json:"role"`
		Password string `json:"password"`
	}
	if !decodeJSON(w, r, &body) {
		return
	}
	op, err := c.putOperatorBy(r, r.PathValue("name"), body.Role, body.Password)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, op)
}

func (c *Console) apiDeleteOperator(w http.ResponseWriter, r *http.Request) {
	if err := c.deleteOperatorBy(r, r.PathValue("name")); err != nil {
		c.apiError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type tokensPage struct {
	Tokens []APIToken `json:"tokens"`
}

func (c *Console) apiTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := c.store.Tokens(r.Context())
	if err != nil {
		c.apiError(w, err)
		return
	}
	if ts == nil {
		ts = []APIToken{}
	}
	writeJSON(w, http.StatusOK, tokensPage{Tokens: ts})
}

// newToken is POST /api/tokens' answer: the token (shown this once) and its record.
type newTokenAnswer struct {
	Token string    `json:"token"`
	Info  *APIToken `json:"info"`
}

// apiCreateToken: POST {"name": ..., "role": ..., "ttl": "720h"} (ttl optional: until
// revoked).
func (c *Console) apiCreateToken(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name string `json:"name"`
		Role Role   `json:"role"`
		TTL  string `json:"ttl"`
	}
	if !decodeJSON(w, r, &body) {
		return
	}
	var ttl time.Duration
	if body.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(body.TTL); err != nil {
			c.apiError(w, invalidf("ttl %q: want a duration such as 720h", truncate(body.TTL, 40)))
			return
		}
	}
	tok, t, err := c.createTokenBy(r, body.Name, body.Role, ttl)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, newTokenAnswer{Token: tok, Info: t})
}

func (c *Console) apiRevokeToken(w http.ResponseWriter, r *http.Request) {
	if err := c.revokeTokenBy(r, r.PathValue("id")); err != nil {
		c.apiError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type auditPage struct {
	Entries []AuditEntry `json:"entries"`
	// Next is the "after" of the next page; empty at the end.
	Next string `json:"next,omitempty"`
}

// auditQuery reads an audit list's parameters: action, actor, after, limit.
func auditQuery(r *http.Request) (AuditQuery, error) {
	v := r.URL.Query()
	q := AuditQuery{Action: v.Get("action"), Actor: v.Get("actor")}
	if q.Action != "" {
		known := false
		for _, a := range AuditActions() {
			known = known || a == q.Action
		}
		if !known {
			return q, invalidf("action %q: not an audit action", truncate(q.Action, 40))
		}
	}
	if len(q.Actor) > 200 {
		return q, invalidf("actor: too long")
	}
	if s := v.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return q, invalidf("after %q: not a cursor from this console", truncate(s, 40))
		}
		q.After = n
	}
	var err error
	q.Limit, err = parseLimit(v, DefaultPageSize)
	return q, err
}

// listAudit runs q and returns the page and the "after" of the next ("" at the end).
func (c *Console) listAudit(r *http.Request, q AuditQuery) ([]AuditEntry, string, error) {
	want := q.Limit
	q.Limit++
	es, err := c.store.Audit(r.Context(), q)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(es) > want {
		es = es[:want]
		next = strconv.FormatInt(es[want-1].ID, 10)
	}
	return es, next, nil
}

func (c *Console) apiAudit(w http.ResponseWriter, r *http.Request) {
	q, err := auditQuery(r)
	if err != nil {
		c.apiError(w, err)
		return
	}
	es, next, err := c.listAudit(r, q)
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, auditPage{Entries: es, Next: next})
}
