package localcloud

// Storage of the local OSS.
//
// Layout under {DataDir}/oss/{bucket}/:
//
//	data/{sha256(key)}     one record per object: [inline data][metadata JSON][trailer]
//	data/{id}              blobs under random 32-hex names: appendable data, multipart parts
//	                       and the objects they were linked into, PutObject data in flight
//	uploads/{uploadID}/    upload.json and part-NNNNN.json of one multipart upload
//	tmp/                   records being written (emptied at start)
//
// Object keys never become file names: records are named by the SHA-256 of the key, so no
// key can reach outside the bucket directory. Renaming a complete, synced record into
// data/{sha256(key)} is the commit point of every write, so a crash never exposes half an
// object; a blob that no record or upload references (left by a crash) is removed at start.
//
// Two record forms:
//
//   - Inline (PutObject): the record file is the object's data followed by its metadata.
//     Commit: the handler has written the data (not fsynced) into a fresh blob; commit
//     appends the metadata and trailer, fsyncs the file, renames it over data/{sha256(key)}
//     and fsyncs data/ (through the bucket's group sync, below). Two fsyncs, the second
//     shared with concurrent commits. Crash argument: the file's contents are durable
//     before the rename, and rename replaces the name atomically, so after a crash the name
//     holds either the previous record or the complete new one; before the directory fsync
//     the write is not acknowledged, so either outcome is allowed. If the crash precedes
//     the rename, or the rename's removal of the source name was not persisted, the blob
//     name is unreferenced and swept at start (unlinking that name leaves the record's
//     inode alone). No ordering between directory operations is assumed.
//   - External (appendable and multipart objects, which extend a blob or link parts): the
//     record holds metadata only, with segments naming blobs. Commit: fsync data/ (the
//     blobs' names must be durable before a record names them), write the record to tmp/,
//     fsync it, rename it over data/{sha256(key)}, fsync data/.
//
// Group commit: every fsync of data/ above (and a multipart part's) goes through
// groupSync, which waits for an fsync of data/ that began after the caller's own rename or
// removal had completed, and returns that fsync's result; concurrent commits (of different
// keys: a key's writers are serialized by its lock) share one fsync. This does not weaken
// the argument, which is made per commit: each commit's steps keep their order (its file
// is fsynced before its own rename, its rename precedes the fsync that covers it), each
// is acknowledged only after that fsync succeeded, and a crash during a batch leaves each
// of its keys at the old or the whole new version independently of the others, none of
// them acknowledged. A failed fsync fails every commit of its batch (none acknowledged;
// the index already shows the renamed files, which is what the disk holds if the rename
// survives). A batch's renames may reach the disk in any order, which the argument never
// relied on.
//
// Readers of an inline object open its file under the key's lock, which commits hold from
// the rename to the index update, so the file a reader opens is the version it was given;
// an overwrite renames over the name and the reader's descriptor keeps the old inode.
// Readers of external objects count themselves on the object, and blobs of a replaced
// version are removed only once unread.
//
// Stores written before records moved into data/ kept them as meta/{sha256(key)}.json;
// they are converted to external records at start.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Object types as OSS reports them in x-oss-object-type.
const (
	objectNormal     = "Normal"
	objectAppendable = "Appendable"
	objectMultipart  = "Multipart"
)

// Size limits of OSS.
const (
	maxObjectSize  = 5 << 30 // PutObject body and appendable object total
	maxPartSize    = 5 << 30
	minPartSize    = 100 << 10 // every part but the last
	maxPartNumber  = 10000
	maxUserMetaLen = 8 << 10
)

var errObjectExists = errors.New("object exists")

// objectMeta is the durable record of one object.
type objectMeta struct {
	Key         string            `json:"key"`
	Type        string            `json:"type"`
	Size        int64             `json:"size"`
	CRC64       uint64            `json:"crc64"`
	ETag        string            `json:"etag"` // unquoted
	ContentType string            `json:"contentType"`
	Modified    time.Time         `json:"modified"`
	Headers     map[string]string `json:"headers,omitempty"` // x-oss-meta-* and stored standard headers
	Segments    []segment         `json:"segments"`
	// MD5State is the marshaled MD5 state of an appendable object, written by stores whose
	// appendable ETags were the MD5 of the content; it is read and no longer used (an old
	// record keeps its ETag until its next append).
	MD5State []byte `json:"md5State,omitempty"`
	// Inline is set when the data is the first Size bytes of the record file itself
	// (Segments is then empty).
	Inline bool `json:"inline,omitempty"`
}

