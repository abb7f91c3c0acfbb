package localcloud

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// storedStandardHeaders are the standard headers OSS keeps with an object and returns on GET.
var storedStandardHeaders = []string{"Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires"}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func quoteETag(etag string) string { return `"` + etag + `"` }

var (
	errNoSuchKey = &Error{Status: http.StatusNotFound, Code: "NoSuchKey", Message: "The specified key does not exist."}
	errNoSuchUpl = &Error{Status: http.StatusNotFound, Code: "NoSuchUpload", Message: "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."}
	// errFileExists answers PutObject, CopyObject and InitiateMultipartUpload with
	// x-oss-forbid-overwrite: true on an existing key (EC as documented at
	// https://help.aliyun.com/en/oss/user-guide/0026-00000002), errFileExistsComplete a
	// CompleteMultipartUpload (https://www.alibabacloud.com/help/en/oss/user-guide/0042-00000214).
	errFileExists         = &Error{Status: http.StatusConflict, Code: "FileAlreadyExists", Message: "The object you specified already exists and can not be overwritten.", EC: "0026-00000002"}
	errFileExistsComplete = &Error{Status: http.StatusConflict, Code: "FileAlreadyExists", Message: "The object you specified already exists and can not be overwritten.", EC: "0042-00000214"}
	errTooLargeBody       = &Error{Status: http.StatusBadRequest, Code: "EntityTooLarge", Message: "Your proposed upload exceeds the maximum allowed size."}
)

// objectHeaders collects the user metadata (x-oss-meta-*) and stored standard headers of a
// write request.
func objectHeaders(r *http.Request) (map[string]string, error) {
	var m map[string]string
	size := 0
	for k, vs := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-oss-meta-") {
			if m == nil {
				m = make(map[string]string)
			}
			v := strings.Join(vs, ",")
			m[strings.ToLower(k)] = v
			size += len(k) + len(v)
		}
	}
	if size > maxUserMetaLen {
		return nil, errInvalidArgument("The user metadata (x-oss-meta-*) exceeds 8 KB.")
	}
	for _, k := range storedStandardHeaders {
		if v := r.Header.Get(k); v != "" {
			if m == nil {
				m = make(map[string]string)
			}
			m[k] = v
		}
	}
	return m, nil
}

func contentType(r *http.Request) string {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		return ct
	}
	return "application/octet-stream"
}

// forbidOverwrite reads x-oss-forbid-overwrite: "true" forbids replacing an existing object,
// "false" or no header allows it, and any other value is refused, as OSS refuses it
// (https://help.aliyun.com/en/oss/user-guide/0017-00000279: "Valid values are true and false
// only"). The docs do not say whether the comparison ignores case or how an empty value is
// taken; here case is ignored and an empty header counts as absent.
func forbidOverwrite(r *http.Request) (bool, error) {
	v := r.Header["X-Oss-Forbid-Overwrite"]
	if len(v) == 0 || (len(v) == 1 && v[0] == "") {
		return false, nil
	}
	switch {
	case len(v) == 1 && strings.EqualFold(v[0], "true"):
		return true, nil
	case len(v) == 1 && strings.EqualFold(v[0], "false"):
		return false, nil
	}
	return false, &Error{Status: http.StatusBadRequest, Code: "InvalidArgument",
		Message: "The value of x-oss-forbid-overwrite must be true or false.", EC: "0017-00000279"}
}

// checkLength refuses a declared body over limit before reading it.
func checkLength(r *http.Request, limit int64) error {
	if r.ContentLength > limit {
		return errTooLargeBody
	}
	return nil
}

// bodyCheck is what a request body is verified against after streaming.
type bodyCheck struct {
	md5    hash.Hash // MD5 of the body, for Content-MD5 (nil: not requested)
	sha    hash.Hash // SHA-256 of the body, for a signed x-oss-content-sha256
	crcHdr bool      // compare x-oss-hash-crc64ecma with the digest's CRC
}

