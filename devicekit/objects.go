package devicekit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/clipgate/clipgate"
)

// What an object key holds, and giving up multipart uploads.

// errKeyTaken means that a key holds another object than the clip: another recording
// of the same name and day.
var errKeyTaken = errors.New("devicekit: the key holds another recording")

// errHeadRefused wraps a HeadObject that OSS refused (403): the credentials do not grant
// oss:GetObject (the role's policy lacks it).
var errHeadRefused = errors.New("devicekit: OSS refused HeadObject (the role needs oss:GetObject)")

// errTryAgain is a failure that trying the upload again right away may cure (the object
// that answered 409 was gone by the time the kit looked).
var errTryAgain = errors.New("devicekit: the object changed while the kit looked at it")

// alreadyExists reports whether err is OSS refusing to overwrite an object
// (x-oss-forbid-overwrite: 409 FileAlreadyExists).
func alreadyExists(err error) bool {
	se, ok := serviceError(err)
	return ok && se.StatusCode == http.StatusConflict && se.Code == "FileAlreadyExists"
}

// noSuchUpload reports whether err is OSS not knowing a multipart upload (completed,
// aborted or expired).
func noSuchUpload(err error) bool {
	se, ok := serviceError(err)
	return ok && se.StatusCode == http.StatusNotFound && se.Code == "NoSuchUpload"
}

// objectState is what HeadObject tells about an object.
type objectState struct {
	exists, appendable bool
	size               int64
	crc                uint64
}

// statObject asks OSS for the length and CRC-64 of key (HeadObject, which OSS authorizes
// as oss:GetObject). A missing object is a zero objectState and no error. It returns
// the response header too, which carries x-oss-hash-crc64ecma.
func (k *Kit) statObject(ctx context.Context, bucket *oss.Bucket, key string) (objectState, http.Header, error) {
	h, err := bucket.GetObjectDetailedMeta(key, k.dateHeader(), oss.WithContext(ctx))
	if err != nil {
		if se, ok := serviceError(err); ok {
			switch se.StatusCode {
			case http.StatusNotFound:
				return objectState{}, nil, nil
			case http.StatusForbidden:
				// A HEAD answer has no body: the code may be missing.
				if se.Code == "AccessDenied" || se.Code == "" {
					return objectState{}, nil, fmt.Errorf("%w: %w", errHeadRefused, err)
				}
			}
		}
		return objectState{}, nil, err
	}
	st := objectState{exists: true, appendable: h.Get("X-Oss-Object-Type") == "Appendable"}
	if st.size, err = strconv.ParseInt(h.Get("Content-Length"), 10, 64); err != nil || st.size < 0 {
		return st, nil, fmt.Errorf("OSS reported a malformed length %q for %s", h.Get("Content-Length"), key)
	}
	if st.crc, err = strconv.ParseUint(h.Get(oss.HTTPHeaderOssCRC64), 10, 64); err != nil {
		return st, nil, fmt.Errorf("OSS reported no usable CRC-64 (%q) for %s", h.Get(oss.HTTPHeaderOssCRC64), key)
	}
	return st, h, nil
}

// readMode is the credentials mode of the kit's HeadObject requests: Config.Mode if it
// grants oss:GetObject ("a" or "r"), else "r".
func (k *Kit) readMode() clipgate.Mode {
	if k.cfg.Mode.Has(clipgate.ModeAppend) || k.cfg.Mode.Has(clipgate.ModeRead) {
		return ""
	}
	return "r"
}

// holds asks OSS what key holds: the clip p (its HeadObject header is returned, with the
// CRC-64), another object (errKeyTaken), or nothing (nil header and nil error). A refused
// HeadObject wraps errHeadRefused.
func (k *Kit) holds(ctx context.Context, info clipgate.OSSInfo, key string, p *prepared) (http.Header, error) {
	bucket, err := k.bucketForMode(ctx, info, k.readMode())
	if err != nil {
		return nil, err
	}
	st, h, err := k.statObject(ctx, bucket, key)
	var ae *clipgate.AuthError
	switch {
	case errors.As(err, &ae) && ae.Code == clipgate.CodeDenied:
		return nil, fmt.Errorf("%w: the token worker denied read credentials: %w", errHeadRefused, err)
	case credentialsRefused(err) || clockRefused(err):
		// Upload renews its own credentials and tries again; these need renewing too.
		k.invalidate(k.cacheFor(k.readMode()).Load())
		return nil, err
	case err != nil:
		return nil, err
	case !st.exists:
		return nil, nil
	}
	crc, err := p.checksum()
	switch {
	case err != nil:
		return nil, err
	case st.size == p.size && st.crc == crc:
		return h, nil
	}
	return nil, fmt.Errorf("%w: %s is %d bytes with CRC-64 %d, the clip %d bytes with CRC-64 %d", errKeyTaken, key, st.size, st.crc, p.size, crc)
}

// existing settles a write to key that OSS refused with 409 FileAlreadyExists (conflict):
// the clip is stored already (its header), or another recording holds the key
// (errKeyTaken).
func (k *Kit) existing(ctx context.Context, info clipgate.OSSInfo, key string, p *prepared, conflict error) (http.Header, error) {
	h, err := k.holds(ctx, info, key, p)
	switch {
	case h != nil:
		k.log.Info().Str("key", key).Msg("the clip was stored already (same size and CRC-64)")
		return h, nil
	case err == nil:
		return nil, fmt.Errorf("%w: %s answered %v, then was gone", errTryAgain, key, conflict)
	case errors.Is(err, errHeadRefused):
		return nil, fmt.Errorf("devicekit: %s already exists and the kit cannot compare it with the clip: %w", key, err)
	}
	return nil, err
}

// abortUpload aborts a multipart upload the kit gives up, so that its parts do not stay
// in OSS (billed) until the bucket's lifecycle rule removes them. An upload OSS no
// longer knows counts as aborted.
func (k *Kit) abortUpload(ctx context.Context, bucket *oss.Bucket, key, uploadID string) error {
	imur := oss.InitiateMultipartUploadResult{Bucket: bucket.BucketName, Key: key, UploadID: uploadID}
	err := bucket.AbortMultipartUpload(imur, k.dateHeader(), oss.WithContext(ctx))
	if err != nil && !noSuchUpload(err) {
		k.log.Warn().Err(err).Str("key", key).Str("upload", uploadID).Msg("aborting an abandoned multipart upload failed")
		return err
	}
	k.log.Info().Str("key", key).Str("upload", uploadID).Msg("abandoned multipart upload aborted")
	return nil
}
