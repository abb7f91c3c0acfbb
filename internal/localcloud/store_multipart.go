package localcloud

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// uploadRecord is the durable record of one multipart upload (uploads/{id}/upload.json).
type uploadRecord struct {
	ID          string            `json:"id"`
	Key         string            `json:"key"`
	ContentType string            `json:"contentType"`
	Headers     map[string]string `json:"headers,omitempty"`
	Initiated   time.Time         `json:"initiated"`
}

// partRecord is the durable record of one uploaded part (uploads/{id}/part-NNNNN.json).
type partRecord struct {
	Number   int       `json:"number"`
	Size     int64     `json:"size"`
	ETag     string    `json:"etag"` // unquoted upper-case hex MD5
	CRC64    uint64    `json:"crc64"`
	Blob     string    `json:"blob"`
	Modified time.Time `json:"modified"`
}

// upload is a multipart upload in progress.
type upload struct {
	uploadRecord
	dir string

	mu    sync.Mutex
	parts map[int]*partRecord
	done  bool // completed or aborted
}

var errNoSuchUpload = errors.New("no such upload")

// validUploadID reports whether id has the form of the IDs this store issues, which keeps
// client-supplied IDs from naming anything but an upload directory.
func validUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

func partFile(n int) string { return fmt.Sprintf("part-%05d.json", n) }

func (b *bucket) loadUploads() error {
	entries, err := os.ReadDir(b.upDir)
	if err != nil {
		return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
	}
	for _, e := range entries {
		dir := filepath.Join(b.upDir, e.Name())
		data, err := os.ReadFile(filepath.Join(dir, "upload.json"))
		if !validUploadID(e.Name()) || errors.Is(err, os.ErrNotExist) {
			// A crash during initiate or after complete/abort began: the upload is gone.
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
		}
		u := &upload{dir: dir, parts: make(map[int]*partRecord)}
		if err := json.Unmarshal(data, &u.uploadRecord); err != nil || u.ID != e.Name() {
			return fmt.Errorf("localcloud: bucket %s: corrupt upload record %s", b.name, e.Name())
		}
		files, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
		}
		for _, f := range files {
			if !strings.HasPrefix(f.Name(), "part-") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, f.Name()))
			if err != nil {
				return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
			}
			var p partRecord
			if err := json.Unmarshal(data, &p); err != nil || partFile(p.Number) != f.Name() {
				return fmt.Errorf("localcloud: bucket %s: corrupt part record %s/%s", b.name, e.Name(), f.Name())
			}
			u.parts[p.Number] = &p
		}
		b.uploads[u.ID] = u
	}
	return nil
}

// initiate starts a multipart upload and makes it durable.
func (b *bucket) initiate(rec uploadRecord) (*upload, error) {
	rec.ID = randomHex(16, true)
	u := &upload{uploadRecord: rec, dir: filepath.Join(b.upDir, rec.ID), parts: make(map[int]*partRecord)}
	data, err := json.Marshal(&u.uploadRecord)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(u.dir, 0o700); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(b.tmpDir, filepath.Join(u.dir, "upload.json"), data); err != nil {
		_ = os.RemoveAll(u.dir)
		return nil, err
	}
	if err := syncDir(b.upDir); err != nil {
		return nil, err
	}
	b.upMu.Lock()
	b.uploads[u.ID] = u
	b.upMu.Unlock()
	return u, nil
}

// upload returns the upload with id for key.
func (b *bucket) upload(id, key string) (*upload, error) {
	if !validUploadID(id) {
		return nil, errNoSuchUpload
	}
	b.upMu.Lock()
	u := b.uploads[id]
	b.upMu.Unlock()
	if u == nil || u.Key != key {
		return nil, errNoSuchUpload
	}
	return u, nil
}

// putPart records a part whose blob is complete and synced; a previous part with the same
// number is replaced and its blob removed.
func (b *bucket) putPart(u *upload, p partRecord) error {
	data, err := json.Marshal(&p)
	if err != nil {
		return err
	}
	u.mu.Lock()
	if u.done {
		u.mu.Unlock()
		return errNoSuchUpload
	}
	err = b.dataSync.sync()
	if err == nil {
		err = writeFileAtomic(b.tmpDir, filepath.Join(u.dir, partFile(p.Number)), data)
	}
	var old *partRecord
	if err == nil {
		old = u.parts[p.Number]
		u.parts[p.Number] = &p
	}
	u.mu.Unlock()
	if old != nil {
		b.removeBlobs([]string{old.Blob})
	}
	return err
}

