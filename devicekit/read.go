package devicekit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/protocol"
)

// Reading objects back on the device: the seed SDK's mode "r" (oss_media_file_open with
// "r", read, seek, tell and stat).

// ObjectType is the type OSS gives an object (x-oss-object-type).
type ObjectType string

// Object types.
const (
	ObjectNormal     ObjectType = "Normal"     // one PutObject
	ObjectAppendable ObjectType = "Appendable" // AppendObject (a recording)
	ObjectMultipart  ObjectType = "Multipart"  // a completed multipart upload
)

// ObjectInfo is what Stat tells about an object.
type ObjectInfo struct {
	Key  string
	Size int64 // the object's length
	Type ObjectType
	// NextAppendPosition is where the next append goes: the length, for an Appendable
	// object; 0 for the others.
	NextAppendPosition int64
	ContentType        string
	ETag               string
	LastModified       time.Time
	CRC64              uint64 // as OSS reports it (x-oss-hash-crc64ecma)
}

// ErrInvalidKey is wrapped by the errors of Open and Stat for a key that cannot be an
// object key.
var ErrInvalidKey = errors.New("devicekit: invalid object key")

// Stat asks OSS for the length, type and checksum of the object key (HeadObject), with
// credentials of mode "r" (Config.Mode if it grants reading). key is the full object key,
// as in an upload event ({prefix}{deviceID}/...): the credentials reach only the device's
// own prefix.
//
// Errors: a missing object wraps fs.ErrNotExist; a key outside the device's prefix (OSS
// refuses it) wraps fs.ErrPermission; a refusal of the credentials is a
// *clipgate.AuthError.
func (k *Kit) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return ObjectInfo{}, err
	}
	var info ObjectInfo
	err := k.reading(ctx, func(b *oss.Bucket) error {
		h, err := b.GetObjectDetailedMeta(key, k.dateHeader(), oss.WithContext(ctx))
		if err != nil {
			return err
		}
		info, err = objectInfo(key, h)
		return err
	})
	if err != nil {
		return ObjectInfo{}, readError("stat", key, err)
	}
	return info, nil
}

// Open opens the object key for reading, at position 0: an *ObjectReader, an
// io.ReadSeekCloser whose reads are ranged GetObject requests from the current position
// (one request for a run of sequential reads; a Seek makes the next Read start a new
// one). Credentials, errors and keys are as for Stat, which Open calls first. ctx bounds
// the reader: once it ends, Read fails.
//
// A Normal or Multipart object is read as it was at Open (If-Match on its ETag): if it is
// replaced meanwhile, Read fails. An Appendable object may grow while it is read; Read
// returns what is there, and io.EOF at its current end.
func (k *Kit) Open(ctx context.Context, key string) (*ObjectReader, error) {
	info, err := k.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	return &ObjectReader{k: k, ctx: ctx, info: info}, nil
}

// ObjectReader reads an object (see Kit.Open). Its methods are safe for concurrent use,
// but reads share the position.
type ObjectReader struct {
	k    *Kit
	ctx  context.Context
	info ObjectInfo

	mu     sync.Mutex
	pos    int64
	body   io.ReadCloser // the open GET from pos; nil: none
	closed bool
}

// Info returns the object's Stat at Open.
func (r *ObjectReader) Info() ObjectInfo { return r.info }

// Read reads from the current position, opening a ranged GET if none is open. A
// connection that breaks mid-object is reopened at the position, with the kit's backoff.
func (r *ObjectReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, fs.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	var retry ossRetry
	for {
		if r.body == nil {
			body, err := r.get()
			if err != nil {
				return 0, err
			}
			if body == nil {
				return 0, io.EOF
			}
			r.body = body
		}
		n, err := r.body.Read(p)
		r.pos += int64(n)
		if err == nil {
			return n, nil
		}
		r.drop() // the next request starts at the new position
		if n > 0 {
			return n, nil // the next Read tells the end, or tries again
		}
		if errors.Is(err, io.EOF) {
			if r.info.Type == ObjectAppendable || r.pos >= r.info.Size {
				return 0, io.EOF
			}
			err = io.ErrUnexpectedEOF // a cut response: try again from pos
		}
		if r.ctx.Err() != nil {
			return 0, r.ctx.Err()
		}
		_, wait, ok := retry.next(err)
		if !ok {
			return 0, readError("read", r.info.Key, err)
		}
		if werr := r.k.sleep(r.ctx, wait); werr != nil {
			return 0, werr
		}
	}
}

// get opens a GET of the object from r.pos to its end; nil (no error) at or past the end
// of a Normal or Multipart object, or past the current end of an Appendable one.
func (r *ObjectReader) get() (io.ReadCloser, error) {
	if r.info.Type != ObjectAppendable && r.pos >= r.info.Size {
		return nil, nil
	}
	var body io.ReadCloser
	err := r.k.reading(r.ctx, func(b *oss.Bucket) error {
		// Standard range behaviour: a start past the end is 416, not the whole object.
		// https://www.alibabacloud.com/help/en/oss/user-guide/http-status-code-416
		opts := []oss.Option{oss.NormalizedRange(strconv.FormatInt(r.pos, 10) + "-"), oss.RangeBehavior("standard"),
			r.k.dateHeader(), oss.WithContext(r.ctx)}
		if r.info.Type != ObjectAppendable && r.info.ETag != "" {
			opts = append(opts, oss.IfMatch(`"`+r.info.ETag+`"`))
		}
		res, err := b.DoGetObject(&oss.GetObjectRequest{ObjectKey: r.info.Key}, opts)
		if err != nil {
			return err
		}
		if err := checkRange(res.Response, r.pos); err != nil {
			res.Response.Close()
			return err
		}
		body = res.Response
		return nil
	})
	if se, ok := serviceError(err); ok && se.StatusCode == http.StatusRequestedRangeNotSatisfiable && r.info.Type == ObjectAppendable {
		return nil, nil // past the recording's current end
	}
	if err != nil {
		return nil, readError("read", r.info.Key, err)
	}
	return body, nil
}