// segment is a run of an object's bytes held in one blob.
type segment struct {
	Blob string `json:"blob"`
	Size int64  `json:"size"`
}

// object is an immutable published objectMeta plus reader accounting, so that blobs of a
// replaced or deleted external object are removed only once no GET still reads them.
type object struct {
	objectMeta
	readers    int  // guarded by bucket.mu; external objects only
	superseded bool // guarded by bucket.mu
	orphans    []string
}

// objectReader is one reader's hold on an object version (see bucket.acquire).
type objectReader struct {
	*object
	f   *os.File // inline objects: the version's record file
	err error    // inline objects: why f could not be opened
}

// store holds every configured bucket.
type store struct {
	root    string
	buckets map[string]*bucket
}

// bucket is one bucket: an in-memory index over its durable records.
type bucket struct {
	name                   string
	dataDir, upDir, tmpDir string

	mu      sync.RWMutex
	objects map[string]*object
	keys    []string // sorted

	locks    keyLocks   // serialize writers of one key
	dataSync *groupSync // fsyncs of data/, batched across concurrent commits

	upMu    sync.Mutex
	uploads map[string]*upload
}

// openStore opens (creating as needed) the storage of the given buckets under dir and loads
// its index, removing what a crash left behind.
func openStore(dir string, buckets []string) (*store, error) {
	s := &store{root: dir, buckets: make(map[string]*bucket, len(buckets))}
	for _, name := range buckets {
		if _, dup := s.buckets[name]; dup {
			continue
		}
		b, err := openBucket(filepath.Join(dir, name), name)
		if err != nil {
			return nil, err
		}
		s.buckets[name] = b
	}
	return s, nil
}

func openBucket(dir, name string) (*bucket, error) {
	b := &bucket{
		name:    name,
		dataDir: filepath.Join(dir, "data"),
		upDir:   filepath.Join(dir, "uploads"),
		tmpDir:  filepath.Join(dir, "tmp"),
		objects: make(map[string]*object),
		uploads: make(map[string]*upload),
	}
	b.dataSync = newGroupSync(b.dataDir)
	for _, d := range []string{b.dataDir, b.upDir, b.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("localcloud: bucket %s: %w", name, err)
		}
	}
	if err := removeContents(b.tmpDir); err != nil {
		return nil, err
	}
	if err := b.convertLegacy(filepath.Join(dir, "meta")); err != nil {
		return nil, err
	}
	if err := b.loadObjects(); err != nil {
		return nil, err
	}
	if err := b.loadUploads(); err != nil {
		return nil, err
	}
	if err := b.collectGarbage(); err != nil {
		return nil, err
	}
	return b, nil
}

// Record trailer: magic, then little-endian uint32 length and CRC-32C of the metadata JSON
// that precedes it.
const (
	recordMagic   = "lcrec\x00v1"
	trailerSize   = 16       // the 8-byte magic, the length and the CRC
	maxRecordJSON = 16 << 20 // 10000 segments fit in about 1 MB
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeRecord returns m's metadata JSON followed by its trailer.
func encodeRecord(m *objectMeta) ([]byte, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(js) > maxRecordJSON {
		return nil, fmt.Errorf("metadata of %d bytes is too large", len(js))
	}
	out := append(js, recordMagic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(js)))
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(js, castagnoli)), nil
}

// readRecord reads and checks the record file at path, which must be the record of the key
// whose hash is its name.
func readRecord(path string) (*objectMeta, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	var tr [trailerSize]byte
	if size < trailerSize {
		return nil, errCorruptRecord
	}
	if _, err := f.ReadAt(tr[:], size-trailerSize); err != nil {
		return nil, err
	}
	n := int64(binary.LittleEndian.Uint32(tr[len(recordMagic):]))
	if string(tr[:len(recordMagic)]) != recordMagic || n > maxRecordJSON || n > size-trailerSize {
		return nil, errCorruptRecord
	}
	js := make([]byte, n)
	if _, err := f.ReadAt(js, size-trailerSize-n); err != nil {
		return nil, err
	}
	var m objectMeta
	if crc32.Checksum(js, castagnoli) != binary.LittleEndian.Uint32(tr[len(recordMagic)+4:]) ||
		json.Unmarshal(js, &m) != nil || recordName(m.Key) != filepath.Base(path) || validObjectName(m.Key) != nil {
		return nil, errCorruptRecord
	}
	// Inline data is exactly what precedes the metadata; an external record holds none.
	data := size - trailerSize - n
	if m.Size < 0 || (m.Inline && (data != m.Size || len(m.Segments) != 0)) || (!m.Inline && data != 0) {
		return nil, errCorruptRecord
	}
	return &m, nil
}

