package localcloud

// OSS request signatures, verified as Alibaba Cloud defines them and as the official SDKs
// (aliyun-oss-go-sdk v3, alibabacloud-oss-go-sdk-v2) compute them:
//
//	V1  Authorization: OSS AK:base64(HMAC-SHA1(secret, VERB\nContent-MD5\nContent-Type\nDate\n
//	    x-oss-headers + /bucket/key?signed-subresources))
//	    signed URL: OSSAccessKeyId, Expires (the Date line), Signature, security-token
//	V2  Authorization: OSS2 AccessKeyId:AK,AdditionalHeaders:h1;h2,Signature:base64(HMAC-SHA256(...))
//	    with the resource URL-encoded and every query parameter signed
//	    signed URL: x-oss-signature-version=OSS2, x-oss-access-key-id, x-oss-expires, x-oss-signature
//	V4  Authorization: OSS4-HMAC-SHA256 Credential=AK/yyyymmdd/region/oss/aliyun_v4_request,
//	    [AdditionalHeaders=h1;h2,]Signature=hex(HMAC-SHA256(derived key, string to sign))
//	    signed URL: x-oss-signature-version, x-oss-credential, x-oss-date, x-oss-expires,
//	    x-oss-signature, [x-oss-additional-headers, x-oss-security-token]

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	maxSkew          = 15 * time.Minute
	maxV4URLExpiry   = 7 * 24 * 3600 // seconds
	unsignedPayload  = "UNSIGNED-PAYLOAD"
	v4Algorithm      = "OSS4-HMAC-SHA256"
	v4Terminator     = "aliyun_v4_request"
	v4Product        = "oss"
	iso8601Basic     = "20060102T150405Z"
	iso8601BasicDate = "20060102"
)

// v1SubResources are the query parameters that V1 signatures cover (the union of what the
// two Go SDKs sign; aliyun-oss-go-sdk-v2 also signs every parameter starting with x-oss-).
var v1SubResources = func() map[string]bool {
	m := make(map[string]bool)
	for _, k := range strings.Fields(`acl uploads location cors logging website referer lifecycle
		delete append tagging objectMeta uploadId partNumber security-token position img style
		styleName replication replicationProgress replicationLocation cname bucketInfo comp qos
		live status vod startTime endTime symlink x-oss-process response-content-type
		x-oss-traffic-limit response-content-language response-expires response-cache-control
		response-content-disposition response-content-encoding udf udfName udfImage udfId
		udfImageDesc udfApplication udfApplicationLog restore callback callback-var qosInfo policy
		stat encryption versions versioning versionId requestPayment x-oss-request-payer sequential
		inventory inventoryId continuation-token asyncFetch worm wormId wormExtend withHashContext
		x-oss-enable-md5 x-oss-enable-sha1 x-oss-enable-sha256 x-oss-hash-ctx x-oss-md5-ctx
		transferAcceleration regionList cloudboxes x-oss-ac-source-ip x-oss-ac-subnet-mask
		x-oss-ac-vpc-id x-oss-ac-forward-allow metaQuery resourceGroup rtc x-oss-async-process
		responseHeader`) {
		m[k] = true
	}
	return m
}()

// sigInfo is what a request's signature claims.
type sigInfo struct {
	version     int  // 1, 2 or 4
	presigned   bool // query-string authentication
	accessKeyID string
	signature   string
	token       string
	additional  []string // V2/V4 additional signed headers, lower case, as listed
	dateLine    string   // the date as it enters the string to sign
	scopeDay    string   // V4
	payloadHash string   // V4 x-oss-content-sha256 when not UNSIGNED-PAYLOAD (lower-case hex)
}

