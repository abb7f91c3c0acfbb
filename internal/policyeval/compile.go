package policyeval

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clipgate/clipgate/policy"
)

// program is a checked Document in the form Evaluate runs without allocating.
type program struct {
	stmts []cstmt
}

type cstmt struct {
	deny        bool
	notAction   bool // actions are NotAction patterns
	notResource bool // resources are NotResource patterns
	anyResource bool // a trust policy statement: no Resource element
	actions     []pattern
	resources   []pattern
	conds       []ccond
	principals  []cprincipal // nil: anyone (no Principal element)
}

// cprincipal is a compiled Principal entry.
type cprincipal struct {
	typ    string
	anyone bool // "*", or an empty bucket policy list
	ids    []pattern
}

// condKey is a condition key: one the evaluator knows, or keyOther for any other
// well-formed key, which no request carries.
type condKey uint8

const (
	keyOther condKey = iota
	keyCurrentTime
	keySourceIP
	keySecureTransport
	keyUserAgent
	keyAccessID
	keyPrefix
	keyDelimiter
)

// condKeys maps lower-cased key names (keys are case-insensitive) to the keys the
// evaluator knows: RAM's common keys and the ones OSS documents for its actions
// (https://www.alibabacloud.com/help/en/oss/user-guide/ram-policy-overview, "Conditions in
// RAM policies for OSS").
var condKeys = map[string]condKey{
	"acs:currenttime":     keyCurrentTime,
	"acs:sourceip":        keySourceIP,
	"acs:securetransport": keySecureTransport,
	"acs:useragent":       keyUserAgent,
	"acs:accessid":        keyAccessID,
	"oss:prefix":          keyPrefix,
	"oss:delimiter":       keyDelimiter,
}

const knownKeys = "acs:CurrentTime, acs:SourceIp, acs:SecureTransport, acs:UserAgent, acs:AccessId, oss:Prefix, oss:Delimiter"

// opKind is the comparison an operator makes; negated operators share the kind of their
// positive form and set ccond.negate.
type opKind uint8

const (
	opStringEquals opKind = iota + 1
	opStringEqualsIgnoreCase
	opStringLike
	opDateEquals
	opDateLessThan
	opDateLessThanEquals
	opDateGreaterThan
	opDateGreaterThanEquals
	opIPAddress
	opBool
	opNumeric // any Numeric* operator: no known key is numeric, see compileCondition
)

type opInfo struct {
	kind   opKind
	negate bool
}

// operators lists the supported condition operators. Names are case-sensitive, as in RAM.
var operators = map[string]opInfo{
	"StringEquals":              {opStringEquals, false},
	"StringNotEquals":           {opStringEquals, true},
	"StringEqualsIgnoreCase":    {opStringEqualsIgnoreCase, false},
	"StringNotEqualsIgnoreCase": {opStringEqualsIgnoreCase, true},
	"StringLike":                {opStringLike, false},
	"StringNotLike":             {opStringLike, true},
	"DateEquals":                {opDateEquals, false},
	"DateNotEquals":             {opDateEquals, true},
	"DateLessThan":              {opDateLessThan, false},
	"DateLessThanEquals":        {opDateLessThanEquals, false},
	"DateGreaterThan":           {opDateGreaterThan, false},
	"DateGreaterThanEquals":     {opDateGreaterThanEquals, false},
	"IpAddress":                 {opIPAddress, false},
	"NotIpAddress":              {opIPAddress, true},
	"Bool":                      {opBool, false},
	// RAM documents the numeric operators
	// (https://www.alibabacloud.com/help/en/ram/user-guide/policy-elements, "Condition").
	"NumericEquals":            {opNumeric, false},
	"NumericNotEquals":         {opNumeric, true},
	"NumericLessThan":          {opNumeric, false},
	"NumericLessThanEquals":    {opNumeric, false},
	"NumericGreaterThan":       {opNumeric, false},
	"NumericGreaterThanEquals": {opNumeric, false},
}

const knownOperators = "StringEquals, StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase, " +
	"StringLike, StringNotLike, DateEquals, DateNotEquals, DateLessThan, DateLessThanEquals, " +
	"DateGreaterThan, DateGreaterThanEquals, IpAddress, NotIpAddress, Bool, NumericEquals, " +
	"NumericNotEquals, NumericLessThan, NumericLessThanEquals, NumericGreaterThan, NumericGreaterThanEquals"

type ccond struct {
	kind   opKind
	negate bool
	key    condKey
	strs   []string       // string operators (and the text of every value)
	pats   []pattern      // StringLike, StringNotLike
	times  []time.Time    // Date*
	nets   []netip.Prefix // IpAddress, NotIpAddress
	bools  [2]bool        // Bool: bools[1] if "true" is listed, bools[0] if "false"
}