var errCorruptRecord = errors.New("corrupt record")

func (b *bucket) loadObjects() error {
	entries, err := os.ReadDir(b.dataDir)
	if err != nil {
		return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
	}
	for _, e := range entries {
		if !isRecordName(e.Name()) {
			continue
		}
		m, err := readRecord(filepath.Join(b.dataDir, e.Name()))
		if err != nil {
			return fmt.Errorf("localcloud: bucket %s: record %s: %w", b.name, e.Name(), err)
		}
		b.objects[m.Key] = &object{objectMeta: *m}
		b.keys = append(b.keys, m.Key)
	}
	sort.Strings(b.keys)
	return nil
}

// convertLegacy turns the meta/{sha256(key)}.json records of an older store into external
// records in data/ and then removes meta/. A crash midway leaves meta/ in place and the
// conversion is simply done again (no write can happen before it finishes).
func (b *bucket) convertLegacy(metaDir string) error {
	entries, err := os.ReadDir(metaDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(metaDir, e.Name()))
		if err != nil {
			return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
		}
		var m objectMeta
		if err := json.Unmarshal(data, &m); err != nil || recordName(m.Key)+".json" != e.Name() || validObjectName(m.Key) != nil || m.Inline {
			return fmt.Errorf("localcloud: bucket %s: corrupt metadata file %s", b.name, e.Name())
		}
		rec, err := encodeRecord(&m)
		if err == nil {
			err = writeFileSynced(b.tmpDir, filepath.Join(b.dataDir, recordName(m.Key)), rec)
		}
		if err != nil {
			return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
		}
	}
	if err := syncDir(b.dataDir); err != nil {
		return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
	}
	if err := os.RemoveAll(metaDir); err != nil {
		return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
	}
	return syncDir(filepath.Dir(metaDir))
}

// collectGarbage removes blobs that no object or upload references.
func (b *bucket) collectGarbage() error {
	used := make(map[string]bool)
	for _, o := range b.objects {
		for _, sg := range o.Segments {
			used[sg.Blob] = true
		}
	}
	for _, u := range b.uploads {
		for _, p := range u.parts {
			used[p.Blob] = true
		}
	}
	entries, err := os.ReadDir(b.dataDir)
	if err != nil {
		return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
	}
	for _, e := range entries {
		// Every record name was loaded (or the load failed).
		if !used[e.Name()] && !isRecordName(e.Name()) {
			if err := os.Remove(filepath.Join(b.dataDir, e.Name())); err != nil {
				return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
			}
		}
	}
	return nil
}

// recordName is the record file name of a key.
func recordName(key string) string { return sha256Hex(key) }