func errAuth(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

var (
	errAnonymous = errAuth(http.StatusForbidden, "AccessDenied", "You have no right to access this object because of bucket acl.")
	// Expired signed URLs: https://www.alibabacloud.com/help/en/oss/support/0002-00000069
	// (V1 Expires, V2 x-oss-expires) and .../0002-00000236 (V4 x-oss-date + x-oss-expires).
	errExpired   = &Error{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Request has expired.", EC: "0002-00000069"}
	errExpiredV4 = &Error{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Request has expired.", EC: "0002-00000236"}
	errSkewed    = errAuth(http.StatusForbidden, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
	errNoDate    = errAuth(http.StatusForbidden, "AccessDenied", "OSS authentication requires a valid Date or x-oss-date header.")
)

func errBadAuth(msg string) *Error {
	return errAuth(http.StatusBadRequest, "InvalidArgument", msg)
}

// parseSig extracts the signature of r (header or query), checking formats, the region and
// the request's time against now. It returns errAnonymous for an unsigned request.
func parseSig(r *http.Request, q url.Values, region string, now time.Time) (*sigInfo, *Error) {
	auth := r.Header.Get("Authorization")
	qv := q.Get("x-oss-signature-version")
	qv1 := q.Has("OSSAccessKeyId") || q.Has("Signature")
	if auth != "" && (qv != "" || qv1) {
		return nil, errBadAuth("Only one auth mechanism allowed; only the Authorization header or the query string may carry a signature.")
	}
	switch {
	case auth != "":
		return parseSigHeader(r, auth, region, now)
	case qv == v4Algorithm:
		return parseSigQueryV4(q, region, now)
	case qv == "OSS2":
		return parseSigQueryV2(q, now)
	case qv != "":
		return nil, errBadAuth("Unsupported x-oss-signature-version " + strconv.Quote(qv) + ".")
	case qv1:
		return parseSigQueryV1(q, now)
	}
	return nil, errAnonymous
}

func parseSigHeader(r *http.Request, auth, region string, now time.Time) (*sigInfo, *Error) {
	scheme, rest, _ := strings.Cut(auth, " ")
	s := &sigInfo{}
	switch scheme {
	case "OSS":
		ak, sig, ok := strings.Cut(strings.TrimSpace(rest), ":")
		if !ok || ak == "" || sig == "" {
			return nil, errBadAuth("Authorization header is invalid: expected \"OSS AccessKeyId:Signature\".")
		}
		s.version, s.accessKeyID, s.signature = 1, ak, sig
	case "OSS2":
		fields, err := authFields(rest, ':', "AccessKeyId", "AdditionalHeaders", "Signature")
		if err != nil {
			return nil, err
		}
		s.version, s.accessKeyID, s.signature = 2, fields[0], fields[2]
		s.additional = splitHeaderList(fields[1])
	case v4Algorithm:
		fields, err := authFields(rest, '=', "Credential", "AdditionalHeaders", "Signature")
		if err != nil {
			return nil, err
		}
		s.version, s.signature = 4, fields[2]
		s.additional = splitHeaderList(fields[1])
		if s.accessKeyID, s.scopeDay, err = parseCredential(fields[0], region); err != nil {
			return nil, err
		}
		if err := s.readPayloadHash(r.Header.Get("x-oss-content-sha256")); err != nil {
			return nil, err
		}
	default:
		return nil, errBadAuth("Authorization header is invalid: unknown scheme " + strconv.Quote(scheme) + ".")
	}
	s.token = r.Header.Get("x-oss-security-token")

	// The request time: x-oss-date when present (ISO 8601 basic for V4, an HTTP date
	// otherwise), else Date.
	var t time.Time
	var err error
	if d := r.Header.Get("x-oss-date"); d != "" {
		s.dateLine = d
		if t, err = time.Parse(iso8601Basic, d); err != nil {
			t, err = http.ParseTime(d)
		}
	} else if d := r.Header.Get("Date"); d != "" {
		s.dateLine = d
		t, err = http.ParseTime(d)
	} else {
		return nil, errNoDate
	}
	if err != nil {
		return nil, errNoDate
	}
	if t.Sub(now).Abs() > maxSkew {
		return nil, errSkewed
	}
	if s.version == 4 && t.UTC().Format(iso8601BasicDate) != s.scopeDay {
		return nil, errBadAuth("Invalid signing date in Authorization header: the credential scope date " + s.scopeDay + " is not the request date.")
	}
	return s, nil
}

// authFields parses "Name<sep>value,Name<sep>value" against the allowed names (in order);
// all but the second (AdditionalHeaders) are required.
func authFields(s string, sep byte, names ...string) ([]string, *Error) {
	out := make([]string, len(names))
	seen := make([]bool, len(names))
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		k, v, ok := strings.Cut(item, string(sep))
		i := slices.Index(names, k)
		if !ok || i < 0 || seen[i] {
			return nil, errBadAuth("Authorization header is invalid near " + strconv.Quote(truncate(item, 64)) + ".")
		}
		out[i], seen[i] = v, true
	}
	for i, name := range names {
		if i != 1 && out[i] == "" {
			return nil, errBadAuth("Authorization header is invalid: " + name + " is missing.")
		}
	}
	return out, nil
}

// parseCredential parses AK/yyyymmdd/region/oss/aliyun_v4_request.
func parseCredential(c, region string) (ak, day string, e *Error) {
	parts := strings.Split(c, "/")
	if len(parts) != 5 || parts[0] == "" || parts[4] != v4Terminator || parts[3] != v4Product {
		return "", "", errBadAuth("Invalid credential: expected AccessKeyId/yyyymmdd/region/oss/aliyun_v4_request.")
	}
	if _, err := time.Parse(iso8601BasicDate, parts[1]); err != nil {
		return "", "", errBadAuth("Invalid credential date " + strconv.Quote(parts[1]) + ".")
	}
	if parts[2] != region {
		return "", "", errBadAuth("Invalid signing region in Authorization header: " + strconv.Quote(parts[2]) + ", expected " + strconv.Quote(region) + ".")
	}
	return parts[0], parts[1], nil
}

func (s *sigInfo) readPayloadHash(v string) *Error {
	if v == "" || v == unsignedPayload {
		return nil
	}
	if len(v) != 64 {
		return errBadAuth("x-oss-content-sha256 must be UNSIGNED-PAYLOAD or a hex SHA-256.")
	}
	if _, err := hex.DecodeString(v); err != nil {
		return errBadAuth("x-oss-content-sha256 must be UNSIGNED-PAYLOAD or a hex SHA-256.")
	}
	s.payloadHash = strings.ToLower(v)
	return nil
}

func splitHeaderList(s string) []string {
	if s == "" {
		return nil
	}
	out := strings.Split(strings.ToLower(s), ";")
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}

func parseSigQueryV1(q url.Values, now time.Time) (*sigInfo, *Error) {
	s := &sigInfo{version: 1, presigned: true,
		accessKeyID: q.Get("OSSAccessKeyId"), signature: q.Get("Signature"),
		token: q.Get("security-token"), dateLine: q.Get("Expires")}
	if s.accessKeyID == "" || s.signature == "" || s.dateLine == "" {
		return nil, errAuth(http.StatusForbidden, "AccessDenied", "A signed URL needs OSSAccessKeyId, Expires and Signature.")
	}
	exp, err := strconv.ParseInt(s.dateLine, 10, 64)
	if err != nil {
		return nil, errAuth(http.StatusForbidden, "AccessDenied", "Expires must be a Unix time in seconds.")
	}
	if now.Unix() > exp {
		return nil, errExpired
	}
	return s, nil
}

func parseSigQueryV2(q url.Values, now time.Time) (*sigInfo, *Error) {
	s := &sigInfo{version: 2, presigned: true,
		accessKeyID: q.Get("x-oss-access-key-id"), signature: q.Get("x-oss-signature"),
		token: q.Get("security-token"), dateLine: q.Get("x-oss-expires"),
		additional: splitHeaderList(q.Get("x-oss-additional-headers"))}
	if s.accessKeyID == "" || s.signature == "" || s.dateLine == "" {
		return nil, errAuth(http.StatusForbidden, "AccessDenied", "A V2 signed URL needs x-oss-access-key-id, x-oss-expires and x-oss-signature.")
	}
	exp, err := strconv.ParseInt(s.dateLine, 10, 64)
	if err != nil {
		return nil, errAuth(http.StatusForbidden, "AccessDenied", "x-oss-expires must be a Unix time in seconds.")
	}
	if now.Unix() > exp {
		return nil, errExpired
	}
	return s, nil
}

func parseSigQueryV4(q url.Values, region string, now time.Time) (*sigInfo, *Error) {
	s := &sigInfo{version: 4, presigned: true,
		signature: q.Get("x-oss-signature"), token: q.Get("x-oss-security-token"),
		dateLine:   q.Get("x-oss-date"),
		additional: splitHeaderList(q.Get("x-oss-additional-headers"))}
	cred, expires := q.Get("x-oss-credential"), q.Get("x-oss-expires")
	if s.signature == "" || s.dateLine == "" || cred == "" || expires == "" {
		return nil, errAuth(http.StatusForbidden, "AccessDenied", "A V4 signed URL needs x-oss-credential, x-oss-date, x-oss-expires and x-oss-signature.")
	}
	var err *Error
	if s.accessKeyID, s.scopeDay, err = parseCredential(cred, region); err != nil {
		return nil, err
	}
	t, perr := time.Parse(iso8601Basic, s.dateLine)
	if perr != nil {
		return nil, errBadAuth("x-oss-date must be in the form 20060102T150405Z.")
	}
	if t.Format(iso8601BasicDate) != s.scopeDay {
		return nil, errBadAuth("Invalid signing date: the credential scope date " + s.scopeDay + " is not x-oss-date.")
	}
	exp, perr := strconv.ParseInt(expires, 10, 64)
	if perr != nil || exp <= 0 || exp > maxV4URLExpiry {
		return nil, errBadAuth("x-oss-expires must be a number of seconds from 1 to 604800.")
	}
	if t.Sub(now) > maxSkew {
		return nil, errSkewed
	}
	if now.After(t.Add(time.Duration(exp) * time.Second)) {
		return nil, errExpiredV4
	}
	return s, nil
}

// sigTarget is what a signature covers besides headers: the bucket ("" for the service),
// the decoded object key and the query.
type sigTarget struct {
	bucket, key string
	query       url.Values
	region      string // the server's region (V4 scope; parseCredential checked the client's)
}

// verify checks s against the secret; on a mismatch it returns SignatureDoesNotMatch with
// the string to sign (and the canonical request for V4), as OSS does, to help clients debug.
func (s *sigInfo) verify(r *http.Request, t *sigTarget, secret string) error {
	switch s.version {
	case 1:
		// Both SDKs sign the listed sub-resources; aliyun-oss-go-sdk-v2 also signs any other
		// x-oss-* parameter. Try the second reading only when it differs.
		sts := v1StringToSign(r, t, s.dateLine, true)
		if s.matches(hmacB64(sha1.New, secret, sts)) {
			return nil
		}
		if hasUnlistedOSSParam(t.query) {
			if alt := v1StringToSign(r, t, s.dateLine, false); s.matches(hmacB64(sha1.New, secret, alt)) {
				return nil
			}
		}
		return sigMismatch(s, sts, "")
	case 2:
		sts := v2StringToSign(r, t, s)
		if s.matches(hmacB64(sha256.New, secret, sts)) {
			return nil
		}
		return sigMismatch(s, sts, "")
	default:
		cr := v4CanonicalRequest(r, t, s)
		sum := sha256.Sum256([]byte(cr))
		scope := s.scopeDay + "/" + t.region + "/" + v4Product + "/" + v4Terminator
		sts := v4Algorithm + "\n" + s.dateLine + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
		key := hmacSum(sha256.New, []byte("aliyun_v4"+secret), s.scopeDay)
		key = hmacSum(sha256.New, key, t.region)
		key = hmacSum(sha256.New, key, v4Product)
		key = hmacSum(sha256.New, key, v4Terminator)
		if s.matches(hex.EncodeToString(hmacSum(sha256.New, key, sts))) {
			return nil
		}
		return sigMismatch(s, sts, cr)
	}
}

func (s *sigInfo) matches(expected string) bool {
	return subtle.ConstantTimeCompare([]byte(expected), []byte(s.signature)) == 1
}

func sigMismatch(s *sigInfo, sts, canonical string) error {
	return &detailedError{
		e: &Error{Status: http.StatusForbidden, Code: "SignatureDoesNotMatch",
			Message: "The request signature we calculated does not match the signature you provided. Check your key and signing method."},
		fields: []xmlField{
			{"OSSAccessKeyId", s.accessKeyID},
			{"SignatureProvided", s.signature},
			{"StringToSign", sts},
			{"CanonicalRequest", canonical},
		},
	}
}

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func hmacB64(h func() hash.Hash, secret, msg string) string {
	return base64.StdEncoding.EncodeToString(hmacSum(h, []byte(secret), msg))
}

// headerValue is the canonical value of a header: its values trimmed and joined with ",".
func headerValue(r *http.Request, lower string) string {
	if lower == "host" {
		return r.Host
	}
	vs := r.Header.Values(lower)
	if len(vs) == 1 {
		return strings.TrimSpace(vs[0])
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.TrimSpace(v)
	}
	return strings.Join(out, ",")
}

// canonicalHeaders writes "name:value\n" for each header that include selects, sorted.
func canonicalHeaders(b *strings.Builder, r *http.Request, include func(lower string) bool, extra []string) {
	names := make([]string, 0, 8)
	for k := range r.Header {
		if l := strings.ToLower(k); include(l) {
			names = append(names, l)
		}
	}
	for _, l := range extra {
		if !include(l) && !slices.Contains(names, l) && (l == "host" || r.Header.Get(l) != "") {
			names = append(names, l)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(':')
		b.WriteString(headerValue(r, n))
		b.WriteByte('\n')
	}
}

func isOSSHeader(l string) bool { return strings.HasPrefix(l, "x-oss-") }

func v1StringToSign(r *http.Request, t *sigTarget, dateLine string, allOSSParams bool) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n" + r.Header.Get("Content-MD5") + "\n" + r.Header.Get("Content-Type") + "\n" + dateLine + "\n")
	canonicalHeaders(&b, r, isOSSHeader, nil)
	b.WriteByte('/')
	if t.bucket != "" {
		b.WriteString(t.bucket + "/" + t.key)
	}
	var keys []string
	for k := range t.query {
		if v1SubResources[k] || (allOSSParams && isOSSHeader(k)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(k)
		if v := t.query.Get(k); v != "" {
			b.WriteString("=" + v)
		}
	}
	return b.String()
}

func hasUnlistedOSSParam(q url.Values) bool {
	for k := range q {
		if isOSSHeader(k) && !v1SubResources[k] {
			return true
		}
	}
	return false
}

func v2StringToSign(r *http.Request, t *sigTarget, s *sigInfo) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n" + r.Header.Get("Content-MD5") + "\n" + r.Header.Get("Content-Type") + "\n" + s.dateLine + "\n")
	canonicalHeaders(&b, r, isOSSHeader, s.additional)
	b.WriteString(strings.Join(s.additional, ";") + "\n")
	if t.bucket == "" {
		b.WriteString("%2F")
	} else {
		b.WriteString(url.QueryEscape("/"+t.bucket+"/") + queryEscape(t.key))
	}
	if q := canonicalQuery(t.query, s.presigned); q != "" {
		b.WriteString("?" + q)
	}
	return b.String()
}

func v4CanonicalRequest(r *http.Request, t *sigTarget, s *sigInfo) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n/")
	if t.bucket != "" {
		b.WriteString(t.bucket + "/" + escapeV4Path(t.key))
	}
	b.WriteString("\n" + canonicalQuery(t.query, s.presigned) + "\n")
	canonicalHeaders(&b, r, func(l string) bool {
		return l == "content-type" || l == "content-md5" || isOSSHeader(l)
	}, s.additional)
	b.WriteString("\n" + strings.Join(s.additional, ";") + "\n")
	if h := r.Header.Get("x-oss-content-sha256"); h != "" {
		b.WriteString(h)
	} else {
		b.WriteString(unsignedPayload)
	}
	return b.String()
}

// canonicalQuery encodes every parameter (but a presigned URL's signature) as the SDKs do:
// URL query escaping with %20 for spaces, sorted by encoded name, "name" alone when empty.
func canonicalQuery(q url.Values, presigned bool) string {
	type kv struct{ k, v string }
	items := make([]kv, 0, len(q))
	for k, vs := range q {
		if presigned && k == "x-oss-signature" {
			continue
		}
		items = append(items, kv{queryEscape(k), queryEscape(vs[0])})
	}
	slices.SortFunc(items, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	var b strings.Builder
	for i, it := range items {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(it.k)
		if it.v != "" {
			b.WriteString("=" + it.v)
		}
	}
	return b.String()
}

// queryEscape is url.QueryEscape with %20 for a space, as both SDKs encode.
func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// escapeV4Path percent-encodes all but unreserved characters and "/".
func escapeV4Path(s string) string {
	const hexUpper = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '/' {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hexUpper[c>>4])
			b.WriteByte(hexUpper[c&15])
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
