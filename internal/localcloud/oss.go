package localcloud

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// maxURLLen bounds the request target. The largest legitimate one is a signed URL for a
// 1023-byte key with an STS token carrying a 2048-character session policy, all
// percent-encoded: well under this.
const maxURLLen = 32 << 10

// ossService is the OSS server: virtual-hosted and path-style addressing, signatures,
// policies, and the object operations clipgate uses. It is a plain http.Handler: a ServeMux would
// clean paths and so change object keys.
type ossService struct {
	cfg       *Config
	auth      *Authority
	store     *store
	configs   map[string]*bucketConfig // by bucket name: policy, lifecycle
	lifecycle *lifecycleRunner
	log       zerolog.Logger
	closed    atomic.Bool
}

var bucketNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

// newOSS opens the object store under cfg.DataDir (cfg has its defaults applied) for the
// buckets in cfg.Buckets.
func newOSS(cfg *Config, auth *Authority) (*ossService, error) {
	if auth == nil {
		return nil, errors.New("localcloud: OSS needs an Authority")
	}
	for _, b := range cfg.Buckets {
		if !bucketNameRE.MatchString(b) {
			return nil, fmt.Errorf("localcloud: invalid bucket name %q: 3 to 63 of [a-z0-9-], not starting or ending with '-'", b)
		}
	}
	st, err := openStore(filepath.Join(cfg.DataDir, "oss"), cfg.Buckets)
	if err != nil {
		return nil, err
	}
	configs, err := loadBucketConfigs(st)
	if err != nil {
		return nil, err
	}
	s := &ossService{cfg: cfg, auth: auth, store: st, configs: configs, log: cfg.Logger}
	s.lifecycle = newLifecycleRunner(s, cfg.LifecycleCheck, cfg.lifecycleRan)
	return s, nil
}

// Close stops serving requests. Every write is durable before it is acknowledged, so there is
// nothing to flush.
func (s *ossService) Close() error {
	s.closed.Store(true)
	s.lifecycle.Close()
	return nil
}

// ossRequest is one request being served.
type ossRequest struct {
	id         string
	r          *http.Request
	w          *statusWriter
	now        time.Time
	bucketName string
	bucket     *bucket // nil for service-level requests
	key        string
	query      url.Values
	op         string
	sig        *sigInfo
	principal  *Principal
	bytesIn    int64
}

// ServeHTTP serves one OSS request and logs it.
func (s *ossService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rq := &ossRequest{id: randomHex(12, true), r: r, w: &statusWriter{ResponseWriter: w}, now: s.cfg.Now()}
	h := w.Header()
	h.Set("x-oss-request-id", rq.id)
	h.Set("Server", "AliyunOSS")
	h.Set("Date", rq.now.UTC().Format(http.TimeFormat))

	err := s.serve(rq)
	code := ""
	if err != nil && err != errAbort {
		drainBody(r)
		code = s.writeError(rq, err)
	}
	s.log.Info().
		Str("method", r.Method).
		Str("op", rq.op).
		Str("bucket", rq.bucketName).
		Str("key", rq.key).
		Int("status", rq.w.status).
		Str("code", code).
		Int64("bytesIn", rq.bytesIn).
		Int64("bytesOut", rq.w.n).
		Dur("duration", time.Since(start)).
		Str("requestId", rq.id).
		Msg("oss request")
	s.cfg.metrics.observe("oss", rq.op, rq.w.status, rq.bytesIn, rq.w.n)
	if err == errAbort {
		panic(http.ErrAbortHandler) // cut the response short: the client must not see it as complete
	}
}

// errAbort makes ServeHTTP abort a response whose status line is already out.
var errAbort = errors.New("abort response")

// maxDrain bounds how much of an unread request body is read before an error response.
const maxDrain = 8 << 20

// drainBody reads what is left of a modest request body before an error is answered, so
// that a client still sending sees the error rather than a reset connection (and the SDKs,
// some of which touch their body readers after the response arrives, are not raced).
func drainBody(r *http.Request) {
	if r.Body == nil || r.ContentLength > maxDrain || strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return
	}
	_, _ = io.CopyN(io.Discard, r.Body, maxDrain)
}

// opSpec is a routed operation: its name, the RAM action it needs, and its handler.
type opSpec struct {
	name, action string
	handle       func(*ossService, *ossRequest) error
}

