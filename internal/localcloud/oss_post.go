package localcloud

// PostObject: a browser form upload to POST /{bucket}/ (or POST / on the bucket's host),
// authenticated by a signed policy in the form rather than by the request's headers
// (https://www.alibabacloud.com/help/en/oss/developer-reference/postobject; V1 signatures
// https://www.alibabacloud.com/help/en/oss/developer-reference/signature-version-1, V4
// https://www.alibabacloud.com/help/en/oss/developer-reference/signature-version-4-recommend;
// errors https://www.alibabacloud.com/help/en/oss/support/postobject).

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits on a form: OSS allows 8 KB of field names and 2 MB of field values.
const (
	maxPostFieldNames  = 8 << 10
	maxPostFieldValues = 2 << 20
	maxV4PostAge       = 7 * 24 * time.Hour
)

// isPostObject reports whether rq is a form upload: a POST on a bucket with no object key
// and no sub-resource.
func isPostObject(rq *ossRequest) bool {
	return rq.r.Method == http.MethodPost && rq.bucket != nil && rq.key == "" && len(rq.query) == 0
}

func errMalformedPost() *Error {
	return &Error{Status: http.StatusBadRequest, Code: "MalformedPOSTRequest",
		Message: "The body of your POST request is not well-formed multipart/form-data."}
}

func errPostPolicy(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "InvalidPolicyDocument", Message: "Invalid Policy: " + msg}
}

// errPostDenied is a form the policy refuses. OSS documents no EC for it.
func errPostDenied(msg string) *Error {
	return &Error{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Invalid according to Policy: " + msg, EC: ecUnknown}
}

// postForm is a form's fields (names lower-cased; OSS reads them case-insensitively) and
// its file part, positioned at the file's content.
type postForm struct {
	fields   map[string]string
	file     *multipart.Part
	fileName string
	reader   *multipart.Reader
}

// readPostForm reads the fields before the file part. Fields after it are ignored, as OSS
// requires the file to be last.
func readPostForm(r io.Reader, contentType string) (*postForm, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, errMalformedPost()
	}
	f := &postForm{fields: map[string]string{}, reader: multipart.NewReader(r, params["boundary"])}
	names, values := 0, 0
	for {
		p, err := f.reader.NextPart()
		if err == io.EOF {
			return f, nil // no file part
		}
		if err != nil {
			return nil, errMalformedPost()
		}
		name := strings.ToLower(p.FormName())
		if name == "" {
			return nil, errMalformedPost()
		}
		if name == "file" {
			f.file, f.fileName = p, p.FileName()
			return f, nil
		}
		names += len(name)
		v, err := io.ReadAll(io.LimitReader(p, int64(maxPostFieldValues-values+1)))
		if err != nil {
			return nil, errMalformedPost()
		}
		values += len(v)
		if names > maxPostFieldNames || values > maxPostFieldValues {
			return nil, &Error{Status: http.StatusBadRequest, Code: "FieldItemTooLong",
				Message: "Your POST request fields preceding the upload file were too large."}
		}
		if _, dup := f.fields[name]; !dup { // the first occurrence counts, for the policy too
			f.fields[name] = string(v)
		}
	}
}