// prepareChecks adds to d the hashes the request's integrity headers need. bodyMD5 is a hash
// already in d over exactly the body, or nil.
func (rq *ossRequest) prepareChecks(d *digest, bodyMD5 hash.Hash, crcHdr bool) (*bodyCheck, error) {
	c := &bodyCheck{crcHdr: crcHdr}
	if v := rq.r.Header.Get("Content-MD5"); v != "" {
		if sum, err := base64.StdEncoding.DecodeString(v); err != nil || len(sum) != md5.Size {
			return nil, &Error{Status: http.StatusBadRequest, Code: "InvalidDigest", Message: "The Content-MD5 you specified is not valid."}
		}
		if bodyMD5 == nil {
			bodyMD5 = md5.New()
			d.hashes = append(d.hashes, bodyMD5)
		}
		c.md5 = bodyMD5
	}
	if rq.sig != nil && rq.sig.payloadHash != "" {
		c.sha = sha256.New()
		d.hashes = append(d.hashes, c.sha)
	}
	if v := rq.r.Header.Get("x-oss-hash-crc64ecma"); crcHdr && v != "" {
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			return nil, errInvalidArgument("x-oss-hash-crc64ecma must be a decimal unsigned 64-bit number.")
		}
	}
	return c, nil
}

// receive streams the request body into f (closing it) and verifies it against c. On error
// the caller discards what was written. With sync, f is fsynced before it is closed; a
// PutObject passes false because the store's inline commit appends the metadata record to
// the same file and fsyncs it before the rename that publishes it, which makes the data
// durable too (one fsync instead of two).
func (rq *ossRequest) receive(f *os.File, limit int64, d *digest, c *bodyCheck, sync bool) error {
	start := d.size
	err := copyIn(f, rq.r.Body, limit, d)
	rq.bytesIn += d.size - start
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, errTooLarge):
		return errTooLargeBody
	case err != nil && rq.r.ContentLength >= 0 && d.size-start < rq.r.ContentLength:
		return &Error{Status: http.StatusBadRequest, Code: "IncompleteBody", Message: "You did not provide the number of bytes specified by the Content-Length HTTP header."}
	case err != nil:
		return err
	}
	return c.verify(rq.r, d)
}

// verify compares the body with the digests the request declared. A Content-MD5 mismatch is
// InvalidDigest, "The Content-MD5 you specified was invalid" (BadDigest is S3's code):
// https://www.alibabacloud.com/help/en/oss/the-the-content-md5-you-specified-was-invalid-error-message-is-returned-when-you-upload-a-file-to-oss-by-using-sts.
// The other two digests get the same code, OSS having none of its own documented for them.
func (c *bodyCheck) verify(r *http.Request, d *digest) error {
	if c.md5 != nil {
		want, _ := base64.StdEncoding.DecodeString(r.Header.Get("Content-MD5"))
		if string(c.md5.Sum(nil)) != string(want) {
			return &Error{Status: http.StatusBadRequest, Code: "InvalidDigest", Message: "The Content-MD5 you specified was invalid."}
		}
	}
	if c.sha != nil {
		if hex.EncodeToString(c.sha.Sum(nil)) != r.Header.Get("x-oss-content-sha256") {
			return &Error{Status: http.StatusBadRequest, Code: "InvalidDigest", Message: "The x-oss-content-sha256 you specified did not match what we received."}
		}
	}
	if v := r.Header.Get("x-oss-hash-crc64ecma"); c.crcHdr && v != "" && v != strconv.FormatUint(d.crc, 10) {
		return &Error{Status: http.StatusBadRequest, Code: "InvalidDigest", Message: "The x-oss-hash-crc64ecma you specified did not match what we received."}
	}
	return nil
}

