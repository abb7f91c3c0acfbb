package devicekit

import (
	"context"
	"crypto/hmac"
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
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/atomicfile"
	"github.com/clipgate/clipgate/internal/identity"
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

// prepared is a validated clip, with its file open for the whole Upload.
//
// The file is read once, as it is sent: the SDK computes the CRC-64 of the bytes it reads
// into each request body (with its CRC check enabled, which provider.go makes sure of) and
// compares it with the one OSS reports. Both are then of the bytes sent, so a file that
// changes during the upload no longer shows as a CRC mismatch; unchanged, which compares
// the file's size and modification time after the upload with those before it, finds
// that instead.
type prepared struct {
	Clip
	file   *os.File
	info   os.FileInfo // of file when it was opened
	size   int64
	mtime  time.Time
	crc    uint64 // the file's CRC-64, once hasCRC
	hasCRC bool
}

// setCRC records the CRC-64 of the file's bytes, as sent.
func (p *prepared) setCRC(crc uint64) { p.crc, p.hasCRC = crc, true }

// checksum returns the file's CRC-64, reading the file if no upload has computed it yet:
// a key that answered 409 (the comparison with what it holds), a journal entry that
// names an alternate key, a multipart upload resumed after CompleteMultipartUpload.
func (p *prepared) checksum() (uint64, error) {
	if p.hasCRC {
		return p.crc, nil
	}
	h := crc64.New(crcTable)
	n, err := io.Copy(h, io.NewSectionReader(p.file, 0, p.size))
	if err != nil {
		return 0, fmt.Errorf("devicekit: reading %s: %w", p.Path, err)
	}
	if n != p.size {
		return 0, fmt.Errorf("devicekit: %s changed while it was read (%d bytes, then %d)", p.Path, p.size, n)
	}
	if err := p.unchanged(); err != nil {
		return 0, err
	}
	p.setCRC(h.Sum64())
	return p.crc, nil
}

// unchanged checks that the clip is still the file that was opened, as it was then: the
// open file has the same size and modification time, and Path, if it still exists, names
// the same file. (A file deleted during a single PutObject was still read whole through
// the open file; a multipart upload opens Path for every part and fails on it.) A write
// within the same clock tick as the last write before the open, keeping the size, would
// go unseen: a clip must be complete before it is uploaded.
func (p *prepared) unchanged() error {
	fi, err := p.file.Stat()
	if err != nil {
		return fmt.Errorf("devicekit: %s: %w", p.Path, err)
	}
	if fi.Size() != p.size || !fi.ModTime().Equal(p.mtime) {
		return fmt.Errorf("devicekit: %s changed during the upload (%d bytes modified %s, then %d bytes modified %s)",
			p.Path, p.size, p.mtime.Format(time.RFC3339Nano), fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
	}
	if cur, err := os.Stat(p.Path); err == nil && !os.SameFile(cur, p.info) {
		return fmt.Errorf("devicekit: %s was replaced by another file during the upload", p.Path)
	}
	return nil
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

// prepare checks clip and opens its file; the caller closes p.file.
func (k *Kit) prepare(clip Clip) (_ *prepared, err error) {
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
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
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
	return &prepared{Clip: clip, file: f, info: fi, size: fi.Size(), mtime: fi.ModTime()}, nil
}

var crcTable = crc64.MakeTable(crc64.ECMA)

// clipKeys are the two keys a clip may be stored under: its own, and the alternate one it
// takes when another recording holds its own (alternateName, which names the clip's
// CRC-64: computed when needed).
type clipKeys struct{ prefix, own string }

func clipKeysOf(devicePrefix string, p *prepared) (clipKeys, error) {
	keys := clipKeys{prefix: devicePrefix, own: objectKey(devicePrefix, p.RecordedAt, p.Name)}
	// The alternate name is as long whatever the CRC-64.
	for _, key := range []string{keys.own, objectKey(devicePrefix, p.RecordedAt, alternateName(p.Name, 0))} {
		if len(key) > protocol.MaxObjectKeyLen {
			return keys, fmt.Errorf("%w: object key %q is longer than %d bytes", ErrInvalidClip, key, protocol.MaxObjectKeyLen)
		}
	}
	return keys, nil
}

// alt returns the clip's alternate key.
func (keys clipKeys) alt(p *prepared) (string, error) {
	crc, err := p.checksum()
	if err != nil {
		return "", err
	}
	return objectKey(keys.prefix, p.RecordedAt, alternateName(p.Name, crc)), nil
}

// Upload stores clip in OSS and announces it with an upload event, which it returns.
//
// Clips under MultipartThreshold go in one PutObject; larger ones in parts, resumably:
// the checkpoint and the event ID are kept in StateDir, so calling Upload again for the
// same file (same key, size and modification time) after a failure or a crash continues
// where it stopped and reports under the same event ID. The file is read once, as it is
// sent; the CRC-64 of the bytes sent is compared with the one OSS computed, and the
// file's size and modification time after the upload with those before it (a file that
// changed or was replaced meanwhile fails the upload). OSS requests are signed with the
// kit's server-corrected clock when the device clock is off. On a 403 for expired or
// invalid credentials, or for a request time OSS finds skewed, the kit renews the
// credentials (and with them its clock offset) and tries once more; network errors,
// timeouts and 5xx answers are tried again after a jittered exponential backoff, up to 5
// tries in all.
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
// The event ID of a completed upload is derived from the device key, the object key
// and the file's size and modification time: every Upload of the same file to the same
// key announces it under the same ID, after a crash as after a success (consumers
// deduplicate by ID). The completed event is put in the outbox in StateDir, then
// published with QoS 1; Upload waits up to RequestTimeout for the broker's
// acknowledgement. If none comes the event is synced to disk, stays in the outbox and is
// published after the next connect; Upload still returns it with a nil error, since the
// object is stored and the event will follow. A clip under MultipartThreshold thus costs
// no fsync on the device when the broker acknowledges in time (see "Crash safety" in
// upload.go); a device that crashes or loses power before Upload returns must call it
// again for the same file, which announces the clip under the same ID.
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
	defer p.file.Close()
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

	// A multipart upload's journal entry is synced before its first request: the
	// checkpoint is named after its event ID. A single PutObject's is not (see "Crash
	// safety" below).
	durable := p.size >= k.cfg.MultipartThreshold
	prog := newProgress(p.Progress, p.size)
	var respHeader http.Header
	var retry ossRetry
	for {
		j.Attempts++
		if err = k.writeJournal(j, durable); err == nil {
			step("journal")
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
		err = p.unchanged()
	}
	if err == nil {
		if !p.hasCRC {
			err = errors.New("devicekit: internal error: no CRC-64 of the bytes sent") // store always sets it
		} else {
			err = checkCRC(respHeader, p.crc)
		}
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
		if !durable {
			// Keep the attempts and the alternate key for a later call, on disk.
			if jerr := k.writeJournal(j, true); jerr != nil {
				k.log.Warn().Err(jerr).Msg("upload journal entry not kept")
			}
		}
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
	step("stored")
	if p.Poster != "" {
		k.uploadPoster(ctx, creds.OSS, ev.Key, p.Poster)
	}
	if err := k.announceUpload(ev); err != nil {
		if errors.Is(err, errOutbox) {
			return ev, err
		}
		k.log.Warn().Err(err).Str("event", ev.ID).Msg("upload event queued in the outbox")
	}
	step("announced")
	k.removeJournal(j)
	return ev, nil
}

// Crash safety of a single PutObject, which syncs nothing on the device when the broker
// acknowledges the event in time.
//
// What must hold is what held when the journal entry and the outbox entry were each
// synced before use: once Upload has returned nil the event reaches the broker, even if
// the device then loses power; until then, calling Upload again for the same file
// announces the clip, and never under a second event ID (consumers deduplicate by ID:
// two IDs would be two clips). A caller calls Upload again after a crash anyway: a device
// that loses power during the PutObject has nothing on its disk that would announce the
// clip, with or without syncs.
//
// The steps (named as stepHook names them):
//
//  1. "journal": the journal entry is written, not synced. It keeps the attempts and the
//     alternate key for a later call; a write that fails (the disk full) stops the upload
//     before anything is sent.
//  2. "stored": PutObject, with x-oss-forbid-overwrite; the CRC-64 and the file checked.
//  3. "outbox": the event is written to the outbox, not synced.
//  4. "acknowledged": it is published with QoS 1 and the broker acknowledged it; then
//     the outbox entry is removed. Without an acknowledgement within RequestTimeout, the
//     outbox entry is synced (file and directory) instead, and stays.
//  5. "announced": the journal entry is removed and Upload returns.
//
// Why a crash anywhere loses nothing and announces nothing twice:
//
//   - The event ID does not depend on anything written: it is derived from the device
//     key, the target key and the file's size and modification time (eventID), so the
//     next Upload of the same file computes the same ID, whatever the crash kept.
//   - A crash before 2 completes: the next Upload stores the clip (or finds it stored:
//     409, then HeadObject shows the same size and CRC-64) and announces it.
//   - A crash after 2 and before Upload returns: whatever was published carries the ID
//     that the next Upload uses, so consumers see one clip. A process crash keeps the
//     unsynced files (the page cache outlives the process): the outbox entry is
//     published after the next connect even if Upload is never called again. A power
//     loss may lose them or leave them empty; the next Upload announces the clip again,
//     an empty outbox entry is removed by the flush, and an empty journal entry is
//     replaced.
//   - Once Upload has returned, the broker acknowledged the event (after which a synced
//     outbox entry was removed too), or the outbox entry is synced.
//
// A failed event, and a Recording's, are still synced before they are published: they
// cannot be announced again by calling anything again. A multipart upload keeps its
// synced journal entry and checkpoints (the parts stored must outlive a power loss) and
// announces its completed event as above.
//
// TestUploadCrashAtEachStep and TestUploadEventSurvivesBrokerCut (crash_test.go) check this.

// eventKeyFile holds the key of the derived event IDs, in StateDir.
const eventKeyFile = "event.key"

// loadEventKey reads the event-ID key of the state directory, or makes one (random, 0600).
// It is not the device key: that one changes when the fleet key rotates (and a
// certificate device has none), while an event's ID must stay the same across a crash.
func loadEventKey(stateDir string) ([]byte, error) {
	path := filepath.Join(stateDir, eventKeyFile)
	key, err := identity.LoadKey(path)
	if errors.Is(err, os.ErrNotExist) {
		if key, err = identity.NewFleetKey(); err == nil { // 32 random bytes
			err = identity.WriteKey(path, key)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("devicekit: event key: %w", err)
	}
	return key, nil
}

// eventID returns the event ID of the clip p stored under key: an HMAC under the state
// directory's event key of the key and the file's size and modification time, as 22
// characters of base64url. Another recording under the same name (which goes to the alternate key)
// gets another ID; so does the same file under another name.
func (k *Kit) eventID(key string, p *prepared) string {
	m := hmac.New(sha256.New, k.eventKey)
	fmt.Fprintf(m, "clipgate upload event\n%s\n%s\n%d\n%d", k.cfg.DeviceID, key, p.size, p.mtime.UnixNano())
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// store uploads the clip under the journal's target key, moving it to the alternate key
// (and recording that in the journal) when another recording holds its own. It returns
// the response header with the object's CRC-64 (of the PutObject, of the
// CompleteMultipartUpload, or of the HeadObject that found the clip already stored), and
// sets p's CRC-64 to that of the bytes it sent (or read, to compare).
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
		alt, aerr := keys.alt(p)
		if aerr != nil {
			return nil, aerr
		}
		if key == alt {
			return nil, fmt.Errorf("devicekit: %s and %s both hold other recordings; the clip is not stored (rename it): %w", keys.own, alt, err)
		}
		k.log.Warn().Str("key", keys.own).Str("alternate", alt).Msg("another recording holds the clip's key; storing it under its alternate name")
		if j.ID == k.eventID(keys.own, p) {
			j.ID = k.eventID(alt, p) // another object: another event
		}
		j.Object = alt
		if err := k.writeJournal(j, p.size >= k.cfg.MultipartThreshold); err != nil {
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
	// The body is read from the open file; the SDK hashes what it reads (ClientCRC).
	req := &oss.PutObjectRequest{ObjectKey: key, Reader: io.NewSectionReader(p.file, 0, p.size)}
	resp, err := bucket.DoPutObject(req, prog.with(0, oss.ContentType(p.ContentType), oss.ForbidOverWrite(true),
		oss.WithContext(ctx), k.dateHeader()))
	if resp != nil {
		resp.Body.Close()
	}
	if err == nil {
		p.setCRC(resp.ClientCRC)
		prog.done(0, p.size)
		return resp.Headers, nil
	}
	prog.failed(0)
	if cerr := p.unchanged(); cerr != nil {
		return nil, cerr // not worth a retry (a shorter file fails the request)
	}
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
// the sweep (sweep.go) abandons the upload of a file that is gone or changed. A new
// entry's ID is the derived one (eventID); an entry of an older kit may hold a random
// one, which is kept. A single PutObject's entry is synced only when the upload fails
// (see "Crash safety"): its ID does not depend on it.
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
			if j.Object != "" {
				alt, err := keys.alt(p)
				if err != nil {
					return nil, err
				}
				if j.Object != alt {
					j.Object = "" // not this content's alternate: start from the own key
				}
			}
			j.path = path
			j.File, j.Size, j.MTime = absPath(p.Path), p.size, p.mtime.UnixNano()
			return j, nil
		}
		k.log.Warn().Str("path", path).Msg("unreadable upload journal entry replaced")
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("devicekit: upload journal: %w", err)
	}
	*j = journal{ID: k.eventID(keys.own, p), Key: keys.own, path: path}
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

// saveJournal writes j to disk, synced.
func (k *Kit) saveJournal(j *journal) error { return k.writeJournal(j, true) }

// writeJournal writes j atomically, synced if durable (else a power loss may lose it).
func (k *Kit) writeJournal(j *journal, durable bool) error {
	b, _ := json.Marshal(j)
	if err := writeFile(j.path, b, durable); err != nil {
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

// writeFile is writeFileAtomic if durable, else atomicfile.WriteVolatile: a process
// crash leaves the old content or the new, a power loss either or nothing.
func writeFile(path string, b []byte, durable bool) error {
	if durable {
		return writeFileAtomic(path, b)
	}
	return atomicfile.WriteVolatile(path, b, 0o600)
}

// stepHook, when set (by tests), is called at each step of Upload that a crash may
// separate from the next (see "Crash safety"), with its name: "journal" (the journal
// entry written), "stored" (the object stored and checked), "outbox" (the event in the
// outbox), "acknowledged" (the broker acknowledged it), "announced" (the outbox entry
// removed, or kept for a later flush). The kill tests stop the upload there.
var stepHook atomic.Pointer[func(step string)]

func step(name string) {
	if h := stepHook.Load(); h != nil {
		(*h)(name)
	}
}
