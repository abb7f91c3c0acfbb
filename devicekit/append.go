package devicekit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/protocol"
)

// Append mode: a growing recording written with OSS AppendObject, the seed SDK's "a" mode.
//
// A Recording buffers what is written and appends it in chunks of BufferSize bytes at the
// position it has reached, keeping the CRC-64 of everything appended; OSS answers every
// append with the whole object's CRC-64, which must match. When an append fails without an
// answer (network error, timeout, 5xx), the kit does what the seed SDK does and asks OSS
// for the object's length (HeadObject): the server's length equal to ours plus the chunk
// means the append landed, equal to ours that it did not; the kit also compares the CRC-64
// OSS reports, so that someone else's bytes of the same length are not taken for ours.
// A 409 PositionNotEqualToLength names the server's length (x-oss-next-append-position)
// and goes through the same decision. Anything else means the object changed under the
// recording: a clear error (ErrAppendConflict) and a "failed" event.
//
// The credentials are asked for with mode "a" (oss:PutObject and oss:GetObject: the stat
// needs GetObject), unless Config.Mode already includes it.

// Limits of append mode.
const (
	// DefaultAppendBuffer is the default AppendClip.BufferSize.
	DefaultAppendBuffer = 1 << 20
	// MinAppendBuffer and MaxAppendBuffer bound AppendClip.BufferSize.
	MinAppendBuffer = 4 << 10
	MaxAppendBuffer = 64 << 20
	// MaxAppendSize is the largest appendable object OSS keeps.
	MaxAppendSize = 5 << 30
)

// Errors of append mode.
var (
	// ErrAppendConflict is wrapped by the error of a recording whose object changed under it
	// (someone else appended or replaced it) or that would overwrite an existing object. The
	// recording has failed; its data so far stays in OSS.
	ErrAppendConflict = errors.New("devicekit: the appendable object does not hold what the recording wrote")
	// ErrRecordingClosed is returned by Write and Flush after Close.
	ErrRecordingClosed = errors.New("devicekit: recording closed")
	// ErrEmptyRecording is returned by Close when nothing was ever appended: no object, no event.
	ErrEmptyRecording = errors.New("devicekit: empty recording; nothing was stored")
)

// recordingsDir is the subdirectory of StateDir with the journal of open recordings.
const recordingsDir = "recordings"

// AppendClip describes a growing recording.
type AppendClip struct {
	// Name is the last segment of the object key (see ValidClipName). Required.
	Name string
	// ContentType defaults to the type of Name's extension, else application/octet-stream.
	ContentType string
	// RecordedAt dates the recording and its key; default the kit's clock at OpenAppend.
	// Opening the same Name on the same (UTC) day continues an unfinished recording.
	RecordedAt time.Time
	// Metadata travels in the upload event (same limits as Clip.Metadata).
	Metadata map[string]string
	// BufferSize is how many bytes Write collects before appending them: default
	// DefaultAppendBuffer, MinAppendBuffer to MaxAppendBuffer. It bounds the memory of a
	// recording and what a crash can lose.
	BufferSize int

	mode clipgate.Mode // test hook: the credentials mode; "" means the kit's append mode
}

// Recording is an open recording (see OpenAppend). Its methods are safe for concurrent
// use, though a recorder usually writes from one goroutine.
type Recording struct {
	k      *Kit
	ctx    context.Context
	cancel context.CancelFunc
	stop   func() bool // detaches ctx from the kit's life
	mode   clipgate.Mode
	clip   Clip
	bucket *oss.Bucket
	info   clipgate.OSSInfo
	key    string
	j      *journal

	mu     sync.Mutex
	buf    []byte // pending bytes, capacity BufferSize
	pos    int64  // the object's length: bytes appended
	crc    uint64 // CRC-64 of the appended bytes
	failed error  // a terminal failure: every later call returns it
	failEv *clipgate.UploadEvent
	closed bool
	done   *clipgate.UploadEvent
}

// appendMode is the credentials mode of recordings: Config.Mode if it allows appends, else "a".
func (k *Kit) appendMode() clipgate.Mode {
	if k.cfg.Mode.Has(clipgate.ModeAppend) {
		return k.cfg.Mode
	}
	return "a"
}