func upperHex(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func (s *ossService) putObject(rq *ossRequest) error {
	r, b := rq.r, rq.bucket
	if err := checkLength(r, maxObjectSize); err != nil {
		return err
	}
	headers, err := objectHeaders(r)
	if err != nil {
		return err
	}
	forbid, err := forbidOverwrite(r)
	if err != nil {
		return err
	}
	if _, exists := b.get(rq.key); forbid && exists {
		return errFileExists
	}
	h := md5.New()
	d := &digest{hashes: []hash.Hash{h}}
	check, err := rq.prepareChecks(d, h, true)
	if err != nil {
		return err
	}
	f, blob, err := b.newBlob()
	if err != nil {
		return err
	}
	if err := rq.receive(f, maxObjectSize, d, check, false); err != nil {
		b.removeBlobs([]string{blob})
		return err
	}
	sum := h.Sum(nil)
	m := &objectMeta{
		Key: rq.key, Type: objectNormal, Size: d.size, CRC64: d.crc, ETag: upperHex(sum),
		ContentType: contentType(r), Modified: rq.now, Headers: headers,
		Segments: []segment{{Blob: blob, Size: d.size}},
	}
	unlock := b.locks.lock(rq.key)
	err = b.commit(rq.key, m, forbid)
	unlock()
	if err != nil {
		b.removeBlobs([]string{blob})
		if errors.Is(err, errObjectExists) {
			return errFileExists
		}
		return err
	}
	wh := rq.w.Header()
	wh.Set("ETag", quoteETag(m.ETag))
	wh.Set("Content-MD5", base64.StdEncoding.EncodeToString(sum))
	wh.Set("x-oss-hash-crc64ecma", strconv.FormatUint(m.CRC64, 10))
	wh.Set("Content-Length", "0")
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

// appendObject appends the body at ?position=N. The key's lock is held throughout, so the
// position check and the append are one step. Data goes into the object's blob beyond its
// committed size and becomes visible only when the new size is committed; a crash mid-append
// leaves a tail that the next append truncates.
func (s *ossService) appendObject(rq *ossRequest) error {
	r, b := rq.r, rq.bucket
	pos, err := strconv.ParseInt(rq.query.Get("position"), 10, 64)
	if err != nil || pos < 0 {
		return errInvalidArgument("AppendObject needs position, a non-negative integer.")
	}
	if err := checkLength(r, maxObjectSize); err != nil {
		return err
	}
	unlock := b.locks.lock(rq.key)
	defer unlock()
	cur, exists := b.get(rq.key)
	var size int64
	if exists {
		if cur.Type != objectAppendable {
			return &Error{Status: http.StatusConflict, Code: "ObjectNotAppendable", Message: "The object is not appendable."}
		}
		size = cur.Size
	}
	if pos != size {
		rq.w.Header().Set("x-oss-next-append-position", strconv.FormatInt(size, 10))
		return &Error{Status: http.StatusConflict, Code: "PositionNotEqualToLength", Message: "Position is not equal to file length."}
	}

	d := &digest{}
	var f *os.File
	var blob string
	m := &objectMeta{Key: rq.key, Type: objectAppendable, Modified: rq.now}
	if exists {
		d.crc, d.size = cur.CRC64, cur.Size
		m.ContentType, m.Headers = cur.ContentType, cur.Headers
		blob = cur.Segments[0].Blob
		if f, err = os.OpenFile(b.blobPath(blob), os.O_RDWR, 0); err != nil {
			return err
		}
		// Drop a tail left by an append that crashed before its commit.
		if err := f.Truncate(size); err == nil {
			_, err = f.Seek(size, io.SeekStart)
		}
		if err != nil {
			f.Close()
			return err
		}
	} else {
		if m.Headers, err = objectHeaders(r); err != nil {
			return err
		}
		m.ContentType = contentType(r)
		if f, blob, err = b.newBlob(); err != nil {
			return err
		}
	}
	check, err := rq.prepareChecks(d, nil, false)
	if err == nil {
		err = rq.receive(f, maxObjectSize-size, d, check, true)
	} else {
		f.Close()
	}
	if err == nil {
		m.Size, m.CRC64 = d.size, d.crc
		m.ETag = appendableETag(m.CRC64, m.Size)
		m.Segments = []segment{{Blob: blob, Size: d.size}}
		err = b.commit(rq.key, m, false)
	}
	if err != nil {
		if exists {
			_ = os.Truncate(b.blobPath(blob), size)
		} else {
			b.removeBlobs([]string{blob})
		}
		return err
	}
	wh := rq.w.Header()
	wh.Set("ETag", quoteETag(m.ETag))
	wh.Set("x-oss-next-append-position", strconv.FormatInt(m.Size, 10))
	wh.Set("x-oss-hash-crc64ecma", strconv.FormatUint(m.CRC64, 10))
	wh.Set("Content-Length", "0")
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

// appendableETag is the ETag of an appendable object of the given CRC-64 and size. On OSS
// only simple uploads have the MD5 of their content as ETag; an appendable object's ETag
// changes with every append but is not its MD5
// (https://www.alibabacloud.com/help/en/oss/developer-reference/appendobject). Deriving it
// from the CRC-64 and size, which are kept anyway, spares appends an MD5 over the object.
func appendableETag(crc uint64, size int64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], crc)
	binary.BigEndian.PutUint64(b[8:], uint64(size))
	sum := sha256.Sum256(b[:])
	return upperHex(sum[:16])
}

// setObjectHeaders sets the headers GET and HEAD return for m.
func setObjectHeaders(h http.Header, m *objectMeta) {
	h.Set("Content-Type", m.ContentType)
	h.Set("ETag", quoteETag(m.ETag))
	h.Set("Last-Modified", m.Modified.UTC().Format(http.TimeFormat))
	h.Set("x-oss-object-type", m.Type)
	h.Set("x-oss-hash-crc64ecma", strconv.FormatUint(m.CRC64, 10))
	h.Set("x-oss-storage-class", "Standard")
	h.Set("Accept-Ranges", "bytes")
	if m.Type == objectAppendable {
		h.Set("x-oss-next-append-position", strconv.FormatInt(m.Size, 10))
	}
	for k, v := range m.Headers {
		h.Set(k, v)
	}
}

// getObject serves GetObject and HeadObject: conditional headers, a byte range (see
// parseRange), response-* overrides.
func (s *ossService) getObject(rq *ossRequest) error {
	b := rq.bucket
	o, ok := b.acquire(rq.key)
	if !ok {
		return errNoSuchKey
	}
	defer b.release(o)
	m := &o.objectMeta
	h := rq.w.Header()
	setObjectHeaders(h, m)
	if status := conditional(rq.r, m); status != 0 {
		if status == http.StatusPreconditionFailed {
			return &Error{Status: status, Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold."}
		}
		for _, k := range []string{"Content-Type", "x-oss-hash-crc64ecma", "x-oss-next-append-position"} {
			h.Del(k)
		}
		rq.w.WriteHeader(status)
		return nil
	}
	for _, k := range []string{"Content-Type", "Content-Language", "Expires", "Cache-Control", "Content-Disposition", "Content-Encoding"} {
		if v := rq.query.Get("response-" + strings.ToLower(k)); v != "" {
			h.Set(k, v)
		}
	}
	standard := strings.EqualFold(rq.r.Header.Get("x-oss-range-behavior"), "standard")
	start, n, partial, ok := parseRange(rq.r.Header.Get("Range"), m.Size, standard)
	if !ok {
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(m.Size, 10))
		return &Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: "InvalidRange", Message: "The requested range cannot be satisfied."}
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(start+n-1, 10)+"/"+strconv.FormatInt(m.Size, 10))
	}
	rq.w.WriteHeader(status)
	if rq.r.Method == http.MethodHead {
		return nil
	}
	if _, err := b.writeRange(rq.w, o, start, n); err != nil {
		// The status line is out; all that is left is to cut the response short.
		s.log.Warn().Err(err).Str("requestId", rq.id).Msg("oss GetObject body interrupted")
		return errAbort
	}
	return nil
}

