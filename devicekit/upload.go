package devicekit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/atomicfile"
	"github.com/clipgate/clipgate/internal/protocol"
)

// Clip is a recorded file to upload.
type Clip struct {
	// Path is the local file. Required. An empty file is refused (ErrEmptyClip).
	Path string
	// Name is the last segment of the object key; default SanitizeClipName of
	// filepath.Base(Path). See ValidClipName: UTF-8, Unicode kept. A name held by another
	// recording of the same device and day is never overwritten: the clip then goes under
	// "{stem}~{CRC-64 in hex}{ext}" (the event carries the key it got).
	Name string
	// ContentType defaults to ContentTypeOf(Name): a fixed table of camera formats, else
	// application/octet-stream.
	ContentType string
	// RecordedAt dates the clip (and its key); default the file's modification time.
	RecordedAt time.Time
	// Metadata travels in the upload event: at most 32 entries, keys 1 to 256 bytes and
	// values at most 256 bytes of UTF-8.
	Metadata map[string]string
	// Poster, when set, is a small JPEG of the clip's first keyframe (a camera's
	// hardware encoder or snapshot API makes one for next to nothing), at most
	// MaxPosterSize bytes. Once the clip is stored, the kit uploads it beside the clip as
	// {key}.poster.jpg, where the console shows it; a poster that fails to upload is
	// logged, not an error of the clip's.
	Poster string
	// Progress, when set, is told how many of the clip's bytes are out, as they go (the
	// OSS SDK's progress listener on PutObject and on every part of a multipart upload),
	// so that a user interface can show bytes, rate and time left. total is the file's
	// size; sent starts at what a resumed upload had already stored, and goes down again
	// when a failed request's bytes are to be sent again. The last call of a successful
	// Upload is Progress(total, total). Calls come from the upload's goroutines, one at a
	// time: it must return quickly.
	Progress func(sent, total int64)
}

// PosterSuffix ends the key of a clip's poster: {key}.poster.jpg.
const PosterSuffix = ".poster.jpg"

// MaxPosterSize bounds Clip.Poster's file.
const MaxPosterSize = 1 << 20

// checkPoster checks a poster file: a regular JPEG file of 1 to MaxPosterSize bytes.
func checkPoster(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: poster: %v", ErrInvalidClip, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: poster: %v", ErrInvalidClip, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() < 4 || fi.Size() > MaxPosterSize {
		return fmt.Errorf("%w: poster %s: want a regular file of 4 to %d bytes", ErrInvalidClip, path, MaxPosterSize)
	}
	var magic [3]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || magic != [3]byte{0xff, 0xd8, 0xff} {
		return fmt.Errorf("%w: poster %s is not a JPEG", ErrInvalidClip, path)
	}
	return nil
}

// uploadPoster stores a clip's poster beside it. A poster is a nicety: a failure is
// logged, not returned.
func (k *Kit) uploadPoster(ctx context.Context, info clipgate.OSSInfo, key, path string) {
	bucket, err := k.bucketFor(ctx, info)
	if err == nil {
		err = bucket.PutObjectFromFile(key+PosterSuffix, path, oss.ContentType("image/jpeg"), oss.WithContext(ctx), k.dateHeader())
	}
	if err != nil {
		k.log.Warn().Err(err).Str("key", key).Msg("the clip's poster was not uploaded")
	}
}

// uploadRoutines is the number of parts uploaded at once.
const uploadRoutines = 3

// ObjectKey returns the key of a clip: {prefix}{deviceID}/{yyyy}/{mm}/{dd}/{name}, with
// prefix the global prefix and the date of recordedAt in UTC.
func ObjectKey(prefix, deviceID string, recordedAt time.Time, name string) string {
	return objectKey(prefix+deviceID+"/", recordedAt, name)
}

func objectKey(devicePrefix string, recordedAt time.Time, name string) string {
	return devicePrefix + recordedAt.UTC().Format("2006/01/02") + "/" + name
}