// isRecordName reports whether name has the form of a record name (64 lower-case hex
// digits; blobs have 32).
func isRecordName(name string) bool {
	if len(name) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (b *bucket) recordPath(key string) string { return filepath.Join(b.dataDir, recordName(key)) }

// newBlob creates an empty blob under a fresh random name.
func (b *bucket) newBlob() (*os.File, string, error) {
	name := randomHex(16, false)
	f, err := os.OpenFile(filepath.Join(b.dataDir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	return f, name, err
}

func (b *bucket) blobPath(name string) string { return filepath.Join(b.dataDir, name) }

// removeBlobs removes blobs, ignoring ones already gone.
func (b *bucket) removeBlobs(names []string) {
	for _, n := range names {
		_ = os.Remove(b.blobPath(n))
	}
}

// get returns the current metadata of key without pinning its blobs.
func (b *bucket) get(key string) (*objectMeta, bool) {
	b.mu.RLock()
	o, ok := b.objects[key]
	b.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return &o.objectMeta, true
}

// acquire returns a hold on key's current version for reading its data; release must be
// called when done.
func (b *bucket) acquire(key string) (*objectReader, bool) {
	o, ok := b.pin(key)
	if !ok {
		return nil, false
	}
	if !o.Inline {
		return &objectReader{object: o}, true
	}
	// The record file is replaced by rename: open it under the key's lock, which a commit
	// holds from its rename to the index update, so that the file is the indexed version.
	unlock := b.locks.lock(key)
	defer unlock()
	if o, ok = b.pin(key); !ok {
		return nil, false
	}
	if !o.Inline {
		return &objectReader{object: o}, true
	}
	r := &objectReader{object: o}
	r.f, r.err = os.Open(b.recordPath(key))
	return r, true
}

// pin returns key's object, counting a reader on it if it is external.
func (b *bucket) pin(key string) (*object, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[key]
	if ok && !o.Inline {
		o.readers++
	}
	return o, ok
}

func (b *bucket) release(r *objectReader) {
	if r.Inline {
		if r.f != nil {
			_ = r.f.Close()
		}
		return
	}
	o := r.object
	b.mu.Lock()
	o.readers--
	var orphans []string
	if o.superseded && o.readers == 0 {
		orphans, o.orphans = o.orphans, nil
	}
	b.mu.Unlock()
	b.removeBlobs(orphans)
}

// commit makes m the durable, visible state of its key (m == nil with key deletes it). The
// caller holds the key's lock. With forbidOverwrite an existing object is not replaced.
// A Normal object's single segment must be a fresh, complete and synced blob that nothing
// else references: it becomes the inline record (see the file comment for the commit
// orders and the crash argument). Blobs of the previous version that m does not reuse are
// removed once unread.
func (b *bucket) commit(key string, m *objectMeta, forbidOverwrite bool) error {
	b.mu.RLock()
	_, exists := b.objects[key]
	b.mu.RUnlock()
	if forbidOverwrite && exists && m != nil {
		return errObjectExists
	}
	path := b.recordPath(key)
	var err error
	switch {
	case m == nil:
		if !exists {
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		err = b.dataSync.sync()
	case m.Type == objectNormal && len(m.Segments) == 1:
		blob := m.Segments[0].Blob
		cp := *m
		cp.Inline, cp.Segments = true, nil
		m = &cp
		if err := b.appendRecord(blob, m); err != nil {
			return err
		}
		if err := os.Rename(b.blobPath(blob), path); err != nil {
			return err
		}
		// Renamed: the file now at path is m's, so the index must say so whatever the
		// directory sync gives (an error leaves the write unacknowledged, either outcome
		// allowed).
		err = b.dataSync.sync()
	default:
		rec, err := encodeRecord(m)
		if err != nil {
			return err
		}
		// The blobs' directory entries must be durable before a record names them.
		if err := b.dataSync.sync(); err != nil {
			return err
		}
		if err := writeFileSynced(b.tmpDir, path, rec); err != nil {
			return err
		}
		err = b.dataSync.sync()
	}

	b.mu.Lock()
	old := b.objects[key]
	if m == nil {
		delete(b.objects, key)
		if i, found := slices.BinarySearch(b.keys, key); found {
			b.keys = slices.Delete(b.keys, i, i+1)
		}
	} else {
		b.objects[key] = &object{objectMeta: *m}
		if old == nil {
			i, _ := slices.BinarySearch(b.keys, key)
			b.keys = slices.Insert(b.keys, i, key)
		}
	}
	var orphans []string
	if old != nil {
		old.superseded = true
		old.orphans = unusedBlobs(old.Segments, m)
		if old.readers == 0 {
			orphans, old.orphans = old.orphans, nil
		}
	}
	b.mu.Unlock()
	b.removeBlobs(orphans)
	return err
}

// appendRecord appends m's metadata and trailer to the blob holding its data, which must be
// exactly m.Size bytes, and syncs it.
func (b *bucket) appendRecord(blob string, m *objectMeta) error {
	rec, err := encodeRecord(m)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(b.blobPath(blob), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != m.Size {
		err = fmt.Errorf("blob %s holds %d bytes, the object %d", blob, fi.Size(), m.Size)
	}
	if err == nil {
		_, err = f.WriteAt(rec, m.Size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// unusedBlobs lists the blobs of segs that m does not reference.
func unusedBlobs(segs []segment, m *objectMeta) []string {
	var out []string
	for _, s := range segs {
		reused := false
		if m != nil {
			for _, t := range m.Segments {
				if t.Blob == s.Blob {
					reused = true
					break
				}
			}
		}
		if !reused {
			out = append(out, s.Blob)
		}
	}
	return out
}

// writeRange writes n bytes of o from offset off to w, blob by blob, so that a file-aware
// writer (net/http) can use sendfile.
func (b *bucket) writeRange(w io.Writer, o *objectReader, off, n int64) (int64, error) {
	if o.Inline {
		return copyRange(w, o.f, o.err, off, n)
	}
	var written int64
	for _, sg := range o.Segments {
		if n == 0 {
			break
		}
		if off >= sg.Size {
			off -= sg.Size
			continue
		}
		m, err := copyBlob(w, b.blobPath(sg.Blob), off, min(n, sg.Size-off))
		written += m
		if err != nil {
			return written, err
		}
		n -= m
		off = 0
	}
	if n > 0 {
		return written, io.ErrUnexpectedEOF
	}
	return written, nil
}

func copyBlob(w io.Writer, path string, off, n int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return copyRange(w, f, nil, off, n)
}

// copyRange writes n bytes of f (or openErr, if f could not be opened) from offset off.
func copyRange(w io.Writer, f *os.File, openErr error, off, n int64) (int64, error) {
	if openErr != nil {
		return 0, openErr
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	m, err := io.Copy(w, io.LimitReader(f, n))
	if err == nil && m < n {
		err = io.ErrUnexpectedEOF
	}
	return m, err
}

// listPage is one page of a listing.
type listPage struct {
	objects   []objectMeta
	prefixes  []string
	truncated bool
	last      string // the last key or common prefix returned
}

// list lists keys with prefix that sort after "after", rolling keys up into common prefixes
// at delimiter; a common prefix counts as one entry and sits at its own position in the
// order, so a common prefix that is not after "after" is skipped with all its keys. This
// makes "after" work both as a start key and as the position of a previous page's last entry.
func (b *bucket) list(prefix, delimiter, after string, max int) listPage {
	b.mu.RLock()
	defer b.mu.RUnlock()
	keys := b.keys
	from := prefix
	if after >= prefix {
		from = after
	}
	i := sort.Search(len(keys), func(i int) bool { return keys[i] > from || (keys[i] == from && from != after) })
	var p listPage
	for i < len(keys) {
		k := keys[i]
		if !strings.HasPrefix(k, prefix) {
			break
		}
		if delimiter != "" {
			if j := strings.Index(k[len(prefix):], delimiter); j >= 0 {
				cp := k[:len(prefix)+j+len(delimiter)]
				if cp > after {
					if len(p.objects)+len(p.prefixes) == max {
						p.truncated = true
						break
					}
					p.prefixes = append(p.prefixes, cp)
					p.last = cp
				}
				i = skipPrefix(keys, i, cp)
				continue
			}
		}
		if len(p.objects)+len(p.prefixes) == max {
			p.truncated = true
			break
		}
		p.objects = append(p.objects, b.objects[k].objectMeta)
		p.last = k
		i++
	}
	return p
}

// skipPrefix returns the index of the first key at or after i that does not have prefix cp.
func skipPrefix(keys []string, i int, cp string) int {
	return i + sort.Search(len(keys)-i, func(j int) bool { return !strings.HasPrefix(keys[i+j], cp) })
}

// keyLocks is a set of per-key mutexes, created on demand and dropped when unused.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	refs int
}

func (k *keyLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyLock)
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// writeFileAtomic writes data to path through a synced temporary file in tmpDir and a rename,
// then syncs path's directory.
func writeFileAtomic(tmpDir, path string, data []byte) error {
	if err := writeFileSynced(tmpDir, path, data); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeFileSynced writes data to path through a synced temporary file in tmpDir and a
// rename; path's directory is not synced.
func writeFileSynced(tmpDir, path string, data []byte) error {
	f, err := os.CreateTemp(tmpDir, "rec-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeContents removes everything inside dir.
func removeContents(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// randomHex returns n random bytes in hex.
func randomHex(n int, upper bool) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	s := hex.EncodeToString(b)
	if upper {
		s = strings.ToUpper(s)
	}
	return s
}
