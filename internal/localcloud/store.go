package localcloud

// Storage of the local OSS.
//
// Layout under {DataDir}/oss/{bucket}/:
//
//	data/{id}                  blobs: object data, appendable data, multipart parts
//	meta/{sha256(key)}.json    one metadata record per object; renaming it into place is the
//	                           commit point of every write, so a crash never exposes half an object
//	uploads/{uploadID}/        upload.json and part-NNNNN.json of one multipart upload
//	tmp/                       metadata being written (emptied at start)
//
// Blobs are written under fresh random names and referenced only once complete and synced; a
// blob that no record references (left by a crash) is removed at start. Object keys never
// become file names: metadata files are named by the SHA-256 of the key, so no key can reach
// outside the bucket directory.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	// MD5State is the marshaled MD5 state of an appendable object, so that its ETag (the MD5
	// of the whole object) can be carried on across appends and restarts.
	MD5State []byte `json:"md5State,omitempty"`
}

// segment is a run of an object's bytes held in one blob.
type segment struct {
	Blob string `json:"blob"`
	Size int64  `json:"size"`
}

// object is an immutable published objectMeta plus reader accounting, so that blobs of a
// replaced or deleted object are removed only once no GET still reads them.
type object struct {
	objectMeta
	readers    int  // guarded by bucket.mu
	superseded bool // guarded by bucket.mu
	orphans    []string
}

// store holds every configured bucket.
type store struct {
	root    string
	buckets map[string]*bucket
}

// bucket is one bucket: an in-memory index over its durable records.
type bucket struct {
	name                            string
	dataDir, metaDir, upDir, tmpDir string

	mu      sync.RWMutex
	objects map[string]*object
	keys    []string // sorted

	locks keyLocks // serialize writers of one key

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
		metaDir: filepath.Join(dir, "meta"),
		upDir:   filepath.Join(dir, "uploads"),
		tmpDir:  filepath.Join(dir, "tmp"),
		objects: make(map[string]*object),
		uploads: make(map[string]*upload),
	}
	for _, d := range []string{b.dataDir, b.metaDir, b.upDir, b.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("localcloud: bucket %s: %w", name, err)
		}
	}
	if err := removeContents(b.tmpDir); err != nil {
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

func (b *bucket) loadObjects() error {
	entries, err := os.ReadDir(b.metaDir)
	if err != nil {
		return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
	}
	for _, e := range entries {
		name := e.Name()
		data, err := os.ReadFile(filepath.Join(b.metaDir, name))
		if err != nil {
			return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
		}
		var m objectMeta
		if err := json.Unmarshal(data, &m); err != nil || metaName(m.Key) != name || validObjectName(m.Key) != nil {
			return fmt.Errorf("localcloud: bucket %s: corrupt metadata file %s", b.name, name)
		}
		b.objects[m.Key] = &object{objectMeta: m}
		b.keys = append(b.keys, m.Key)
	}
	sort.Strings(b.keys)
	return nil
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
		if !used[e.Name()] {
			if err := os.Remove(filepath.Join(b.dataDir, e.Name())); err != nil {
				return fmt.Errorf("localcloud: bucket %s: %w", b.name, err)
			}
		}
	}
	return nil
}

// metaName is the metadata file name of a key.
func metaName(key string) string {
	return sha256Hex(key) + ".json"
}

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

// acquire returns the object for reading its blobs; release must be called when done.
func (b *bucket) acquire(key string) (*object, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[key]
	if ok {
		o.readers++
	}
	return o, ok
}

func (b *bucket) release(o *object) {
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
// Blobs of the previous version that m does not reuse are removed once unread.
func (b *bucket) commit(key string, m *objectMeta, forbidOverwrite bool) error {
	b.mu.RLock()
	_, exists := b.objects[key]
	b.mu.RUnlock()
	if forbidOverwrite && exists && m != nil {
		return errObjectExists
	}
	path := filepath.Join(b.metaDir, metaName(key))
	if m == nil {
		if !exists {
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := syncDir(b.metaDir); err != nil {
			return err
		}
	} else {
		data, err := json.Marshal(m)
		if err != nil {
			return err
		}
		// The blobs' directory entries must be durable before a record names them.
		if err := syncDir(b.dataDir); err != nil {
			return err
		}
		if err := writeFileAtomic(b.tmpDir, path, data); err != nil {
			return err
		}
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
	return nil
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
func (b *bucket) writeRange(w io.Writer, o *object, off, n int64) (int64, error) {
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
		return err
	}
	return syncDir(filepath.Dir(path))
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