// OpenAppend starts a recording, or continues an unfinished one: if StateDir holds the
// journal of a recording under the same key (same Name and day) that was never closed, as
// after a crash, it resumes at the object's current length (HeadObject) under the same
// event ID; Appended tells the recorder where it stands. Otherwise the object must not
// exist yet (ErrAppendConflict).
//
// ctx bounds the whole recording: once it ends, Write, Flush and Close fail (what was
// appended and the journal stay, for a later OpenAppend). Closing the kit ends it too.
//
// Errors: a bad clip wraps ErrInvalidClip; a credentials failure (*clipgate.AuthError, ...) as is.
func (k *Kit) OpenAppend(ctx context.Context, clip AppendClip) (*Recording, error) {
	if k.isClosed() {
		return nil, ErrClosed
	}
	c := Clip{Name: clip.Name, ContentType: clip.ContentType, RecordedAt: clip.RecordedAt, Metadata: clip.Metadata}
	if err := checkClip(&c); err != nil {
		return nil, err
	}
	size := clip.BufferSize
	if size == 0 {
		size = DefaultAppendBuffer
	}
	if size < MinAppendBuffer || size > MaxAppendBuffer {
		return nil, fmt.Errorf("%w: BufferSize %d is outside %d..%d", ErrInvalidClip, size, MinAppendBuffer, MaxAppendBuffer)
	}
	if c.RecordedAt.IsZero() {
		c.RecordedAt = k.now()
	}
	c.RecordedAt = c.RecordedAt.UTC()
	mode := clip.mode
	if mode == "" {
		mode = k.appendMode()
	}
	creds, err := k.credentials(ctx, mode)
	if err != nil {
		return nil, err
	}
	key := objectKey(k.devicePrefix(creds.OSS), c.RecordedAt, c.Name)
	if len(key) > protocol.MaxObjectKeyLen {
		return nil, fmt.Errorf("%w: object key %q is longer than %d bytes", ErrInvalidClip, key, protocol.MaxObjectKeyLen)
	}
	j, resumed, err := k.recordingJournal(key)
	if err != nil {
		return nil, err
	}
	// One recording per key at a time: they would share the journal and the object.
	if _, busy := k.uploading.LoadOrStore(j.path, struct{}{}); busy {
		return nil, fmt.Errorf("%w: a recording of %s is already open", ErrInvalidClip, key)
	}
	rctx, cancel := context.WithCancel(ctx)
	r := &Recording{k: k, ctx: rctx, cancel: cancel, stop: context.AfterFunc(k.ctx, cancel), mode: mode,
		clip: c, info: creds.OSS, key: key, j: j, buf: make([]byte, 0, size)}
	if err := r.open(resumed); err != nil {
		r.release()
		return nil, err
	}
	return r, nil
}

// open finds the object's state and records the journal entry.
func (r *Recording) open(resumed bool) error {
	var err error
	if r.bucket, err = r.k.bucketForMode(r.ctx, r.info, r.mode); err != nil {
		return err
	}
	st, err := r.stat()
	if err != nil {
		return fmt.Errorf("devicekit: recording %s: %w", r.key, err)
	}
	switch {
	case st.exists && !resumed:
		return fmt.Errorf("%w: %s already exists (%d bytes); a recording never replaces an object", ErrAppendConflict, r.key, st.size)
	case st.exists && !st.appendable:
		return fmt.Errorf("%w: %s exists and is not appendable", ErrAppendConflict, r.key)
	case st.exists:
		r.pos, r.crc = st.size, st.crc
		r.k.log.Info().Str("key", r.key).Int64("size", st.size).Msg("unfinished recording continued")
	}
	r.j.Attempts++
	return r.k.saveJournal(r.j)
}

// recordingJournal returns the journal entry of the recording at key, and whether it was
// found (an unfinished recording).
func (k *Kit) recordingJournal(key string) (*journal, bool, error) {
	dir := filepath.Join(k.cfg.StateDir, recordingsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("devicekit: recording journal: %w", err)
	}
	k.pruneRecordings(dir)
	sum := sha256.Sum256([]byte(key))
	path := filepath.Join(dir, hex.EncodeToString(sum[:16])+".json")
	j := &journal{}
	if b, err := os.ReadFile(path); err == nil {
		if json.Unmarshal(b, j) == nil && j.Key == key && protocolID(j.ID) && j.Attempts >= 0 {
			j.path = path
			return j, true, nil
		}
		k.log.Warn().Str("path", path).Msg("unreadable recording journal entry replaced")
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("devicekit: recording journal: %w", err)
	}
	return &journal{ID: newID(), Key: key, path: path}, false, nil
}