// compile checks doc and builds its program. Errors wrap ErrInvalidPolicy.
func compile(doc *Document) (*program, error) {
	if doc.Kind > TrustPolicy {
		return nil, invalidf("", "unknown document kind %d", doc.Kind)
	}
	if doc.Version != policy.Version {
		return nil, invalidf("Version", "%q is not supported, want \"1\"", truncate(doc.Version))
	}
	if len(doc.Statements) == 0 {
		return nil, invalidf("Statement", "no statements")
	}
	if len(doc.Statements) > MaxStatements {
		return nil, invalidf("Statement", "more than %d statements", MaxStatements)
	}
	prog := &program{stmts: make([]cstmt, len(doc.Statements))}
	for i := range doc.Statements {
		if err := compileStatement(doc.Kind, &doc.Statements[i], &prog.stmts[i], fmt.Sprintf("Statement[%d]", i)); err != nil {
			return nil, err
		}
	}
	return prog, nil
}

func compileStatement(kind Kind, st *Statement, cs *cstmt, path string) error {
	switch st.Effect {
	case Allow:
	case Deny:
		cs.deny = true
	default:
		return invalidf(path+".Effect", "%q is not \"Allow\" or \"Deny\" (case-sensitive)", truncate(string(st.Effect)))
	}
	if err := compilePrincipals(kind, st.Principals, cs, path+".Principal"); err != nil {
		return err
	}
	if kind == BucketPolicy {
		if err := checkBucketPolicyValues(st, path); err != nil {
			return err
		}
	}

	var err error
	var actions []string
	if actions, cs.notAction, err = pick(path, "Action", st.Actions, st.NotActions); err != nil {
		return err
	}
	field := path + ".Action"
	if cs.notAction {
		field = path + ".NotAction"
	}
	cs.actions = make([]pattern, len(actions))
	for i, a := range actions {
		if err := checkAction(a); err != nil {
			return invalidf(fmt.Sprintf("%s[%d]", field, i), "%v", err)
		}
		cs.actions[i] = compilePattern(a, true)
	}

	if kind == TrustPolicy {
		if len(st.Resources) > 0 || len(st.NotResources) > 0 {
			return invalidf(path, "a trust policy statement has no Resource or NotResource (the role is the resource)")
		}
		cs.anyResource = true
	}
	var resources []string
	if !cs.anyResource {
		if resources, cs.notResource, err = pick(path, "Resource", st.Resources, st.NotResources); err != nil {
			return err
		}
	}
	field = path + ".Resource"
	if cs.notResource {
		field = path + ".NotResource"
	}
	cs.resources = make([]pattern, len(resources))
	for i, r := range resources {
		if err := checkResource(r); err != nil {
			return invalidf(fmt.Sprintf("%s[%d]", field, i), "%v", err)
		}
		cs.resources[i] = compilePattern(r, false)
	}

	if len(st.Conditions) > MaxConditions {
		return invalidf(path+".Condition", "more than %d conditions", MaxConditions)
	}
	cs.conds = make([]ccond, len(st.Conditions))
	for i := range st.Conditions {
		c := &st.Conditions[i]
		cpath := fmt.Sprintf("%s.Condition.%s.%s", path, truncate(c.Operator), truncate(c.Key))
		for j := range i {
			if st.Conditions[j].Operator == c.Operator && strings.EqualFold(st.Conditions[j].Key, c.Key) {
				return invalidf(cpath, "key given twice for the same operator")
			}
		}
		if err := compileCondition(c, &cs.conds[i], cpath); err != nil {
			return err
		}
	}
	return nil
}