// devicePrefix returns the device's own key prefix from the OSS info of an auth reply.
// The token worker sends the device's full prefix ({global}{deviceID}/); a prefix that
// does not end with the device's level is taken as the global one and completed.
func (k *Kit) devicePrefix(info clipgate.OSSInfo) string {
	p, tail := info.Prefix, k.cfg.DeviceID+"/"
	if strings.HasSuffix(p, tail) && (len(p) == len(tail) || p[len(p)-len(tail)-1] == '/') {
		return p
	}
	return p + tail
}

// prepared is a validated clip.
type prepared struct {
	Clip
	size  int64
	mtime time.Time
	crc   uint64
}

// checkClip checks the name, content type and metadata of clip and fills in the default
// content type. Errors wrap ErrInvalidClip.
func checkClip(clip *Clip) error {
	if err := ValidClipName(clip.Name); err != nil {
		return err
	}
	if clip.ContentType == "" {
		clip.ContentType = ContentTypeOf(clip.Name)
	}
	if len(clip.ContentType) > protocol.MaxContentTypeLen {
		return fmt.Errorf("%w: ContentType is longer than %d bytes", ErrInvalidClip, protocol.MaxContentTypeLen)
	}
	if _, _, err := mime.ParseMediaType(clip.ContentType); err != nil {
		return fmt.Errorf("%w: ContentType %q: %v", ErrInvalidClip, clip.ContentType, err)
	}
	if len(clip.Metadata) > protocol.MaxMetadata {
		return fmt.Errorf("%w: %d metadata entries, at most %d allowed", ErrInvalidClip, len(clip.Metadata), protocol.MaxMetadata)
	}
	for key, v := range clip.Metadata {
		if key == "" || len(key) > protocol.MaxMetadataLen || len(v) > protocol.MaxMetadataLen || !utf8.ValidString(key) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: metadata %q: keys must be 1 to %d bytes and values at most %d bytes of UTF-8", ErrInvalidClip, key, protocol.MaxMetadataLen, protocol.MaxMetadataLen)
		}
	}
	return nil
}

func (k *Kit) prepare(clip Clip) (*prepared, error) {
	if clip.Path == "" {
		return nil, fmt.Errorf("%w: Path is required", ErrInvalidClip)
	}
	if clip.Name == "" {
		clip.Name = SanitizeClipName(filepath.Base(clip.Path))
	}
	if err := checkClip(&clip); err != nil {
		return nil, err
	}
	if clip.Poster != "" {
		if err := checkPoster(clip.Poster); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(clip.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidClip, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidClip, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInvalidClip, clip.Path)
	}
	if err := emptyClip(fi.Size()); err != nil {
		return nil, err
	}
	if clip.RecordedAt.IsZero() {
		clip.RecordedAt = fi.ModTime()
	}
	clip.RecordedAt = clip.RecordedAt.UTC()
	h := crc64.New(crcTable)
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("devicekit: reading %s: %w", clip.Path, err)
	}
	if n != fi.Size() {
		return nil, fmt.Errorf("devicekit: %s changed while it was read (%d bytes, then %d)", clip.Path, fi.Size(), n)
	}
	return &prepared{Clip: clip, size: n, mtime: fi.ModTime(), crc: h.Sum64()}, nil
}

var crcTable = crc64.MakeTable(crc64.ECMA)

// clipKeys are the two keys a clip may be stored under: its own, and the alternate one it
// takes when another recording holds its own (alternateName).
type clipKeys struct{ own, alt string }

func clipKeysOf(devicePrefix string, p *prepared) (clipKeys, error) {
	keys := clipKeys{
		own: objectKey(devicePrefix, p.RecordedAt, p.Name),
		alt: objectKey(devicePrefix, p.RecordedAt, alternateName(p.Name, p.crc)),
	}
	for _, key := range []string{keys.own, keys.alt} {
		if len(key) > protocol.MaxObjectKeyLen {
			return keys, fmt.Errorf("%w: object key %q is longer than %d bytes", ErrInvalidClip, key, protocol.MaxObjectKeyLen)
		}
	}
	return keys, nil
}