// postObject serves PostObject: it reads the form, checks the signature and the policy,
// authorizes oss:PutObject on the key, streams the file into the object and answers as
// success_action_redirect or success_action_status ask.
func (s *ossService) postObject(rq *ossRequest) error {
	r, b := rq.r, rq.bucket
	body := io.Reader(r.Body)
	var bodyMD5 hash.Hash
	if v := r.Header.Get("Content-MD5"); v != "" {
		if sum, err := base64.StdEncoding.DecodeString(v); err != nil || len(sum) != md5.Size {
			return &Error{Status: http.StatusBadRequest, Code: "InvalidDigest", Message: "The Content-MD5 you specified is not valid."}
		}
		bodyMD5 = md5.New()
		body = io.TeeReader(body, bodyMD5) // Content-MD5 covers the whole body
	}
	form, err := readPostForm(body, r.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	fields := form.fields
	key := fields["key"]
	if key == "" {
		return errInvalidArgument("The bucket POST must contain the specified 'key'. If it is specified, please check the order of the fields.")
	}
	if form.file == nil {
		return &Error{Status: http.StatusBadRequest, Code: "IncorrectNumberOfFilesInPOSTRequest",
			Message: "POST requires exactly one file upload per request."}
	}
	// The policy is checked against the fields as sent; ${filename} is replaced after.
	var pol *postPolicy
	if pol, err = s.authenticatePost(rq, fields); err != nil {
		return err
	}
	if pol != nil {
		if err := pol.check(fields, rq.bucketName, rq.now); err != nil {
			return err
		}
	}
	key = strings.ReplaceAll(key, "${filename}", form.fileName)
	if err := validObjectName(key); err != nil {
		return err
	}
	rq.key = key
	if err := s.authorize(rq, "oss:PutObject"); err != nil {
		return err
	}

	headers, err := postHeaders(fields)
	if err != nil {
		return err
	}
	forbid := false
	switch v := fields["x-oss-forbid-overwrite"]; {
	case strings.EqualFold(v, "true"):
		forbid = true
	case v != "" && !strings.EqualFold(v, "false"):
		return &Error{Status: http.StatusBadRequest, Code: "InvalidArgument",
			Message: "The value of x-oss-forbid-overwrite must be true or false.", EC: "0017-00000279"}
	}
	if _, exists := b.get(key); forbid && exists {
		return errFileExists
	}
	limit := int64(maxObjectSize)
	if pol != nil && pol.hasRange && pol.maxLen < limit {
		limit = pol.maxLen
	}
	h := md5.New()
	d := &digest{hashes: []hash.Hash{h}}
	f, blob, err := b.newBlob()
	if err != nil {
		return err
	}
	start := d.size
	err = copyIn(f, form.file, limit, d)
	rq.bytesIn += d.size - start
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && bodyMD5 != nil {
		// Read the rest of the form so that the digest covers the whole body.
		for err == nil {
			var p *multipart.Part
			if p, err = form.reader.NextPart(); err == nil {
				_, err = io.Copy(io.Discard, io.LimitReader(p, maxPostFieldValues))
			}
		}
		if err == io.EOF {
			err = nil
			want, _ := base64.StdEncoding.DecodeString(r.Header.Get("Content-MD5"))
			if !bytes.Equal(bodyMD5.Sum(nil), want) {
				err = &Error{Status: http.StatusBadRequest, Code: "InvalidDigest", Message: "The Content-MD5 you specified was invalid."}
			}
		} else {
			err = errMalformedPost()
		}
	}
	if err == nil && pol != nil && pol.hasRange && d.size < pol.minLen {
		err = &Error{Status: http.StatusBadRequest, Code: "EntityTooSmall", EC: "0006-00000004",
			Message: fmt.Sprintf("Your proposed upload is smaller than the minimum allowed size: %d bytes, the policy allows %d to %d.", d.size, pol.minLen, pol.maxLen)}
	}
	if errors.Is(err, errTooLarge) {
		err = &Error{Status: http.StatusBadRequest, Code: "EntityTooLarge", EC: "0006-00000003",
			Message: fmt.Sprintf("Your proposed upload exceeds the maximum allowed size of %d bytes.", limit)}
	}
	if err != nil {
		b.removeBlobs([]string{blob})
		var e *Error
		if !errors.As(err, &e) {
			err = errMalformedPost()
		}
		return err
	}
	m := &objectMeta{
		Key: key, Type: objectNormal, Size: d.size, CRC64: d.crc, ETag: upperHex(h.Sum(nil)),
		ContentType: postContentType(fields, form.file), Modified: rq.now, Headers: headers,
		Segments: []segment{{Blob: blob, Size: d.size}},
	}
	unlock := b.locks.lock(key)
	err = b.commit(key, m, forbid)
	unlock()
	if err != nil {
		b.removeBlobs([]string{blob})
		if errors.Is(err, errObjectExists) {
			return errFileExists
		}
		return err
	}
	return s.postResponse(rq, fields, m)
}

// postResponse answers a stored upload: a 303 to success_action_redirect (with bucket,
// key and etag in its query, as S3 does), else success_action_status 200 or 204 (empty)
// or 201 (a PostResponse document); anything else is 204.
func (s *ossService) postResponse(rq *ossRequest, fields map[string]string, m *objectMeta) error {
	h := rq.w.Header()
	h.Set("ETag", quoteETag(m.ETag))
	h.Set("x-oss-hash-crc64ecma", strconv.FormatUint(m.CRC64, 10))
	if to := fields["success_action_redirect"]; to != "" {
		if u, err := url.Parse(to); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			q := u.Query()
			q.Set("bucket", rq.bucketName)
			q.Set("key", m.Key)
			q.Set("etag", quoteETag(m.ETag))
			u.RawQuery = q.Encode()
			h.Set("Location", u.String())
			h.Set("Content-Length", "0")
			rq.w.WriteHeader(http.StatusSeeOther)
			return nil
		}
	}
	switch fields["success_action_status"] {
	case "200":
		h.Set("Content-Length", "0")
		rq.w.WriteHeader(http.StatusOK)
	case "201":
		doc, err := xml.Marshal(struct {
			XMLName  xml.Name `xml:"PostResponse"`
			Bucket   string
			Location string
			Key      string
			ETag     string
		}{Bucket: rq.bucketName, Location: location(rq) + escapeV4Path(m.Key), Key: m.Key, ETag: quoteETag(m.ETag)})
		if err != nil {
			return err
		}
		h.Set("Content-Type", "application/xml")
		h.Set("Content-Length", strconv.Itoa(len(xml.Header)+len(doc)))
		rq.w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(rq.w, xml.Header)
		_, _ = rq.w.Write(doc)
	default:
		rq.w.WriteHeader(http.StatusNoContent)
	}
	return nil
}