func (s *ossService) serve(rq *ossRequest) error {
	if s.closed.Load() {
		return &Error{Status: http.StatusServiceUnavailable, Code: "ServiceUnavailable", Message: "The server is shutting down."}
	}
	s.lifecycle.runDue(rq.now) // the day's lifecycle run, if due (oss_lifecycle.go)
	r := rq.r
	if len(r.URL.RawQuery)+len(r.URL.RawPath)+len(r.URL.Path) > maxURLLen {
		return errInvalidArgument("The request URL is too long.")
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return errInvalidArgument("The query string is malformed.")
	}
	for k, v := range q {
		if len(v) > 1 {
			return errInvalidArgument("The query parameter " + k + " is repeated.")
		}
	}
	rq.query = q

	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, "/") {
		return errInvalidArgument("The request path must start with /.")
	}
	bucketName, rawKey := bucketAndPath(r.Host, s.cfg.EndpointDomain, path)
	if rq.bucketName, err = url.PathUnescape(bucketName); err != nil {
		return &Error{Status: http.StatusNotFound, Code: "NoSuchBucket", Message: "The specified bucket does not exist."}
	}
	if rq.key, err = url.PathUnescape(rawKey); err != nil {
		return &Error{Status: http.StatusBadRequest, Code: "InvalidObjectName", Message: "The object name is not correctly escaped."}
	}
	if rq.bucketName != "" {
		if rq.bucket = s.store.buckets[rq.bucketName]; rq.bucket == nil {
			return &Error{Status: http.StatusNotFound, Code: "NoSuchBucket", Message: "The specified bucket does not exist."}
		}
	} else if rq.key != "" {
		return &Error{Status: http.StatusNotFound, Code: "NoSuchBucket", Message: "The specified bucket does not exist."}
	}

	if isPostObject(rq) { // a form upload carries its own signature (oss_post.go)
		rq.op = "PostObject"
		return s.postObject(rq)
	}
	op, routeErr := route(rq)
	rq.op = op.name
	if rq.key != "" {
		if err := validObjectName(rq.key); err != nil {
			return err
		}
	}
	if err := s.authenticate(rq); err != nil {
		return err
	}
	if routeErr != nil {
		return routeErr
	}
	if op.action != "" { // otherwise the handler authorizes (per key, or on a second resource)
		if err := s.authorize(rq, op.action); err != nil {
			return err
		}
	}
	return op.handle(s, rq)
}

// route picks the operation from the method, the key and the sub-resources.
func route(rq *ossRequest) (opSpec, error) {
	q, m := rq.query, rq.r.Method
	notImpl := func(name string) (opSpec, error) {
		return opSpec{name: name}, &Error{Status: http.StatusNotImplemented, Code: "NotImplemented",
			Message: "The local OSS does not implement " + name + "."}
	}
	if rq.bucket == nil {
		if m == http.MethodGet {
			return opSpec{"ListBuckets", "oss:ListBuckets", (*ossService).listBuckets}, nil
		}
		return notImpl(m + " on the service")
	}
	if op, ok := routeBucketConfig(rq); ok {
		return op, nil
	}
	if sub := unsupportedSubresource(q); sub != "" {
		return notImpl("the " + sub + " sub-resource")
	}
	if rq.key == "" {
		switch {
		case m == http.MethodGet && q.Has("uploads"):
			return opSpec{"ListMultipartUploads", "oss:ListMultipartUploads", (*ossService).listUploads}, nil
		case m == http.MethodGet && q.Has("list-type"):
			if q.Get("list-type") != "2" {
				return opSpec{name: "ListObjectsV2"}, errInvalidArgument("list-type must be 2.")
			}
			return opSpec{"ListObjectsV2", "oss:ListObjects", (*ossService).listObjectsV2}, nil
		case m == http.MethodGet:
			return opSpec{"ListObjects", "oss:ListObjects", (*ossService).listObjectsV1}, nil
		case m == http.MethodPost && q.Has("delete"):
			return opSpec{"DeleteMultipleObjects", "", (*ossService).deleteMultiple}, nil
		}
		return notImpl(m + " on a bucket")
	}
	switch m {
	case http.MethodPut:
		if rq.r.Header.Get("x-oss-copy-source") != "" {
			if q.Has("uploadId") || q.Has("partNumber") {
				return notImpl("UploadPartCopy")
			}
			return opSpec{"CopyObject", "oss:PutObject", (*ossService).copyObject}, nil
		}
		if q.Has("uploadId") || q.Has("partNumber") {
			return opSpec{"UploadPart", "oss:PutObject", (*ossService).uploadPart}, nil
		}
		return opSpec{"PutObject", "oss:PutObject", (*ossService).putObject}, nil
	case http.MethodPost:
		switch {
		case q.Has("append"):
			return opSpec{"AppendObject", "oss:PutObject", (*ossService).appendObject}, nil
		case q.Has("uploads"):
			return opSpec{"InitiateMultipartUpload", "oss:PutObject", (*ossService).initiateUpload}, nil
		case q.Has("uploadId"):
			return opSpec{"CompleteMultipartUpload", "oss:PutObject", (*ossService).completeUpload}, nil
		}
		return notImpl("POST on an object without append, uploads or uploadId")
	case http.MethodGet:
		if q.Has("uploadId") {
			return opSpec{"ListParts", "oss:ListParts", (*ossService).listParts}, nil
		}
		return opSpec{"GetObject", "oss:GetObject", (*ossService).getObject}, nil
	case http.MethodHead:
		if q.Has("objectMeta") {
			return opSpec{"GetObjectMeta", "oss:GetObject", (*ossService).getObjectMeta}, nil
		}
		return opSpec{"HeadObject", "oss:GetObject", (*ossService).getObject}, nil
	case http.MethodDelete:
		if q.Has("uploadId") {
			return opSpec{"AbortMultipartUpload", "oss:AbortMultipartUpload", (*ossService).abortUpload}, nil
		}
		return opSpec{"DeleteObject", "oss:DeleteObject", (*ossService).deleteObject}, nil
	}
	return opSpec{name: m}, &Error{Status: http.StatusMethodNotAllowed, Code: "MethodNotAllowed",
		Message: "The specified method is not allowed against this resource."}
}