// pruneRecordings removes the journal entries of recordings abandoned for stateMaxAge.
func (k *Kit) pruneRecordings(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	cutoff := time.Now().Add(-stateMaxAge)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.ModTime().Before(cutoff) {
			if os.Remove(filepath.Join(dir, e.Name())) == nil {
				k.log.Info().Str("file", e.Name()).Msg("abandoned recording journal removed")
			}
		}
	}
}

// stat asks OSS for the object's length and CRC-64 (HeadObject: oss:GetObject).
func (r *Recording) stat() (objectState, error) {
	st, _, err := r.k.statObject(r.ctx, r.bucket, r.key)
	if errors.Is(err, errHeadRefused) {
		return st, fmt.Errorf("credentials of mode %q (append mode needs oss:GetObject, mode \"a\"): %w", r.mode, err)
	}
	return st, err
}

// Key returns the recording's object key.
func (r *Recording) Key() string { return r.key }

// Appended returns the number of bytes stored in OSS.
func (r *Recording) Appended() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pos
}

// Buffered returns the number of bytes written but not yet appended.
func (r *Recording) Buffered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buf)
}

// Write adds p to the recording. Whenever BufferSize bytes are waiting it appends them,
// so at most BufferSize bytes are ever held in memory. If an append fails, Write returns
// how much of p it took and the error: after a transient failure (the network, after the
// kit's retries) the bytes stay buffered and Write, Flush or Close may be called again;
// after a terminal one (ErrAppendConflict, refused credentials) the recording has failed
// and every later call returns that error.
func (r *Recording) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		if len(r.buf) == cap(r.buf) {
			if err := r.flush(); err != nil {
				return n, err
			}
		}
		c := copy(r.buf[len(r.buf):cap(r.buf)], p)
		r.buf = r.buf[:len(r.buf)+c]
		p = p[c:]
		n += c
	}
	if len(r.buf) == cap(r.buf) {
		if err := r.flush(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Flush appends the buffered bytes now.
func (r *Recording) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	return r.flush()
}

func (r *Recording) usable() error {
	switch {
	case r.failed != nil:
		return r.failed
	case r.closed:
		return ErrRecordingClosed
	}
	return r.ctx.Err()
}

// Close appends what is buffered and announces the recording with a "completed" upload
// event (size and CRC-64 of the whole object), which it returns; the event goes through
// the outbox like Upload's. After a transient failure Close may be called again. A failed
// recording returns its "failed" event and error. Close after a successful Close returns
// the same event.
func (r *Recording) Close() (*clipgate.UploadEvent, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.done != nil:
		return r.done, nil
	case r.failed != nil:
		r.release()
		return r.failEv, r.failed
	}
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.flush(); err != nil {
		if r.failed != nil {
			r.release()
			return r.failEv, err
		}
		return nil, err
	}
	if r.pos == 0 {
		r.closed = true
		r.k.removeJournal(r.j)
		r.release()
		return nil, ErrEmptyRecording
	}
	ev := r.event(clipgate.StatusCompleted)
	ev.ID = r.j.ID
	ev.CRC64 = strconv.FormatUint(r.crc, 10)
	if err := r.k.announce(ev); err != nil {
		if errors.Is(err, errOutbox) {
			return ev, err // not stored: Close may be tried again
		}
		r.k.log.Warn().Err(err).Str("event", ev.ID).Msg("recording event queued in the outbox")
	}
	r.closed, r.done = true, ev
	r.k.removeJournal(r.j)
	r.release()
	return ev, nil
}

// release frees what the recording holds in the kit; the caller holds r.mu or owns r.
func (r *Recording) release() {
	r.stop()
	r.cancel()
	r.k.uploading.Delete(r.j.path)
	r.closed = true
}

