package localcloud

import (
	"bytes"
	"crypto/md5"
	"hash"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCRC64Combine(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		a := make([]byte, rng.IntN(3000))
		b := make([]byte, rng.IntN(3000))
		if i%7 == 0 {
			b = b[:0]
		}
		for j := range a {
			a[j] = byte(rng.Uint32())
		}
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		want := crc64.Checksum(append(slices.Clone(a), b...), ecmaTable)
		got := crc64Combine(crc64.Checksum(a, ecmaTable), crc64.Checksum(b, ecmaTable), int64(len(b)))
		if got != want {
			t.Fatalf("case %d (%d+%d bytes): got %d, want %d", i, len(a), len(b), got, want)
		}
	}
	// A large second length exercises many squarings.
	big := make([]byte, 5<<20)
	big[len(big)-1] = 1
	want := crc64.Checksum(append([]byte("head"), big...), ecmaTable)
	if got := crc64Combine(crc64.Checksum([]byte("head"), ecmaTable), crc64.Checksum(big, ecmaTable), int64(len(big))); got != want {
		t.Fatalf("5 MiB: got %d, want %d", got, want)
	}
}

// refList is the obvious listing over a sorted key list, to check bucket.list against.
func refList(keys []string, prefix, delim, after string, max int) listPage {
	type item struct {
		pos      string
		isPrefix bool
	}
	var items []item
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		pos, isPrefix := k, false
		if delim != "" {
			if j := strings.Index(k[len(prefix):], delim); j >= 0 {
				pos, isPrefix = k[:len(prefix)+j+len(delim)], true
			}
		}
		if pos <= after || (len(items) > 0 && items[len(items)-1].pos == pos) {
			continue
		}
		items = append(items, item{pos, isPrefix})
	}
	var p listPage
	for i, it := range items {
		if i == max {
			p.truncated = true
			break
		}
		if it.isPrefix {
			p.prefixes = append(p.prefixes, it.pos)
		} else {
			p.objects = append(p.objects, objectMeta{Key: it.pos})
		}
		p.last = it.pos
	}
	return p
}

func TestBucketListMatchesReference(t *testing.T) {
	t.Parallel()
	b, err := openBucket(t.TempDir(), "b")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "b", "/", "-", "é", "aa"}
	seen := map[string]bool{}
	for range 300 {
		var sb strings.Builder
		for range 1 + rng.IntN(6) {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		k := sb.String()
		if seen[k] || validObjectName(k) != nil {
			continue
		}
		seen[k] = true
		b.objects[k] = &object{objectMeta: objectMeta{Key: k}}
		b.keys = append(b.keys, k)
	}
	slices.Sort(b.keys)
	for range 2000 {
		prefix := ""
		if rng.IntN(2) == 0 {
			k := b.keys[rng.IntN(len(b.keys))]
			prefix = k[:rng.IntN(min(3, len(k)+1))]
		}
		delim := []string{"", "/", "-", "a/"}[rng.IntN(4)]
		after := ""
		if rng.IntN(2) == 0 {
			after = b.keys[rng.IntN(len(b.keys))]
			if rng.IntN(3) == 0 {
				after = after[:len(after)/2]
			}
		}
		max := 1 + rng.IntN(20)
		got, want := b.list(prefix, delim, after, max), refList(b.keys, prefix, delim, after, max)
		if !slices.Equal(keysOf(got.objects), keysOf(want.objects)) || !slices.Equal(got.prefixes, want.prefixes) ||
			got.truncated != want.truncated || got.last != want.last {
			t.Fatalf("list(%q, %q, %q, %d):\n got %q %q %v %q\nwant %q %q %v %q", prefix, delim, after, max,
				keysOf(got.objects), got.prefixes, got.truncated, got.last, keysOf(want.objects), want.prefixes, want.truncated, want.last)
		}
		// Paging from each page's last entry covers the same entries as one big page.
		var all []string
		pos := after
		for {
			p := b.list(prefix, delim, pos, max)
			all = append(all, keysOf(p.objects)...)
			all = append(all, p.prefixes...)
			if !p.truncated {
				break
			}
			pos = p.last
		}
		full := refList(b.keys, prefix, delim, after, 1<<30)
		wantAll := append(keysOf(full.objects), full.prefixes...)
		slices.Sort(all)
		slices.Sort(wantAll)
		if !slices.Equal(all, wantAll) {
			t.Fatalf("paged list(%q, %q, %q, %d) = %q, want %q", prefix, delim, after, max, all, wantAll)
		}
	}
}