// handledSubresources are the signed sub-resources the implemented operations understand.
var handledSubresources = map[string]bool{
	"uploads": true, "uploadId": true, "partNumber": true, "append": true, "position": true, "delete": true,
	"objectMeta": true, "security-token": true, "continuation-token": true,
	"response-content-type": true, "response-content-language": true, "response-expires": true,
	"response-cache-control": true, "response-content-disposition": true, "response-content-encoding": true,
}

// unsupportedSubresource names a sub-resource that selects an operation this server lacks
// (acl, tagging, x-oss-process...), so that such requests fail instead of being served as
// plain object requests.
func unsupportedSubresource(q url.Values) string {
	for k := range q {
		if v1SubResources[k] && !handledSubresources[k] {
			return k
		}
	}
	return ""
}

// validObjectName checks OSS's object naming rules.
func validObjectName(key string) *Error {
	var why string
	switch {
	case key == "":
		why = "must not be empty"
	case len(key) > 1023:
		why = "must be at most 1023 bytes"
	case key[0] == '/' || key[0] == '\\':
		why = "must not start with / or \\"
	case !utf8.ValidString(key):
		why = "must be valid UTF-8"
	default:
		return nil
	}
	return &Error{Status: http.StatusBadRequest, Code: "InvalidObjectName", Message: "The object name " + why + "."}
}

// authenticate verifies the request's signature and resolves its principal.
func (s *ossService) authenticate(rq *ossRequest) error {
	sig, err := parseSig(rq.r, rq.query, s.cfg.Region, rq.now)
	if err != nil {
		return err
	}
	rq.sig = sig
	p, rerr := s.auth.Resolve(sig.accessKeyID, sig.token, rq.now)
	if rerr != nil {
		return rerr
	}
	if err := sig.verify(rq.r, &sigTarget{bucket: rq.bucketName, key: rq.key, query: rq.query, region: s.cfg.Region}, p.Secret); err != nil {
		return err
	}
	rq.principal = p
	return nil
}

func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func errInvalidArgument(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: msg}
}

// detailedError is an OSS error with extra XML elements (SignatureDoesNotMatch carries the
// string to sign).
type detailedError struct {
	e      *Error
	fields []xmlField
}

func (d *detailedError) Error() string { return d.e.Error() }
func (d *detailedError) Unwrap() error { return d.e }

type xmlField struct{ name, value string }

// writeError writes err as OSS's error document with its EC and RecommendDoc (HEAD: headers
// only, with the document in x-oss-err as OSS does) and returns its code.
func (s *ossService) writeError(rq *ossRequest, err error) string {
	var e *Error
	var fields []xmlField
	var de *detailedError
	switch {
	case errors.As(err, &de):
		e, fields = de.e, de.fields
	case errors.As(err, &e):
	default:
		s.log.Error().Err(err).Str("requestId", rq.id).Msg("oss internal error")
		e = &Error{Status: http.StatusInternalServerError, Code: "InternalError", Message: "We encountered an internal error. Please try again."}
	}
	var b strings.Builder
	b.WriteString(xml.Header + "<Error>\n")
	writeXMLElem(&b, "Code", e.Code)
	writeXMLElem(&b, "Message", e.Message)
	writeXMLElem(&b, "RequestId", rq.id)
	writeXMLElem(&b, "HostId", rq.r.Host)
	for _, f := range fields {
		if f.value != "" {
			writeXMLElem(&b, f.name, f.value)
		}
	}
	ec, documented := errorEC(e)
	writeXMLElem(&b, "EC", ec)
	if documented {
		writeXMLElem(&b, "RecommendDoc", recommendDoc(ec))
	}
	b.WriteString("</Error>\n")
	doc := b.String()

	h := rq.w.Header()
	for _, k := range []string{"ETag", "Last-Modified", "Content-Range", "Accept-Ranges", "x-oss-object-type",
		"x-oss-hash-crc64ecma", "x-oss-next-append-position"} {
		if k != "x-oss-next-append-position" || e.Code != "PositionNotEqualToLength" {
			h.Del(k)
		}
	}
	h.Set("x-oss-ec", ec)
	h.Set("Content-Type", "application/xml")
	if rq.r.Method == http.MethodHead {
		h.Set("x-oss-err", b64(doc))
		rq.w.WriteHeader(e.Status)
		return e.Code
	}
	h.Set("Content-Length", fmt.Sprint(len(doc)))
	rq.w.WriteHeader(e.Status)
	_, _ = io.WriteString(rq.w, doc)
	return e.Code
}

func writeXMLElem(b *strings.Builder, name, value string) {
	b.WriteString("  <" + name + ">")
	_ = xml.EscapeText(b, []byte(value))
	b.WriteString("</" + name + ">\n")
}

// statusWriter records the status and size of a response. It passes ReadFrom through so that
// object bodies still go out with sendfile.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