func (r *Recording) event(status clipgate.Status) *clipgate.UploadEvent {
	return &clipgate.UploadEvent{
		V:           protocol.Version,
		ID:          newID(),
		Device:      r.k.cfg.DeviceID,
		Status:      status,
		Bucket:      r.info.Bucket,
		Key:         r.key,
		Size:        r.pos,
		ContentType: r.clip.ContentType,
		RecordedAt:  r.clip.RecordedAt,
		UploadedAt:  r.k.now().UTC(),
		Attempts:    r.j.Attempts,
		Metadata:    r.clip.Metadata,
	}
}

// fail marks the recording failed with err and announces a "failed" event (its own ID).
func (r *Recording) fail(err error) error {
	err = fmt.Errorf("devicekit: recording %s: %w", r.key, err)
	r.failed = err
	ev := r.event(clipgate.StatusFailed)
	ev.Error = truncate(err.Error(), protocol.MaxMessageLen)
	r.failEv = ev
	if perr := r.k.announce(ev); perr != nil {
		r.k.log.Warn().Err(perr).Str("event", ev.ID).Msg("failed recording event queued in the outbox")
	}
	r.k.removeJournal(r.j)
	r.release()
	return err
}

// flush appends the buffer, retrying and resynchronising as the package comment says.
func (r *Recording) flush() error {
	if len(r.buf) == 0 {
		return nil
	}
	chunk := r.buf
	n := int64(len(chunk))
	if r.pos+n > MaxAppendSize {
		return r.fail(fmt.Errorf("%w: the recording would pass the %d-byte limit of appendable objects", ErrInvalidClip, int64(MaxAppendSize)))
	}
	want := crc64.Update(r.crc, crcTable, chunk)
	var retry ossRetry
	odd := 0 // 409s that name our own position
	for {
		res, h, err := r.appendOnce(chunk)
		if err == nil {
			switch crc, cerr := strconv.ParseUint(h.Get(oss.HTTPHeaderOssCRC64), 10, 64); {
			case cerr != nil:
				return r.fail(fmt.Errorf("OSS reported no usable CRC-64 (%q) for the append; integrity unverified", h.Get(oss.HTTPHeaderOssCRC64)))
			case crc != want || res.CRC != want:
				return r.fail(fmt.Errorf("%w: OSS reports CRC-64 %d for the object, the recording expects %d", ErrAppendConflict, crc, want))
			case res.NextPosition != r.pos+n:
				return r.fail(fmt.Errorf("%w: OSS put the next append at %d, expected %d", ErrAppendConflict, res.NextPosition, r.pos+n))
			}
			r.advance(n, want)
			return nil
		}
		if cerr := r.ctx.Err(); cerr != nil {
			return cerr
		}
		se, isService := serviceError(err)
		var crcErr oss.CRCCheckError
		switch {
		case isService && se.StatusCode == http.StatusConflict && se.Code == "PositionNotEqualToLength":
			next, perr := strconv.ParseInt(h.Get(oss.HTTPHeaderOssNextAppendPosition), 10, 64)
			if perr != nil || next < 0 {
				next = -1 // no usable header: ask OSS
			}
			landed, rerr := r.resync(n, want, next)
			switch {
			case errors.Is(rerr, ErrAppendConflict):
				return r.fail(rerr)
			case rerr == nil && landed:
				r.advance(n, want)
				return nil
			case rerr == nil:
				if odd++; odd < 3 {
					continue // not landed: send it again
				}
				return r.fail(fmt.Errorf("%w: OSS refuses appends at %d, its own length", ErrAppendConflict, r.pos))
			}
			err = rerr // the stat failed: handled as that failure below
		case isService && se.StatusCode == http.StatusConflict:
			return r.fail(fmt.Errorf("%w: %v", ErrAppendConflict, err))
		case errors.As(err, &crcErr):
			// The append was stored, but the whole object is not what the recording wrote.
			return r.fail(fmt.Errorf("%w: %v", ErrAppendConflict, err))
		}
		renew, wait, ok := retry.next(err)
		if !ok {
			if terminalAppend(err) {
				return r.fail(err)
			}
			return fmt.Errorf("devicekit: recording %s: append at %d: %w", r.key, r.pos, err) // still buffered: may be retried
		}
		if renew {
			r.k.log.Info().Err(err).Msg("OSS refused the credentials or the request time; renewing them")
			r.k.invalidate(r.k.cacheFor(r.modeKey()).Load())
			continue
		}
		// The append may have landed without its answer: ask OSS before sending it again.
		r.k.log.Info().Err(err).Int64("position", r.pos).Msg("append failed; checking what OSS has")
		landed, rerr := r.resync(n, want, -1)
		switch {
		case errors.Is(rerr, ErrAppendConflict):
			return r.fail(rerr)
		case rerr == nil && landed:
			r.advance(n, want)
			return nil
		case rerr != nil:
			// No answer to the stat either: sending the same bytes at the same position is
			// still safe, OSS refuses it with 409 if the first one landed.
			r.k.log.Info().Err(rerr).Msg("cannot check the appendable object; will retry")
		}
		if serr := r.k.sleep(r.ctx, wait); serr != nil {
			return serr
		}
	}
}