func keysOf(ms []objectMeta) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Key
	}
	return out
}

// TestStoreRecoversFromCrashLeftovers plants what a crash can leave (an unreferenced blob, a
// temporary record, a half-created upload, an append's uncommitted tail) and reopens.
func TestStoreRecoversFromCrashLeftovers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := openStore(dir, []string{"b"})
	if err != nil {
		t.Fatal(err)
	}
	b := st.buckets["b"]
	now := time.Now()
	put := func(key, data string, typ string) *objectMeta {
		f, blob, err := b.newBlob()
		if err != nil {
			t.Fatal(err)
		}
		d := &digest{}
		if err := copyIn(f, strings.NewReader(data), 1<<20, d); err != nil {
			t.Fatal(err)
		}
		f.Close()
		m := &objectMeta{Key: key, Type: typ, Size: d.size, CRC64: d.crc, Modified: now, Segments: []segment{{blob, d.size}}}
		if err := b.commit(key, m, false); err != nil {
			t.Fatal(err)
		}
		return m
	}
	put("keep", "kept data", objectNormal)
	app := put("app", "appended", objectAppendable)
	u, err := b.initiate(uploadRecord{Key: "mp", Initiated: now})
	if err != nil {
		t.Fatal(err)
	}
	f, blob, _ := b.newBlob()
	f.WriteString("part one")
	f.Close()
	if err := b.putPart(u, partRecord{Number: 1, Size: 8, ETag: "X", Blob: blob, Modified: now}); err != nil {
		t.Fatal(err)
	}

	// Leftovers.
	orphan := filepath.Join(b.dataDir, "deadbeef")
	os.WriteFile(orphan, []byte("half an object"), 0o600)
	os.WriteFile(filepath.Join(b.tmpDir, "rec-123"), []byte("{"), 0o600)
	os.Mkdir(filepath.Join(b.upDir, "0123456789ABCDEF0123456789ABCDEF"), 0o700)
	os.Mkdir(filepath.Join(b.upDir, "not-an-upload"), 0o700)
	af, _ := os.OpenFile(b.blobPath(app.Segments[0].Blob), os.O_WRONLY|os.O_APPEND, 0)
	af.WriteString("UNCOMMITTED TAIL")
	af.Close()

	st2, err := openStore(dir, []string{"b"})
	if err != nil {
		t.Fatal(err)
	}
	b2 := st2.buckets["b"]
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Error("orphan blob survived")
	}
	if es, _ := os.ReadDir(b2.tmpDir); len(es) != 0 {
		t.Error("tmp not emptied")
	}
	if es, _ := os.ReadDir(b2.upDir); len(es) != 1 || es[0].Name() != u.ID {
		t.Errorf("uploads after restart: %v", es)
	}
	u2, err := b2.upload(u.ID, "mp")
	if err != nil || len(u2.parts) != 1 || u2.parts[1].Blob != blob {
		t.Fatalf("upload lost: %v", err)
	}
	if !slices.Equal(b2.keys, []string{"app", "keep"}) {
		t.Errorf("keys %q", b2.keys)
	}
	// Reads stop at the committed size, whatever follows in the blob.
	o, ok := b2.acquire("app")
	if !ok {
		t.Fatal("app lost")
	}
	var buf bytes.Buffer
	if _, err := b2.writeRange(&buf, o, 0, o.Size); err != nil || buf.String() != "appended" {
		t.Fatalf("read %q %v", buf.String(), err)
	}
	b2.release(o)

	// A corrupt record is an error, not silently dropped data.
	os.WriteFile(filepath.Join(b2.metaDir, metaName("keep")), []byte("not json"), 0o600)
	if _, err := openStore(dir, []string{"b"}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt metadata: %v", err)
	}
	// So is a record filed under another key's name.
	os.WriteFile(filepath.Join(b2.metaDir, metaName("keep")), []byte(`{"key":"other"}`), 0o600)
	if _, err := openStore(dir, []string{"b"}); err == nil {
		t.Fatal("misfiled metadata accepted")
	}
}