// Upload stores clip in OSS and announces it with an upload event, which it returns.
//
// Clips under MultipartThreshold go in one PutObject; larger ones in parts, resumably:
// the checkpoint and the event ID are kept in StateDir, so calling Upload again for the
// same file (same key, size and modification time) after a failure or a crash continues
// where it stopped and reports under the same event ID. The CRC-64 of the file is
// compared with the one OSS computed. OSS requests are signed with the kit's
// server-corrected clock when the device clock is off. On a 403 for expired or invalid credentials, or for a request
// time OSS finds skewed, the kit renews the credentials (and with them its clock offset)
// and tries once more; network errors, timeouts and 5xx answers are tried again after a
// jittered exponential backoff, up to 5 tries in all.
//
// Upload never replaces an object: PutObject, InitiateMultipartUpload and
// CompleteMultipartUpload carry x-oss-forbid-overwrite. When the key is taken (409
// FileAlreadyExists), and when a multipart upload resumes after CompleteMultipartUpload
// may have been sent (a crash before the checkpoint was removed, a lost answer) or OSS no
// longer knows it, the kit compares the object's size and CRC-64 with the file's
// (HeadObject): equal, the clip is already stored and Upload succeeds without sending it
// again; different, another recording holds the name, and the clip goes under its
// alternate name "{stem}~{CRC-64 in hex}{ext}", which the journal keeps for retries.
// HeadObject needs oss:GetObject: for it the kit asks for credentials of mode "r"
// (cached like the others) unless Config.Mode grants it.
//
// The completed event is written to the outbox in StateDir, then published with QoS 1;
// Upload waits up to RequestTimeout for the broker's acknowledgement. If none comes the
// event stays in the outbox and is published after the next connect; Upload still
// returns it with a nil error, since the object is stored and the event will follow.
//
// ctx bounds the upload; cancelling it stops a multipart upload at its next request and
// keeps the checkpoint for a later call.
//
// Errors: a bad clip wraps ErrInvalidClip (an empty file ErrEmptyClip) and nothing is
// uploaded; a credentials failure (*clipgate.AuthError, ...) is returned as is. A failed upload is
// announced with a "failed" event (its own event ID, so that a later successful retry is
// not taken for a duplicate) unless ctx ended; Upload returns that event together with
// the error.
func (k *Kit) Upload(ctx context.Context, clip Clip) (*clipgate.UploadEvent, error) {
	if k.isClosed() {
		return nil, ErrClosed
	}
	p, err := k.prepare(clip)
	if err != nil {
		return nil, err
	}
	creds, err := k.Credentials(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := clipKeysOf(k.devicePrefix(creds.OSS), p)
	if err != nil {
		return nil, err
	}
	j, err := k.journalEntry(keys, p)
	if err != nil {
		return nil, err
	}
	// One upload per clip at a time: they would share the checkpoint and the event ID.
	if _, busy := k.uploading.LoadOrStore(j.path, struct{}{}); busy {
		return nil, fmt.Errorf("%w: %s is already being uploaded to %s", ErrInvalidClip, p.Path, j.target())
	}
	defer k.uploading.Delete(j.path)
	k.sweepSoon(false)

	prog := newProgress(p.Progress, p.size)
	var respHeader http.Header
	var retry ossRetry
	for {
		j.Attempts++
		if err = k.saveJournal(j); err == nil {
			respHeader, err = k.store(ctx, creds.OSS, keys, p, j, prog)
		}
		if err == nil || ctx.Err() != nil {
			break
		}
		renew, wait, ok := retry.next(err)
		if !ok {
			break
		}
		if !renew {
			// A transient failure: try again after a backoff (a multipart upload resumes).
			k.log.Info().Err(err).Dur("wait", wait).Msg("OSS request failed; retrying")
			if werr := k.sleep(ctx, wait); werr != nil {
				err = werr
				break
			}
			continue
		}
		// The credentials (expired, revoked key) or the request time were refused: renew
		// the credentials, which also brings the server time, once.
		k.log.Info().Err(err).Msg("OSS refused the credentials or the request time; renewing them")
		k.invalidate(creds)
		var cerr error
		if creds, cerr = k.Credentials(ctx); cerr != nil {
			err = cerr
			break
		}
		if newKey := objectKey(k.devicePrefix(creds.OSS), p.RecordedAt, p.Name); newKey != keys.own {
			err = fmt.Errorf("devicekit: the OSS prefix changed during the upload (%q, then %q)", keys.own, newKey)
			break
		}
	}
	if err == nil {
		err = checkCRC(respHeader, p.crc)
	}
	ev := &clipgate.UploadEvent{
		V:           protocol.Version,
		ID:          j.ID,
		Device:      k.cfg.DeviceID,
		Status:      clipgate.StatusCompleted,
		Bucket:      creds.OSS.Bucket,
		Key:         j.target(),
		Size:        p.size,
		ContentType: p.ContentType,
		RecordedAt:  p.RecordedAt,
		UploadedAt:  k.now().UTC(),
		Attempts:    j.Attempts,
		Metadata:    p.Metadata,
	}
	if err != nil {
		ev.ID = newID()
		ev.Status = clipgate.StatusFailed
		ev.Error = truncate(err.Error(), protocol.MaxMessageLen)
		if ctx.Err() == nil && !errors.Is(err, ErrClosed) && !quietFailures(ctx) {
			if perr := k.announce(ev); perr != nil {
				k.log.Warn().Err(perr).Str("event", ev.ID).Msg("failed event queued in the outbox")
			}
		}
		return ev, fmt.Errorf("devicekit: upload of %s to %s: %w", p.Path, ev.Key, err)
	}
	prog.stored()
	ev.CRC64 = strconv.FormatUint(p.crc, 10)
	if p.Poster != "" {
		k.uploadPoster(ctx, creds.OSS, ev.Key, p.Poster)
	}
	if err := k.announce(ev); err != nil {
		if errors.Is(err, errOutbox) {
			return ev, err
		}
		k.log.Warn().Err(err).Str("event", ev.ID).Msg("upload event queued in the outbox")
	}
	k.removeJournal(j)
	return ev, nil
}

// store uploads the clip under the journal's target key, moving it to the alternate key
// (and recording that in the journal) when another recording holds its own. It returns
// the response header with the object's CRC-64: of the PutObject, of the
// CompleteMultipartUpload, or of the HeadObject that found the clip already stored.
func (k *Kit) store(ctx context.Context, info clipgate.OSSInfo, keys clipKeys, p *prepared, j *journal, prog *progress) (http.Header, error) {
	bucket, err := k.bucketFor(ctx, info)
	if err != nil {
		return nil, err
	}
	for {
		key := j.target()
		h, err := k.put(ctx, bucket, info, key, p, j.ID, prog)
		if !errors.Is(err, errKeyTaken) {
			return h, err
		}
		if key == keys.alt {
			return nil, fmt.Errorf("devicekit: %s and %s both hold other recordings; the clip is not stored (rename it): %w", keys.own, keys.alt, err)
		}
		k.log.Warn().Str("key", keys.own).Str("alternate", keys.alt).Msg("another recording holds the clip's key; storing it under its alternate name")
		j.Object = keys.alt
		if err := k.saveJournal(j); err != nil {
			return nil, err
		}
	}
}

// put uploads the clip to key, never over an existing object: in one PutObject below
// MultipartThreshold, else in parts. A key that holds this clip already counts as done;
// one that holds something else is errKeyTaken.
func (k *Kit) put(ctx context.Context, bucket *oss.Bucket, info clipgate.OSSInfo, key string, p *prepared, eventID string, prog *progress) (http.Header, error) {
	if p.size >= k.cfg.MultipartThreshold {
		return k.multipart(ctx, bucket, info, key, p, filepath.Join(k.cfg.StateDir, checkpointDir, eventID+".cp"), prog)
	}
	var h http.Header
	err := bucket.PutObjectFromFile(key, p.Path, prog.with(0, oss.ContentType(p.ContentType), oss.ForbidOverWrite(true),
		oss.GetResponseHeader(&h), oss.WithContext(ctx), k.dateHeader())...)
	if err == nil {
		prog.done(0, p.size)
		return h, nil
	}
	prog.failed(0)
	if !alreadyExists(err) {
		return nil, err
	}
	// The key is taken: by this clip (an earlier try whose answer was lost), or not.
	return k.existing(ctx, info, key, p, err)
}

// credentialsRefused reports whether err is OSS refusing the credentials themselves,
// which new credentials may cure: an unknown key (or an STS key without its token), an
// expired or invalid token, or a key and token from different AssumeRole calls
// (AccessKeyIdAndSecurityTokenNotMatch, https://www.alibabacloud.com/help/en/oss/support/0002-00000004).
func credentialsRefused(err error) bool {
	var se oss.ServiceError
	if !errors.As(err, &se) {
		var sp *oss.ServiceError
		if !errors.As(err, &sp) || sp == nil {
			return false
		}
		se = *sp
	}
	if se.StatusCode != http.StatusForbidden {
		return false
	}
	switch se.Code {
	case "InvalidAccessKeyId", "SecurityTokenExpired", "InvalidSecurityToken", "AccessKeyIdAndSecurityTokenNotMatch":
		return true
	}
	return false
}

// checkCRC compares the CRC-64 that OSS reports with the file's.
func checkCRC(h http.Header, local uint64) error {
	v := h.Get(oss.HTTPHeaderOssCRC64)
	if v == "" {
		return errors.New("devicekit: OSS did not report the object's CRC-64; integrity unverified")
	}
	remote, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("devicekit: OSS reported a malformed CRC-64 %q", v)
	}
	if remote != local {
		return fmt.Errorf("devicekit: CRC-64 mismatch: file %d, stored object %d (the file changed during the upload?)", local, remote)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// newID returns a random event or request ID: 22 characters of base64url.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (k *Kit) isClosed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.closed
}

// journal records the event ID and attempt count of a clip in flight, so that a retry
// after a failure or a crash reuses them (and the multipart checkpoint named after the ID),
// and the key the clip goes under once its own was found taken. It names the file, so that
// the sweep (sweep.go) abandons the upload of a file that is gone or changed.
type journal struct {
	ID       string `json:"id"`
	Key      string `json:"key"`              // the clip's own key
	Object   string `json:"object,omitempty"` // the alternate key, once the own one was found taken
	Attempts int    `json:"attempts"`
	File     string `json:"file,omitempty"` // the clip's file, its size and modification time (UnixNano)
	Size     int64  `json:"size,omitempty"`
	MTime    int64  `json:"mtime,omitempty"`
	path     string
}

// target is the key the clip goes under.
func (j *journal) target() string {
	if j.Object != "" {
		return j.Object
	}
	return j.Key
}

func (k *Kit) journalEntry(keys clipKeys, p *prepared) (*journal, error) {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\n%d\n%d", keys.own, p.size, p.mtime.UnixNano()))
	path := filepath.Join(k.cfg.StateDir, journalDir, hex.EncodeToString(sum[:16])+".json")
	j := &journal{path: path}
	if b, err := os.ReadFile(path); err == nil {
		if json.Unmarshal(b, j) == nil && j.Key == keys.own && protocolID(j.ID) {
			if j.Object != "" && j.Object != keys.alt {
				j.Object = "" // not this content's alternate: start from the own key
			}
			j.path = path
			j.File, j.Size, j.MTime = absPath(p.Path), p.size, p.mtime.UnixNano()
			return j, nil
		}
		k.log.Warn().Str("path", path).Msg("unreadable upload journal entry replaced")
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("devicekit: upload journal: %w", err)
	}
	*j = journal{ID: newID(), Key: keys.own, path: path}
	j.File, j.Size, j.MTime = absPath(p.Path), p.size, p.mtime.UnixNano()
	return j, nil
}

// absPath returns path made absolute, or "" if it cannot be.
func absPath(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	return abs
}

func protocolID(id string) bool {
	ev := clipgate.UploadEvent{V: protocol.Version, ID: id, Device: "xx", Status: clipgate.StatusFailed, Error: "x"}
	return protocol.ValidateUploadEvent(&ev) == nil
}

func (k *Kit) saveJournal(j *journal) error {
	b, _ := json.Marshal(j)
	if err := writeFileAtomic(j.path, b); err != nil {
		return fmt.Errorf("devicekit: upload journal: %w", err)
	}
	return nil
}

func (k *Kit) removeJournal(j *journal) {
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		k.log.Warn().Err(err).Msg("removing the upload journal entry")
	}
}

// writeFileAtomic replaces path with b (mode 0600) so that a crash leaves the old
// content or the new (internal/atomicfile).
func writeFileAtomic(path string, b []byte) error {
	return atomicfile.Write(path, b, 0o600)
}
