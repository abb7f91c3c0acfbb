package events

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/deviceid"
)

// ObjectStat reads an object's metadata (an OSS HeadObject). aliyun-oss-go-sdk's
// oss.Bucket (and *oss.Bucket) implements it; the consumer passes oss.WithContext.
// The key the caller's client needs is oss:GetObject on the bucket (HEAD is authorized
// as GetObject).
type ObjectStat interface {
	GetObjectDetailedMeta(objectKey string, options ...oss.Option) (http.Header, error)
}

// ObjectLister lists and heads objects (ListObjectsV2 and HeadObject); oss.Bucket
// implements it. The Reconciler needs oss:ListObjects and oss:GetObject.
type ObjectLister interface {
	ObjectStat
	ListObjectsV2(options ...oss.Option) (oss.ListObjectsResultV2, error)
}

// bucketName returns the bucket name of an aliyun-oss-go-sdk bucket, "" for other types.
func bucketName(s ObjectStat) string {
	switch b := s.(type) {
	case *oss.Bucket:
		if b != nil {
			return b.BucketName
		}
	case oss.Bucket:
		return b.BucketName
	}
	return ""
}

// verifier checks events against OSS.
type verifier struct {
	bucket  string
	prefix  string
	stat    ObjectStat
	timeout time.Duration // per HEAD
	revoked RevokedFunc   // nil: no revocation check
}

// transientError is an OSS failure that says nothing about the event.
type transientError struct{ err error }

func (e *transientError) Error() string { return "OSS: " + e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// verify sets ev.Verified, or ev.Reason and ev.Detail. It returns an error only for a
// transient failure (the event is then neither verified nor rejected).
func (v *verifier) verify(ctx context.Context, ev *Event) error {
	ev.Verified, ev.Reason, ev.Detail, ev.ETag = false, "", "", ""
	if ev.Publisher != "" && ev.Publisher != ev.Device {
		ev.reject(ReasonWrongDevice, "published by device "+ev.Publisher)
		return nil
	}
	if ev.Status != clipgate.StatusCompleted {
		return nil // a failed upload names no object to check
	}
	if ev.Bucket != v.bucket {
		ev.reject(ReasonWrongBucket, fmt.Sprintf("bucket %q, want %q", ev.Bucket, v.bucket))
		return nil
	}
	if !underDevicePrefix(ev.Key, v.prefix, ev.Device) {
		ev.reject(ReasonWrongPrefix, fmt.Sprintf("key %q is not under %q", ev.Key, v.prefix+ev.Device+"/"))
		return nil
	}
	h, err := v.head(ctx, ev.Key)
	if err != nil {
		if isNotFound(err) {
			ev.reject(ReasonNotFound, "no object "+ev.Key)
			return nil
		}
		return err
	}
	size, crc, etag := objectFacts(h)
	switch {
	case size != ev.Size:
		ev.reject(ReasonSizeMismatch, fmt.Sprintf("size %d, object has %d", ev.Size, size))
	case crc == "" || crc != ev.CRC64:
		ev.reject(ReasonCRCMismatch, fmt.Sprintf("crc64 %s, object has %q", ev.CRC64, crc))
	case v.revokedWrite(ev, h):
	default:
		ev.Verified, ev.ETag = true, etag
	}
	return nil
}

// revokedWrite rejects ev if its object was stored while the device was revoked.
func (v *verifier) revokedWrite(ev *Event, h http.Header) bool {
	modified, _ := http.ParseTime(h.Get("Last-Modified"))
	at, bad := writtenWhileRevoked(v.revoked, ev.Device, modified)
	if bad {
		ev.reject(ReasonRevoked, fmt.Sprintf("object stored at %s, the device was revoked at %s",
			modified.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339)))
	}
	return bad
}

func (ev *Event) reject(r Reason, detail string) {
	ev.Verified, ev.Reason, ev.Detail = false, r, detail
}

// head runs a HEAD with the verifier's timeout. Errors other than "not found" are
// returned as *transientError.
func (v *verifier) head(ctx context.Context, key string) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	h, err := v.stat.GetObjectDetailedMeta(key, oss.WithContext(ctx))
	if err != nil && !isNotFound(err) {
		return nil, &transientError{err}
	}
	return h, err
}

// objectFacts reads size, CRC-64 and ETag from HEAD headers; size is -1 if absent or bad.
func objectFacts(h http.Header) (size int64, crc, etag string) {
	size, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	if err != nil {
		size = -1
	}
	return size, h.Get(oss.HTTPHeaderOssCRC64), strings.Trim(h.Get("ETag"), `"`)
}

// isNotFound reports whether err is OSS's NoSuchKey (a HEAD carries the code in the
// x-oss-err header, which the SDK decodes; a bare 404 without a code counts too). A
// missing bucket is not "not found": it is a configuration error, hence transient.
func isNotFound(err error) bool {
	var se oss.ServiceError
	if errors.As(err, &se) {
		return se.Code == "NoSuchKey" || se.StatusCode == http.StatusNotFound && se.Code == ""
	}
	var sp *oss.ServiceError
	if errors.As(err, &sp) && sp != nil {
		return sp.Code == "NoSuchKey" || sp.StatusCode == http.StatusNotFound && sp.Code == ""
	}
	return false
}

// underDevicePrefix reports whether key is {prefix}{device}/{name} with name made of
// non-empty segments other than "." and "..". OSS does not resolve such segments, but a
// consumer that maps keys to paths would, so a device could otherwise point outside its
// prefix. It does not allocate.
func underDevicePrefix(key, prefix, device string) bool {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return false
	}
	rest, ok = strings.CutPrefix(rest, device)
	if !ok || rest == "" || rest[0] != '/' {
		return false
	}
	return cleanPath(rest[1:])
}

// cleanPath reports whether p is one or more "/"-separated segments, none empty, "." or "..".
func cleanPath(p string) bool {
	if p == "" {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// deviceOfKey returns the device whose prefix holds key ({prefix}{device}/{name}), or
// false if key is not of that form with a valid device ID and a clean name.
func deviceOfKey(key, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", false
	}
	dev, name, ok := strings.Cut(rest, "/")
	if !ok || !deviceid.Valid(dev) || !cleanPath(name) {
		return "", false
	}
	return dev, true
}

// isNil reports whether s is nil or a nil *oss.Bucket.
func isNil(s ObjectStat) bool {
	if s == nil {
		return true
	}
	b, ok := s.(*oss.Bucket)
	return ok && b == nil
}