// conditional evaluates If-Match, If-None-Match, If-Unmodified-Since and If-Modified-Since,
// returning 412, 304 or 0 (serve).
func conditional(r *http.Request, m *objectMeta) int {
	return preconditions(r.Header, "", m)
}

// preconditions evaluates the conditional headers named prefix+"If-Match" and so on
// (prefix "x-oss-copy-source-" for CopyObject's conditions on its source), returning 412,
// 304 or 0.
func preconditions(h http.Header, prefix string, m *objectMeta) int {
	etagMatch := func(v string) bool {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.Trim(strings.TrimSpace(t), `"`)
			if t == "*" || strings.EqualFold(t, m.ETag) {
				return true
			}
		}
		return false
	}
	mod := m.Modified.Truncate(time.Second)
	if v := h.Get(prefix + "If-Match"); v != "" && !etagMatch(v) {
		return http.StatusPreconditionFailed
	}
	if v := h.Get(prefix + "If-Unmodified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && mod.After(t) {
			return http.StatusPreconditionFailed
		}
	}
	if v := h.Get(prefix + "If-None-Match"); v != "" && etagMatch(v) {
		return http.StatusNotModified
	}
	if v := h.Get(prefix + "If-Modified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && !mod.After(t) {
			return http.StatusNotModified
		}
	}
	return 0
}

