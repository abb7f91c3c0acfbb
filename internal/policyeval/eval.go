package policyeval

import (
	"strings"
	"time"
	"unsafe"
)

// Evaluate decides r against the document: Denied if any Deny statement applies
// (explicit deny wins), else Allowed if any Allow statement applies, else NotApplicable.
// A statement applies when the action matches (Action) or does not (NotAction), the
// resource likewise, and every condition holds. A nil document or request is
// NotApplicable; a hand-built document that does not pass Parse's checks is Denied.
// Documents from Parse evaluate without allocating.
func (d *Document) Evaluate(r *Request) Decision {
	if d == nil || r == nil {
		return NotApplicable
	}
	prog := d.prog
	if prog == nil {
		var err error
		if prog, err = compile(d); err != nil {
			return Denied
		}
	}
	return prog.evaluate(r)
}

// Authorize reports whether every document allows r and none denies it: the RAM rule
// for a request signed with STS credentials (role policy AND session policy). It is
// false with no documents or with a nil one.
func Authorize(r *Request, docs ...*Document) bool {
	if r == nil || len(docs) == 0 {
		return false
	}
	ok := true
	for _, d := range docs {
		switch d.Evaluate(r) {
		case Denied:
			return false
		case NotApplicable:
			ok = false // keep looking: an explicit deny elsewhere is the clearer answer
		}
	}
	return ok
}

func (p *program) evaluate(r *Request) Decision {
	allowed := false
	for i := range p.stmts {
		s := &p.stmts[i]
		if allowed && !s.deny {
			continue // already allowed: only a Deny can change the answer
		}
		if !s.applies(r) {
			continue
		}
		if s.deny {
			return Denied
		}
		allowed = true
	}
	if allowed {
		return Allowed
	}
	return NotApplicable
}

func (s *cstmt) applies(r *Request) bool {
	if anyMatch(s.actions, r.Action) == s.notAction {
		return false
	}
	if !s.anyResource && anyMatch(s.resources, r.Resource) == s.notResource {
		return false
	}
	if s.principals != nil && !s.principalMatches(r.Caller) {
		return false
	}
	for i := range s.conds {
		if !s.conds[i].holds(r) {
			return false
		}
	}
	return true
}

// principalMatches reports whether a Principal entry names the caller. In a bucket
// policy "*" names anyone, even an anonymous (nil) caller; in a trust policy anyone of
// its type. Other IDs match one of the caller's names of the same type.
func (s *cstmt) principalMatches(c *Caller) bool {
	for i := range s.principals {
		p := &s.principals[i]
		if p.anyone && p.typ == "" {
			return true
		}
		if c == nil || p.typ != c.Type {
			continue
		}
		if p.anyone {
			return true
		}
		for _, n := range c.Names {
			if anyMatch(p.ids, n) {
				return true
			}
		}
	}
	return false
}

func anyMatch(pats []pattern, s string) bool {
	for i := range pats {
		if pats[i].match(s) {
			return true
		}
	}
	return false
}

// holds evaluates the condition. A key the request does not carry matches no value, so
// a positive operator fails and a negated one (StringNotEquals, NotIpAddress, ...) holds,
// as in AWS IAM, whose semantics RAM follows; RAM's documentation does not say.
func (c *ccond) holds(r *Request) bool {
	if !carries(c.key, r) {
		return c.negate
	}
	return c.matchAny(r) != c.negate
}

// carries reports whether the request has a value for the key.
func carries(k condKey, r *Request) bool {
	switch k {
	case keyCurrentTime:
		return !r.CurrentTime.IsZero()
	case keySourceIP:
		return r.SourceIP.IsValid()
	case keySecureTransport:
		return true
	case keyUserAgent:
		return r.UserAgent != ""
	case keyAccessID:
		return r.AccessKeyID != ""
	case keyPrefix, keyDelimiter:
		return r.Listing
	}
	return false // keyOther: a key this evaluator does not supply
}

// matchAny reports whether the request's value for the key matches any of the values.
func (c *ccond) matchAny(r *Request) bool {
	switch c.kind {
	case opBool:
		if r.SecureTransport {
			return c.bools[1]
		}
		return c.bools[0]
	case opIPAddress:
		a := r.SourceIP.WithZone("").Unmap()
		for _, n := range c.nets {
			if n.Contains(a) {
				return true
			}
		}
		return false
	case opDateEquals, opDateLessThan, opDateLessThanEquals, opDateGreaterThan, opDateGreaterThanEquals:
		for _, t := range c.times {
			if dateHolds(c.kind, r.CurrentTime.Compare(t)) {
				return true
			}
		}
		return false
	case opNumeric:
		return false // only keys no request carries take numeric operators (compileCondition)
	}

	// String operators compare the key's text form; buf keeps it on the stack.
	var buf [64]byte
	text := keyText(c.key, r, &buf)
	switch c.kind {
	case opStringEquals:
		for _, v := range c.strs {
			if v == text {
				return true
			}
		}
	case opStringEqualsIgnoreCase:
		for _, v := range c.strs {
			if strings.EqualFold(v, text) {
				return true
			}
		}
	case opStringLike:
		return anyMatch(c.pats, text)
	}
	return false
}

// dateHolds applies a date operator to the result of comparing the request time with a value.
func dateHolds(k opKind, cmp int) bool {
	switch k {
	case opDateEquals:
		return cmp == 0
	case opDateLessThan:
		return cmp < 0
	case opDateLessThanEquals:
		return cmp <= 0
	case opDateGreaterThan:
		return cmp > 0
	case opDateGreaterThanEquals:
		return cmp >= 0
	}
	return false
}

// keyText returns the text string operators see for a key: acs:CurrentTime in RFC 3339,
// UTC, whole seconds ("2025-01-02T15:04:05Z"); acs:SourceIp in its canonical form
// (IPv4-mapped addresses as IPv4, no zone); acs:SecureTransport as "true" or "false";
// the others as the request gives them.
// The result may point into buf and must not outlive it.
func keyText(k condKey, r *Request, buf *[64]byte) string {
	var b []byte
	switch k {
	case keyCurrentTime:
		b = r.CurrentTime.UTC().AppendFormat(buf[:0], time.RFC3339)
	case keySourceIP:
		b = r.SourceIP.WithZone("").Unmap().AppendTo(buf[:0])
	case keySecureTransport:
		if r.SecureTransport {
			return "true"
		}
		return "false"
	case keyUserAgent:
		return r.UserAgent
	case keyAccessID:
		return r.AccessKeyID
	case keyPrefix:
		return r.Prefix
	case keyDelimiter:
		return r.Delimiter
	}
	if len(b) == 0 {
		return ""
	}
	// A string view of the bytes, without copying: b is not modified while the string
	// is in use, and the string is only compared, never kept.
	return unsafe.String(&b[0], len(b))
}