// compilePrincipals checks a statement's Principal entries against the document kind.
func compilePrincipals(kind Kind, ps []Principal, cs *cstmt, path string) error {
	switch {
	case len(ps) == 0 && kind == TrustPolicy:
		return invalidf(path, "missing (a trust policy names who may assume the role)")
	case len(ps) == 0:
		return nil
	case kind == Identity:
		return invalidf(path, "Principal belongs only in resource-based (bucket or trust) policies, not in a permission or session policy")
	case kind == BucketPolicy && (len(ps) != 1 || ps[0].Type != ""):
		return invalidf(path, "a bucket policy's Principal is one list of IDs, without a type")
	}
	cs.principals = make([]cprincipal, len(ps))
	for i, p := range ps {
		cp := &cs.principals[i]
		cp.typ = p.Type
		if kind == TrustPolicy {
			if !slices.Contains(principalTypes, p.Type) {
				return invalidf(path, "unknown principal type %q (want RAM, Service or Federated)", truncate(p.Type))
			}
			for j := range i {
				if ps[j].Type == p.Type {
					return invalidf(path, "principal type %q given twice", p.Type)
				}
			}
			if len(p.IDs) == 0 {
				return invalidf(path+"."+p.Type, "no principals")
			}
		}
		if len(p.IDs) > MaxValues {
			return invalidf(path, "more than %d values", MaxValues)
		}
		cp.anyone = len(p.IDs) == 0 // an empty bucket policy list is "*", as OSS documents
		for j, id := range p.IDs {
			if id == "" || len(id) > MaxStringLen || strings.IndexFunc(id, isControl) >= 0 {
				return invalidf(fmt.Sprintf("%s[%d]", path, j), "%q is not a principal (1 to %d bytes, no control characters)", truncate(id), MaxStringLen)
			}
			if id == "*" {
				cp.anyone = true
			}
			cp.ids = append(cp.ids, compilePattern(id, false))
		}
	}
	return nil
}

// checkBucketPolicyValues applies OSS's limits on a bucket policy's values: at most
// MaxBucketPolicyField bytes, and no consecutive wildcards "**".
func checkBucketPolicyValues(st *Statement, path string) error {
	check := func(field string, vals []string) error {
		for i, v := range vals {
			if len(v) > MaxBucketPolicyField {
				return fmt.Errorf("policy: %w: %w: %s.%s[%d]: value is %d bytes, a bucket policy allows %d", ErrInvalidPolicy, policy.ErrTooLong, path, field, i, len(v), MaxBucketPolicyField)
			}
			if strings.Contains(v, "**") {
				return invalidf(fmt.Sprintf("%s.%s[%d]", path, field, i), "%q has consecutive wildcards \"**\", which OSS refuses in a bucket policy", truncate(v))
			}
		}
		return nil
	}
	lists := []struct {
		name string
		vals []string
	}{{"Action", st.Actions}, {"NotAction", st.NotActions}, {"Resource", st.Resources}, {"NotResource", st.NotResources}}
	for _, p := range st.Principals {
		lists = append(lists, struct {
			name string
			vals []string
		}{"Principal", p.IDs})
	}
	for _, c := range st.Conditions {
		lists = append(lists, struct {
			name string
			vals []string
		}{"Condition." + c.Operator + "." + c.Key, c.Values})
	}
	for _, l := range lists {
		if err := check(l.name, l.vals); err != nil {
			return err
		}
	}
	return nil
}

// pick returns whichever of the positive and negated lists is set, refusing both or none.
func pick(path, name string, pos, neg []string) (list []string, negated bool, err error) {
	switch {
	case len(pos) > 0 && len(neg) > 0:
		return nil, false, invalidf(path, "has both %s and Not%s", name, name)
	case len(pos) == 0 && len(neg) == 0:
		return nil, false, invalidf(path, "needs %s or Not%s (non-empty)", name, name)
	case len(neg) > 0:
		list, negated = neg, true
	default:
		list = pos
	}
	if len(list) > MaxValues {
		return nil, false, invalidf(path, "more than %d values in %s", MaxValues, name)
	}
	return list, negated, nil
}

// checkAction accepts "*" or "service:action", each part of [A-Za-z0-9_.-] and wildcards.
func checkAction(a string) error {
	if a == "*" {
		return nil
	}
	if len(a) > MaxStringLen {
		return fmt.Errorf("action is %d bytes, limit %d", len(a), MaxStringLen)
	}
	svc, name, ok := strings.Cut(a, ":")
	if !ok || svc == "" || name == "" || !actionChars(svc) || !actionChars(name) {
		return fmt.Errorf("%q is not an action of the form \"service:ActionName\" (letters, digits, _ . - and the wildcards * ?) or \"*\"", truncate(a))
	}
	return nil
}

func actionChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '*' || c == '?') {
			return false
		}
	}
	return true
}