// terminalAppend reports whether an append failure ends the recording: OSS refused it for
// good (a 4xx other than those retried) or the token worker refused credentials for good.
// Anything else (the network, a token worker that does not answer) leaves the recording
// open, its bytes buffered.
func terminalAppend(err error) bool {
	var ae *clipgate.AuthError
	if errors.As(err, &ae) {
		return ae.Terminal()
	}
	se, ok := serviceError(err)
	return ok && se.StatusCode >= 400 && se.StatusCode < 500 && se.Code != "RequestTimeout"
}

// modeKey is the cache key of the recording's credentials mode.
func (r *Recording) modeKey() clipgate.Mode {
	if r.mode == r.k.cfg.Mode {
		return ""
	}
	return r.mode
}

func (r *Recording) advance(n int64, crc uint64) {
	r.pos += n
	r.crc = crc
	r.buf = r.buf[:0]
}

// appendOnce sends one AppendObject of chunk at the recording's position. The SDK also
// checks the whole object's CRC-64 (InitCRC: the CRC of what came before).
func (r *Recording) appendOnce(chunk []byte) (*oss.AppendObjectResult, http.Header, error) {
	var h http.Header
	req := &oss.AppendObjectRequest{ObjectKey: r.key, Reader: bytes.NewReader(chunk), Position: r.pos}
	res, err := r.bucket.DoAppendObject(req, []oss.Option{oss.ContentType(r.clip.ContentType), oss.InitCRC(r.crc),
		oss.GetResponseHeader(&h), r.k.dateHeader(), oss.WithContext(r.ctx)})
	return res, h, err
}

// resync decides whether an append of n bytes (want: the CRC-64 of the object after it)
// that got no clear answer landed. next is the server's length from a 409
// PositionNotEqualToLength (x-oss-next-append-position), or -1: then OSS is asked. It
// returns an error wrapping ErrAppendConflict when the object is neither what the
// recording had nor that plus the chunk; any other error is a failed stat.
func (r *Recording) resync(n int64, want uint64, next int64) (bool, error) {
	if next >= 0 {
		switch {
		case next == r.pos:
			return false, nil // not landed (an odd 409, but the position is right)
		case next != r.pos+n:
			return false, fmt.Errorf("%w: %s is %d bytes on OSS; the recording had appended %d and was appending %d", ErrAppendConflict, r.key, next, r.pos, n)
		}
		// The length says "landed": the CRC-64 must say so too.
	}
	st, err := r.stat()
	if err != nil {
		return false, err
	}
	switch {
	case st.exists && !st.appendable:
		return false, fmt.Errorf("%w: %s was replaced by an object that is not appendable", ErrAppendConflict, r.key)
	case st.exists && st.size == r.pos+n && st.crc == want:
		r.k.log.Info().Int64("position", st.size).Msg("the append had landed; position resynchronised")
		return true, nil
	case st.size == r.pos && st.crc == r.crc && (st.exists || r.pos == 0):
		return false, nil
	}
	return false, fmt.Errorf("%w: %s is %d bytes with CRC-64 %d on OSS; the recording had appended %d (CRC-64 %d) and was appending %d",
		ErrAppendConflict, r.key, st.size, st.crc, r.pos, r.crc, n)
}