// postHeaders collects the user metadata and stored standard headers given as fields.
func postHeaders(fields map[string]string) (map[string]string, error) {
	var m map[string]string
	size := 0
	for k, v := range fields {
		if strings.HasPrefix(k, "x-oss-meta-") {
			if m == nil {
				m = make(map[string]string)
			}
			m[k] = v
			size += len(k) + len(v)
		}
	}
	if size > maxUserMetaLen {
		return nil, errInvalidArgument("The user metadata (x-oss-meta-*) exceeds 8 KB.")
	}
	for _, k := range storedStandardHeaders {
		if v := fields[strings.ToLower(k)]; v != "" {
			if m == nil {
				m = make(map[string]string)
			}
			m[k] = v
		}
	}
	return m, nil
}

// postContentType is the object's type: the x-oss-content-type field, else the
// Content-Type field, else the file part's type, else application/octet-stream.
func postContentType(fields map[string]string, file *multipart.Part) string {
	for _, v := range []string{fields["x-oss-content-type"], fields["content-type"], file.Header.Get("Content-Type")} {
		if v != "" {
			return v
		}
	}
	return "application/octet-stream"
}

// authenticatePost checks the form's signature (V1: OSSAccessKeyId, policy, Signature; V4:
// x-oss-signature-version, x-oss-credential, x-oss-date, x-oss-signature, policy) and
// resolves the principal, setting rq.sig and rq.principal. It returns the decoded policy.
// A form with neither is anonymous: only a bucket policy can allow it.
func (s *ossService) authenticatePost(rq *ossRequest, fields map[string]string) (*postPolicy, error) {
	policyB64, token := fields["policy"], fields["x-oss-security-token"]
	var akid string
	var verify func(secret string) bool
	switch {
	case fields["x-oss-signature-version"] != "":
		if v := fields["x-oss-signature-version"]; v != v4Algorithm {
			return nil, errInvalidArgument("Unsupported x-oss-signature-version " + strconv.Quote(v) + ".")
		}
		sig, cred, date := fields["x-oss-signature"], fields["x-oss-credential"], fields["x-oss-date"]
		if sig == "" {
			return nil, &Error{Status: http.StatusBadRequest, Code: "InvalidArgument", EC: "0002-00000703",
				Message: "The x-oss-signature form field is missing."}
		}
		if policyB64 == "" || cred == "" || date == "" {
			return nil, errInvalidArgument("A V4 form needs policy, x-oss-credential, x-oss-date and x-oss-signature.")
		}
		var day string
		var perr *Error
		if akid, day, perr = parseCredential(cred, s.cfg.Region); perr != nil {
			perr.EC = "0002-00000710"
			return nil, perr
		}
		t, err := time.Parse(iso8601Basic, date)
		if err != nil || t.Format(iso8601BasicDate) != day {
			return nil, errInvalidArgument("x-oss-date must be of the form 20060102T150405Z, on the day of x-oss-credential.")
		}
		// x-oss-date may be 15 minutes ahead of the server clock and at most 7 days old;
		// the policy's expiration bounds the form's life otherwise.
		if t.Sub(rq.now) > maxSkew {
			return nil, errSkewed
		}
		if rq.now.Sub(t) > maxV4PostAge {
			return nil, &Error{Status: http.StatusForbidden, Code: "AccessDenied", EC: ecUnknown,
				Message: "Request has expired: x-oss-date is more than 7 days old."}
		}
		verify = func(secret string) bool {
			key := hmacSum(sha256.New, []byte("aliyun_v4"+secret), day)
			key = hmacSum(sha256.New, key, s.cfg.Region)
			key = hmacSum(sha256.New, key, v4Product)
			key = hmacSum(sha256.New, key, v4Terminator)
			return hmac256Equal(hex.EncodeToString(hmacSum(sha256.New, key, policyB64)), sig)
		}
	case fields["ossaccesskeyid"] != "" || policyB64 != "" || fields["signature"] != "":
		akid = fields["ossaccesskeyid"]
		sig := fields["signature"]
		if akid == "" || policyB64 == "" || sig == "" {
			e := errInvalidArgument("OSSAccessKeyId, policy and Signature must all be given, or none of them.")
			if sig == "" {
				e.EC = "0002-00000703"
			}
			return nil, e
		}
		verify = func(secret string) bool { return hmac256Equal(hmacB64(sha1.New, secret, policyB64), sig) }
	default:
		return nil, nil // anonymous
	}
	p, err := s.auth.Resolve(akid, token, rq.now)
	if err != nil {
		return nil, err
	}
	if !verify(p.Secret) {
		// The PostObject troubleshooting page gives AccessDenied with this message.
		return nil, &Error{Status: http.StatusForbidden, Code: "AccessDenied", EC: ecUnknown,
			Message: "SignatureDoesNotMatch The request signature we calculated does not match the signature you provided. Check your key and signing method."}
	}
	rq.sig = &sigInfo{accessKeyID: akid, token: token}
	rq.principal = p
	return parsePostPolicy(policyB64)
}