// checkResource accepts "*" or an "acs:" resource name without control characters.
func checkResource(r string) error {
	if r == "*" {
		return nil
	}
	if len(r) > MaxStringLen {
		return fmt.Errorf("resource is %d bytes, limit %d", len(r), MaxStringLen)
	}
	if !strings.HasPrefix(r, "acs:") {
		return fmt.Errorf("%q is not \"*\" or a resource name \"acs:service:region:account:relative-id\"", truncate(r))
	}
	if i := strings.IndexFunc(r, isControl); i >= 0 {
		return fmt.Errorf("%q has a control character at offset %d", truncate(r), i)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 }

func compileCondition(c *Condition, cc *ccond, path string) error {
	op, ok := operators[c.Operator]
	if !ok {
		return invalidf(path, "unknown condition operator %q (supported, case-sensitive: %s)", truncate(c.Operator), knownOperators)
	}
	if err := checkConditionKey(c.Key); err != nil {
		return invalidf(path, "%v", err)
	}
	key := condKeys[strings.ToLower(c.Key)] // keyOther when not known
	cc.kind, cc.negate, cc.key = op.kind, op.negate, key
	if len(c.Values) == 0 {
		return invalidf(path, "no values")
	}
	if len(c.Values) > MaxValues {
		return invalidf(path, "more than %d values", MaxValues)
	}
	// A known key has a type; an operator of another type is refused rather than never
	// matching. Other keys take any operator (their values must still have its form).
	switch op.kind {
	case opDateEquals, opDateLessThan, opDateLessThanEquals, opDateGreaterThan, opDateGreaterThanEquals:
		if key != keyCurrentTime && key != keyOther {
			return invalidf(path, "operator %s compares dates and applies only to acs:CurrentTime", c.Operator)
		}
	case opIPAddress:
		if key != keySourceIP && key != keyOther {
			return invalidf(path, "operator %s compares IP addresses and applies only to acs:SourceIp", c.Operator)
		}
	case opBool:
		if key != keySecureTransport && key != keyOther {
			return invalidf(path, "operator Bool applies only to acs:SecureTransport")
		}
		// RAM's policy check refuses more than one Boolean value for a condition
		// ("Invalid condition multiple Boolean",
		// https://www.alibabacloud.com/help/en/ram/permission-policy-check).
		if len(c.Values) > 1 {
			return invalidf(path, "a Bool condition takes exactly one value, got %d", len(c.Values))
		}
	case opNumeric:
		if key != keyOther {
			return invalidf(path, "operator %s compares numbers and no known key (%s) is a number", c.Operator, knownKeys)
		}
	}
	cc.strs = c.Values
	for i, v := range c.Values {
		vpath := fmt.Sprintf("%s[%d]", path, i)
		if len(v) > MaxStringLen {
			return invalidf(vpath, "value is %d bytes, limit %d", len(v), MaxStringLen)
		}
		switch op.kind {
		case opStringLike:
			cc.pats = append(cc.pats, compilePattern(v, false))
		case opDateEquals, opDateLessThan, opDateLessThanEquals, opDateGreaterThan, opDateGreaterThanEquals:
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return invalidf(vpath, "%q is not an RFC 3339 time such as \"2025-01-02T15:04:05Z\"", truncate(v))
			}
			cc.times = append(cc.times, t)
		case opIPAddress:
			p, err := parseNet(v)
			if err != nil {
				return invalidf(vpath, "%v", err)
			}
			cc.nets = append(cc.nets, p)
		case opBool:
			switch strings.ToLower(v) {
			case "true":
				cc.bools[1] = true
			case "false":
				cc.bools[0] = true
			default:
				return invalidf(vpath, "%q is not true or false", truncate(v))
			}
		case opNumeric:
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				return invalidf(vpath, "%q is not a number", truncate(v))
			}
		}
	}
	return nil
}

// checkConditionKey accepts a key of the form "<service>:<name>", as RAM's policy check
// requires ("Invalid condition key format"): a service code of letters, digits and '-',
// and a name without control characters, such as "oss:Prefix" or
// "oss:ExistingObjectTag/owner".
func checkConditionKey(k string) error {
	svc, name, ok := strings.Cut(k, ":")
	if !ok || svc == "" || name == "" {
		return fmt.Errorf("condition key %q is not of the form \"<service>:<key>\" (known keys: %s)", truncate(k), knownKeys)
	}
	for i := 0; i < len(svc); i++ {
		c := svc[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("condition key %q: the service %q may hold only letters, digits and '-'", truncate(k), truncate(svc))
		}
	}
	if i := strings.IndexFunc(name, isControl); i >= 0 || !utf8.ValidString(name) || len(k) > MaxStringLen {
		return fmt.Errorf("condition key %q has a control character, invalid UTF-8 or more than %d bytes", truncate(k), MaxStringLen)
	}
	return nil
}

// parseNet parses an IPv4 or IPv6 address or CIDR block into a masked prefix.
func parseNet(v string) (netip.Prefix, error) {
	if strings.IndexByte(v, '/') >= 0 {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR block", truncate(v))
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: write IPv4-mapped blocks as IPv4", truncate(v))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR block", truncate(v))
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