// TestReadersKeepReplacedBlobs checks that a reader of an object that is then replaced or
// deleted still reads the old bytes, and that the old blob goes once it is released.
func TestReadersKeepReplacedBlobs(t *testing.T) {
	t.Parallel()
	b, err := openBucket(t.TempDir(), "b")
	if err != nil {
		t.Fatal(err)
	}
	commit := func(data string) string {
		f, blob, _ := b.newBlob()
		f.WriteString(data)
		f.Close()
		if err := b.commit("k", &objectMeta{Key: "k", Size: int64(len(data)), Segments: []segment{{blob, int64(len(data))}}}, false); err != nil {
			t.Fatal(err)
		}
		return blob
	}
	old := commit("old")
	o, _ := b.acquire("k")
	commit("new")
	if err := b.commit("k", nil, false); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := b.writeRange(&buf, o, 0, 3); err != nil || buf.String() != "old" {
		t.Fatalf("reader got %q %v", buf.String(), err)
	}
	if _, err := os.Stat(b.blobPath(old)); err != nil {
		t.Fatal("blob removed under a reader")
	}
	b.release(o)
	if _, err := os.Stat(b.blobPath(old)); !os.IsNotExist(err) {
		t.Fatal("blob kept after the last reader")
	}
	if es, _ := os.ReadDir(b.dataDir); len(es) != 0 {
		t.Fatalf("blobs left: %v", es)
	}
	if err := b.commit("absent", nil, false); err != nil {
		t.Fatalf("deleting an absent key: %v", err)
	}
}

func TestKeyLocks(t *testing.T) {
	t.Parallel()
	var kl keyLocks
	counter := 0
	done := make(chan struct{})
	for range 8 {
		go func() {
			for range 1000 {
				unlock := kl.lock("k")
				counter++
				unlock()
			}
			done <- struct{}{}
		}()
	}
	for range 8 {
		<-done
	}
	if counter != 8000 || len(kl.m) != 0 {
		t.Fatalf("counter %d, locks left %d", counter, len(kl.m))
	}
}

func TestOpenStoreErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := openStore(file, []string{"b"}); err == nil {
		t.Fatal("store under a file opened")
	}
	cfg := &Config{DataDir: dir, Buckets: []string{"Bad_Name"}}
	if _, err := newOSS(cfg, &Authority{}); err == nil || !strings.Contains(err.Error(), "bucket") {
		t.Fatalf("bad bucket name: %v", err)
	}
	if _, err := newOSS(&Config{DataDir: dir}, nil); err == nil {
		t.Fatal("nil authority accepted")
	}
}

// BenchmarkCopyIn measures the server's write path alone: stream into a blob computing
// MD5 and CRC-64, then fsync; compare with the disk's raw rate (dd conv=fsync).
func BenchmarkCopyIn(b *testing.B) {
	const size = 256 << 20
	dir := b.TempDir()
	src := make([]byte, 1<<20)
	for i := range src {
		src[i] = byte(i * 7)
	}
	b.SetBytes(size)
	for i := range b.N {
		f, err := os.Create(filepath.Join(dir, "blob"+strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		d := &digest{hashes: []hash.Hash{md5.New()}}
		if err := copyIn(f, &repeatReader{src: src, n: size}, size, d); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		os.Remove(f.Name())
	}
}

// repeatReader yields n bytes cycling through src.
type repeatReader struct {
	src []byte
	n   int64
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	m := copy(p[:min(int64(len(p)), r.n)], r.src[r.off:])
	r.off = (r.off + m) % len(r.src)
	r.n -= int64(m)
	return m, nil
}