func hmac256Equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// postPolicy is a decoded form policy.
type postPolicy struct {
	expiration     time.Time
	conds          []postCond
	hasRange       bool
	minLen, maxLen int64
}

// postCond is one condition: op is "eq", "starts-with", "in" or "not-in" on field (lower
// case, without "$"), against values.
type postCond struct {
	op     string
	field  string
	values []string
	text   string // as written, for the error message
}

// parsePostPolicy decodes the base64 policy: {"expiration": ISO 8601, "conditions": [...]}.
func parsePostPolicy(b64 string) (*postPolicy, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errPostPolicy("the policy is not base64.")
	}
	// The policy escapes "$" as "\$", which JSON does not know.
	raw = bytes.ReplaceAll(raw, []byte(`\$`), []byte(`\u0024`))
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc struct {
		Expiration *string            `json:"expiration"`
		Conditions *[]json.RawMessage `json:"conditions"`
	}
	if err := dec.Decode(&doc); err != nil {
		return nil, errPostPolicy("Invalid JSON: " + err.Error())
	}
	if doc.Expiration == nil {
		return nil, errPostPolicy("the policy has no expiration.")
	}
	if doc.Conditions == nil {
		e := errPostPolicy("the policy has no conditions.")
		e.EC = "0006-00000207"
		return nil, e
	}
	p := &postPolicy{}
	if p.expiration, err = time.Parse(time.RFC3339Nano, *doc.Expiration); err != nil {
		return nil, errPostPolicy("expiration " + strconv.Quote(*doc.Expiration) + " is not an ISO 8601 time such as 2014-12-01T12:00:00.000Z.")
	}
	for _, c := range *doc.Conditions {
		if err := p.addCondition(c); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *postPolicy) addCondition(raw json.RawMessage) error {
	text := string(raw)
	var simple map[string]any
	if err := json.Unmarshal(raw, &simple); err == nil {
		if len(simple) != 1 {
			return errPostPolicy("Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.")
		}
		for k, v := range simple {
			s, ok := v.(string)
			if !ok {
				return errPostPolicy("Invalid Simple-Condition: the value of " + strconv.Quote(k) + " must be a string.")
			}
			p.conds = append(p.conds, postCond{op: "eq", field: strings.ToLower(k), values: []string{s}, text: text})
		}
		return nil
	}
	var arr []any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&arr); err != nil || len(arr) == 0 {
		return errPostPolicy("a condition must be an object or an array: " + truncate(text, 64))
	}
	op, _ := arr[0].(string)
	switch strings.ToLower(op) {
	case "content-length-range":
		lo, ok1 := postInt(arr, 1)
		hi, ok2 := postInt(arr, 2)
		if len(arr) != 3 || !ok1 || !ok2 || hi < lo {
			e := errPostPolicy("Invalid content-length-range: want [\"content-length-range\", min, max] with integers 0 <= min <= max.")
			e.EC = "0006-00000221"
			return e
		}
		p.hasRange, p.minLen, p.maxLen = true, lo, hi
		return nil
	case "eq", "starts-with", "in", "not-in":
		field, ok := arr[1%len(arr)].(string)
		if len(arr) != 3 || !ok || !strings.HasPrefix(field, "$") || len(field) < 2 {
			return errPostPolicy("Invalid condition: want [\"" + op + "\", \"$field\", value]: " + truncate(text, 64))
		}
		c := postCond{op: strings.ToLower(op), field: strings.ToLower(field[1:]), text: text}
		switch v := arr[2].(type) {
		case string:
			if c.op == "in" || c.op == "not-in" {
				return errPostPolicy("Invalid condition: " + op + " takes a list of values: " + truncate(text, 64))
			}
			c.values = []string{v}
		case []any:
			if c.op != "in" && c.op != "not-in" {
				return errPostPolicy("Invalid condition: " + op + " takes one value: " + truncate(text, 64))
			}
			for _, x := range v {
				s, ok := x.(string)
				if !ok {
					return errPostPolicy("Invalid condition: the values must be strings: " + truncate(text, 64))
				}
				c.values = append(c.values, s)
			}
		default:
			return errPostPolicy("Invalid condition: the value must be a string: " + truncate(text, 64))
		}
		p.conds = append(p.conds, c)
		return nil
	}
	return errPostPolicy("Invalid condition operator " + strconv.Quote(op) + " (want eq, starts-with, in, not-in or content-length-range).")
}

// postInt reads arr[i] as a non-negative integer.
func postInt(arr []any, i int) (int64, bool) {
	if i >= len(arr) {
		return 0, false
	}
	n, ok := arr[i].(json.Number)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	return v, err == nil && v >= 0
}

// check applies the policy to the form: not expired, every condition holds. "bucket" is
// the bucket the form is posted to; a field the form lacks fails eq, starts-with and in.
func (p *postPolicy) check(fields map[string]string, bucket string, now time.Time) error {
	if !now.Before(p.expiration) {
		return errPostDenied("Policy expired.")
	}
	for _, c := range p.conds {
		v, present := fields[c.field]
		if c.field == "bucket" {
			v, present = bucket, true
		}
		ok := false
		switch c.op {
		case "eq":
			ok = present && v == c.values[0]
		case "starts-with":
			ok = present && strings.HasPrefix(v, c.values[0])
		case "in":
			ok = present && containsString(c.values, v)
		case "not-in":
			ok = !present || !containsString(c.values, v)
		}
		if !ok {
			return errPostDenied("Policy Condition failed: " + c.text)
		}
	}
	return nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