// listParts returns the parts of u in ascending order.
func (b *bucket) listParts(u *upload) ([]partRecord, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil, errNoSuchUpload
	}
	out := make([]partRecord, 0, len(u.parts))
	for _, p := range u.parts {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b partRecord) int { return a.Number - b.Number })
	return out, nil
}

// abort discards u and its parts.
func (b *bucket) abort(u *upload) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return errNoSuchUpload
	}
	return b.finish(u)
}

// finish removes u (held locked) from the index and from disk, with its part blobs.
func (b *bucket) finish(u *upload) error {
	u.done = true
	b.upMu.Lock()
	delete(b.uploads, u.ID)
	b.upMu.Unlock()
	// upload.json goes first: a crash after that leaves a directory that start removes.
	if err := os.Remove(filepath.Join(u.dir, "upload.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, p := range u.parts {
		b.removeBlobs([]string{p.Blob})
	}
	return os.RemoveAll(u.dir)
}

// completePart is one entry of a CompleteMultipartUpload request.
type completePart struct {
	Number int
	ETag   string
}

// complete assembles the listed parts of u into an object. Parts are checked as OSS does:
// ascending numbers (InvalidPartOrder), existing with the given ETag (InvalidPart), every
// part but the last at least 100 KB (EntityTooSmall). The object's blobs are hard links to
// the parts' blobs, so the upload and the object never share a file name.
func (b *bucket) complete(u *upload, list []completePart, forbidOverwrite bool, now time.Time) (*objectMeta, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil, errNoSuchUpload
	}
	if len(list) == 0 {
		return nil, &Error{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: "The CompleteMultipartUpload request lists no parts."}
	}
	parts := make([]*partRecord, len(list))
	for i, c := range list {
		if i > 0 && c.Number <= list[i-1].Number {
			return nil, &Error{Status: http.StatusBadRequest, Code: "InvalidPartOrder", Message: "The list of parts was not in ascending order. Parts must be ordered by part number."}
		}
		p := u.parts[c.Number]
		if p == nil || !strings.EqualFold(strings.Trim(c.ETag, `"`), p.ETag) {
			return nil, &Error{Status: http.StatusBadRequest, Code: "InvalidPart", Message: "One or more of the specified parts could not be found or the specified entity tag might not have matched the part's entity tag. Part " + strconv.Itoa(c.Number) + "."}
		}
		parts[i] = p
	}
	for _, p := range parts[:len(parts)-1] {
		if p.Size < minPartSize {
			return nil, &Error{Status: http.StatusBadRequest, Code: "EntityTooSmall", Message: "Your proposed upload is smaller than the minimum allowed size: part " + strconv.Itoa(p.Number) + " is " + strconv.FormatInt(p.Size, 10) + " bytes, the minimum is 102400."}
		}
	}

	m := &objectMeta{
		Key:         u.Key,
		Type:        objectMultipart,
		ContentType: u.ContentType,
		Modified:    now,
		Headers:     u.Headers,
		Segments:    make([]segment, 0, len(parts)),
	}
	md5s := md5.New()
	var sum [md5.Size]byte
	for _, p := range parts {
		name, err := b.linkBlob(p.Blob)
		if err != nil {
			b.removeBlobs(blobNames(m.Segments))
			return nil, err
		}
		m.Segments = append(m.Segments, segment{Blob: name, Size: p.Size})
		if _, err := hex.Decode(sum[:], []byte(p.ETag)); err != nil {
			b.removeBlobs(blobNames(m.Segments))
			return nil, fmt.Errorf("part %d has a corrupt ETag %q", p.Number, p.ETag)
		}
		md5s.Write(sum[:])
		m.CRC64 = crc64Combine(m.CRC64, p.CRC64, p.Size)
		m.Size += p.Size
	}
	if m.Size > maxObjectSize*maxPartNumber {
		b.removeBlobs(blobNames(m.Segments))
		return nil, &Error{Status: http.StatusBadRequest, Code: "EntityTooLarge", Message: "The object would exceed the maximum size."}
	}
	m.ETag = strings.ToUpper(hex.EncodeToString(md5s.Sum(nil))) + "-" + strconv.Itoa(len(parts))

	unlock := b.locks.lock(u.Key)
	err := b.commit(u.Key, m, forbidOverwrite)
	unlock()
	if err != nil {
		b.removeBlobs(blobNames(m.Segments))
		return nil, err
	}
	if err := b.finish(u); err != nil {
		// The object is committed; a leftover upload directory is harmless.
		return m, nil
	}
	return m, nil
}