// checkRange makes sure that an answer starts at pos: a 206 whose Content-Range starts
// there, or a 200 (the whole object) for pos 0.
func checkRange(resp *oss.Response, pos int64) error {
	if resp.StatusCode == http.StatusOK && pos == 0 {
		return nil
	}
	cr := resp.Headers.Get("Content-Range") // "bytes a-b/size"
	spec, _ := strings.CutPrefix(cr, "bytes ")
	first, _, _ := strings.Cut(spec, "-")
	if resp.StatusCode != http.StatusPartialContent || first != strconv.FormatInt(pos, 10) {
		return fmt.Errorf("devicekit: OSS answered a read from byte %d with %d (Content-Range %q)", pos, resp.StatusCode, cr)
	}
	return nil
}

func (r *ObjectReader) drop() {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
}

// Seek sets the position for the next Read (io.SeekStart, io.SeekCurrent, or io.SeekEnd
// relative to the length at Open) and returns it; Seek(0, io.SeekCurrent) is the seed's
// tell. A negative position is an error; a position past the end reads io.EOF.
func (r *ObjectReader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, fs.ErrClosed
	}
	var pos int64
	switch whence {
	case io.SeekStart:
		pos = offset
	case io.SeekCurrent:
		pos = r.pos + offset
	case io.SeekEnd:
		pos = r.info.Size + offset
	default:
		return r.pos, fmt.Errorf("devicekit: Seek: invalid whence %d", whence)
	}
	if pos < 0 {
		return r.pos, fmt.Errorf("devicekit: Seek to %d: negative position", pos)
	}
	if pos != r.pos {
		r.drop()
		r.pos = pos
	}
	return pos, nil
}

// Close ends the open request, if any. Reads and seeks after Close fail.
func (r *ObjectReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drop()
	r.closed = true
	return nil
}

// reading runs one OSS read request fn with read credentials: again with renewed
// credentials (once) when OSS refuses them or the request time, and again after a
// backoff when it fails transiently.
func (k *Kit) reading(ctx context.Context, fn func(*oss.Bucket) error) error {
	if k.isClosed() {
		return ErrClosed
	}
	mode := k.readMode()
	var retry ossRetry
	for {
		creds, err := k.credentials(ctx, mode)
		if err != nil {
			return err
		}
		bucket, err := k.bucketForMode(ctx, creds.OSS, mode)
		if err != nil {
			return err
		}
		err = fn(bucket)
		if err == nil || ctx.Err() != nil {
			return err
		}
		renew, wait, ok := retry.next(err)
		switch {
		case !ok:
			return err
		case renew:
			k.invalidate(creds)
		default:
			if werr := k.sleep(ctx, wait); werr != nil {
				return werr
			}
		}
	}
}

// checkKey refuses what cannot be an object key.
func checkKey(key string) error {
	if key == "" || len(key) > protocol.MaxObjectKeyLen || strings.HasPrefix(key, "/") || strings.ContainsRune(key, 0) {
		return fmt.Errorf("%w: %q (1 to %d bytes, not starting with '/')", ErrInvalidKey, key, protocol.MaxObjectKeyLen)
	}
	return nil
}

// objectInfo reads a HeadObject answer.
func objectInfo(key string, h http.Header) (ObjectInfo, error) {
	info := ObjectInfo{Key: key, Type: ObjectType(h.Get("X-Oss-Object-Type")), ContentType: h.Get("Content-Type"),
		ETag: strings.Trim(h.Get("ETag"), `"`)}
	var err error
	if info.Size, err = strconv.ParseInt(h.Get("Content-Length"), 10, 64); err != nil || info.Size < 0 {
		return info, fmt.Errorf("devicekit: OSS reported a malformed length %q for %s", h.Get("Content-Length"), key)
	}
	if info.Type == ObjectAppendable {
		info.NextAppendPosition = info.Size
		if v := h.Get("X-Oss-Next-Append-Position"); v != "" {
			if info.NextAppendPosition, err = strconv.ParseInt(v, 10, 64); err != nil {
				return info, fmt.Errorf("devicekit: OSS reported a malformed next append position %q for %s", v, key)
			}
		}
	}
	if v := h.Get(oss.HTTPHeaderOssCRC64); v != "" {
		if info.CRC64, err = strconv.ParseUint(v, 10, 64); err != nil {
			return info, fmt.Errorf("devicekit: OSS reported a malformed CRC-64 %q for %s", v, key)
		}
	}
	if t, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
		info.LastModified = t
	}
	return info, nil
}

// readError wraps an OSS failure of op on key: a missing object wraps fs.ErrNotExist, a
// refused one fs.ErrPermission; a credentials error (*clipgate.AuthError, ...) stays as is.
func readError(op, key string, err error) error {
	var ae *clipgate.AuthError
	if errors.As(err, &ae) || errors.Is(err, ErrClosed) || errors.Is(err, ErrNotConnected) {
		return err
	}
	if se, ok := serviceError(err); ok {
		switch se.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("devicekit: %s %s: %w (%w)", op, key, fs.ErrNotExist, err)
		case http.StatusForbidden:
			return fmt.Errorf("devicekit: %s %s: %w (%w)", op, key, fs.ErrPermission, err)
		}
	}
	return fmt.Errorf("devicekit: %s %s: %w", op, key, err)
}