// parseRange interprets a Range header as OSS does, following
// https://www.alibabacloud.com/help/en/oss/how-to-obtain-oss-resources-by-segmenting-http-range-requests:
// one range "bytes=a-b", "bytes=a-" or "bytes=-n", of which the valid interval is 0 to
// size-1; anything malformed is ignored (the whole object, partial false). By default a range
// not wholly inside the object is ignored as well, and of several ranges only the first
// counts. With standard (x-oss-range-behavior: standard) an end or a suffix beyond the object
// is clipped, and a start at or past the end, or several ranges
// (https://www.alibabacloud.com/help/en/oss/user-guide/http-status-code-416), is
// unsatisfiable (ok false: 416 InvalidRange).
func parseRange(v string, size int64, standard bool) (start, n int64, partial, ok bool) {
	whole := func() (int64, int64, bool, bool) { return 0, size, false, true }
	unsatisfiable := func() (int64, int64, bool, bool) { return 0, 0, false, false }
	spec, found := strings.CutPrefix(v, "bytes=")
	if !found {
		return whole()
	}
	spec, _, multi := strings.Cut(spec, ",")
	a, z, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return whole()
	}
	num := func(s string) (int64, bool) {
		if s == "" || len(s) > 18 || strings.TrimLeft(s, "0123456789") != "" {
			return 0, false
		}
		x, err := strconv.ParseInt(s, 10, 64)
		return x, err == nil
	}
	var first, last int64
	switch {
	case a == "": // suffix: the last k bytes
		k, good := num(z)
		if !good || k == 0 {
			return whole()
		}
		if k > size && !standard {
			return whole()
		}
		k = min(k, size)
		first, last = size-k, size-1
	default:
		var good bool
		if first, good = num(a); !good {
			return whole()
		}
		last = size - 1
		if z != "" {
			l, good := num(z)
			if !good || l < first {
				return whole()
			}
			if l >= size && !standard {
				return whole()
			}
			last = min(l, size-1)
		}
	}
	switch {
	case standard && (multi || first >= size):
		return unsatisfiable()
	case first >= size:
		return whole()
	}
	return first, last - first + 1, true, true
}

func (s *ossService) getObjectMeta(rq *ossRequest) error {
	m, ok := rq.bucket.get(rq.key)
	if !ok {
		return errNoSuchKey
	}
	h := rq.w.Header()
	h.Set("ETag", quoteETag(m.ETag))
	h.Set("Last-Modified", m.Modified.UTC().Format(http.TimeFormat))
	h.Set("Content-Length", strconv.FormatInt(m.Size, 10))
	h.Set("x-oss-hash-crc64ecma", strconv.FormatUint(m.CRC64, 10))
	rq.w.WriteHeader(http.StatusOK)
	return nil
}

func (s *ossService) deleteObject(rq *ossRequest) error {
	b := rq.bucket
	unlock := b.locks.lock(rq.key)
	err := b.commit(rq.key, nil, false)
	unlock()
	if err != nil {
		return err
	}
	rq.w.WriteHeader(http.StatusNoContent)
	return nil
}