func blobNames(segs []segment) []string {
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = s.Blob
	}
	return out
}

// linkBlob gives the blob src a second name (a hard link, or a copy where links fail).
func (b *bucket) linkBlob(src string) (string, error) { return b.linkBlobFrom(b, src) }

// linkBlobFrom gives the blob src of bucket from a name in b (a hard link, or a copy where
// links fail). Only blobs that are never written again may be shared this way.
func (b *bucket) linkBlobFrom(from *bucket, src string) (string, error) {
	name := randomHex(16, false)
	err := os.Link(from.blobPath(src), b.blobPath(name))
	if err == nil {
		return name, nil
	}
	in, err := os.Open(from.blobPath(src))
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(b.blobPath(name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(b.blobPath(name))
		return "", err
	}
	return name, nil
}

// uploadPage is one page of ListMultipartUploads.
type uploadPage struct {
	uploads   []uploadRecord
	prefixes  []string
	truncated bool
	// nextKey and nextID are the position of the last entry returned: a key and upload ID,
	// or a common prefix and "".
	nextKey, nextID string
}

// listUploads lists the uploads in progress whose keys have prefix, ordered by key and then
// upload ID, starting after (keyMarker, idMarker): keys after keyMarker, and with idMarker
// also keyMarker's uploads with a greater ID. Keys with delimiter after the prefix roll up
// into common prefixes, each one entry at its own position in the order (as bucket.list
// does), so that a common prefix passed back as keyMarker skips all its uploads.
func (b *bucket) listUploads(prefix, delimiter, keyMarker, idMarker string, max int) uploadPage {
	b.upMu.Lock()
	all := make([]uploadRecord, 0, len(b.uploads))
	for _, u := range b.uploads {
		if strings.HasPrefix(u.Key, prefix) {
			all = append(all, u.uploadRecord)
		}
	}
	b.upMu.Unlock()
	slices.SortFunc(all, func(x, y uploadRecord) int {
		if c := strings.Compare(x.Key, y.Key); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	after := func(u *uploadRecord) bool {
		return u.Key > keyMarker || (idMarker != "" && u.Key == keyMarker && u.ID > idMarker)
	}
	var p uploadPage
	for i := 0; i < len(all); i++ {
		u := &all[i]
		if delimiter != "" {
			if j := strings.Index(u.Key[len(prefix):], delimiter); j >= 0 {
				cp := u.Key[:len(prefix)+j+len(delimiter)]
				if cp > keyMarker {
					if len(p.uploads)+len(p.prefixes) == max {
						p.truncated = true
						break
					}
					p.prefixes = append(p.prefixes, cp)
					p.nextKey, p.nextID = cp, ""
				}
				for i+1 < len(all) && strings.HasPrefix(all[i+1].Key, cp) {
					i++
				}
				continue
			}
		}
		if !after(u) {
			continue
		}
		if len(p.uploads)+len(p.prefixes) == max {
			p.truncated = true
			break
		}
		p.uploads = append(p.uploads, *u)
		p.nextKey, p.nextID = u.Key, u.ID
	}
	return p
}

// cloneData gives b its own copy of the data of o, an object of bucket src, as the segments
// of a new object: a Multipart object's part blobs, which are never written again, are
// linked; any other object's data is copied into a fresh blob, which commit may then turn
// into an inline record.
func (b *bucket) cloneData(src *bucket, o *objectReader) ([]segment, error) {
	if o.Type == objectMultipart {
		segs := make([]segment, 0, len(o.Segments))
		for _, sg := range o.Segments {
			name, err := b.linkBlobFrom(src, sg.Blob)
			if err != nil {
				b.removeBlobs(blobNames(segs))
				return nil, err
			}
			segs = append(segs, segment{Blob: name, Size: sg.Size})
		}
		return segs, nil
	}
	f, name, err := b.newBlob()
	if err != nil {
		return nil, err
	}
	_, err = src.writeRange(f, o, 0, o.Size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.removeBlobs([]string{name})
		return nil, err
	}
	return []segment{{Blob: name, Size: o.Size}}, nil
}
