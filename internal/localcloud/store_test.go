package localcloud

import (
	"bytes"
	"crypto/md5"
	"encoding/json"
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
	os.WriteFile(b2.recordPath("keep"), []byte("not a record"), 0o600)
	if _, err := openStore(dir, []string{"b"}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt metadata: %v", err)
	}
	// So is a record filed under another key's name.
	other, _ := encodeRecord(&objectMeta{Key: "other"})
	os.WriteFile(b2.recordPath("keep"), other, 0o600)
	if _, err := openStore(dir, []string{"b"}); err == nil {
		t.Fatal("misfiled metadata accepted")
	}
}

// writeBlob writes data into a fresh synced blob, as the PutObject handler does.
func writeBlob(t *testing.T, b *bucket, data string) string {
	t.Helper()
	f, blob, err := b.newBlob()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return blob
}

// putNormal commits data under key as PutObject does (an inline record).
func putNormal(t *testing.T, b *bucket, key, data string) {
	t.Helper()
	blob := writeBlob(t, b, data)
	m := &objectMeta{Key: key, Type: objectNormal, Size: int64(len(data)), ETag: "E", Segments: []segment{{blob, int64(len(data))}}}
	if err := b.commit(key, m, false); err != nil {
		t.Fatal(err)
	}
}

// readAll reads key's current version through acquire, or reports it absent.
func readAll(t *testing.T, b *bucket, key string) (string, bool) {
	t.Helper()
	o, ok := b.acquire(key)
	if !ok {
		return "", false
	}
	defer b.release(o)
	var buf bytes.Buffer
	if _, err := b.writeRange(&buf, o, 0, o.Size); err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return buf.String(), true
}

func dataNames(t *testing.T, b *bucket) []string {
	t.Helper()
	es, err := os.ReadDir(b.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// TestInlineCommitCrashPoints replays PutObject's commit over an existing object step by
// step, stops at each point a crash can hit (the state on disk then is exactly what the
// steps so far wrote, since each step's effect is made durable before the next begins, and
// the last step's may or may not be), and reopens: the key holds either the old version or
// the complete new one, and nothing else remains.
func TestInlineCommitCrashPoints(t *testing.T) {
	t.Parallel()
	const key, oldData, newData = "cams/cam-1/clip.webm", "old version", "the new version"
	newMeta := &objectMeta{Key: key, Type: objectNormal, Size: int64(len(newData)), ETag: "NEW", Inline: true}
	cases := []struct {
		name  string
		steps func(t *testing.T, b *bucket) // the commit's steps up to the crash
		want  string
	}{
		{"data written, no record", func(t *testing.T, b *bucket) {
			writeBlob(t, b, newData)
		}, oldData},
		{"data half written", func(t *testing.T, b *bucket) {
			writeBlob(t, b, newData[:5])
		}, oldData},
		{"record appended, not renamed", func(t *testing.T, b *bucket) {
			if err := b.appendRecord(writeBlob(t, b, newData), newMeta); err != nil {
				t.Fatal(err)
			}
		}, oldData},
		{"record half appended, not renamed", func(t *testing.T, b *bucket) {
			rec, _ := encodeRecord(newMeta)
			writeBlob(t, b, newData+string(rec[:len(rec)/2]))
		}, oldData},
		{"renamed, source name also persisted", func(t *testing.T, b *bucket) {
			blob := writeBlob(t, b, newData)
			if err := b.appendRecord(blob, newMeta); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(b.recordPath(key)); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(b.blobPath(blob), b.recordPath(key)); err != nil {
				t.Fatal(err)
			}
		}, newData},
		{"renamed", func(t *testing.T, b *bucket) {
			blob := writeBlob(t, b, newData)
			if err := b.appendRecord(blob, newMeta); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(b.blobPath(blob), b.recordPath(key)); err != nil {
				t.Fatal(err)
			}
		}, newData},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			b, err := openBucket(dir, "b")
			if err != nil {
				t.Fatal(err)
			}
			putNormal(t, b, key, oldData)
			c.steps(t, b)
			b2, err := openBucket(dir, "b")
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := readAll(t, b2, key); !ok || got != c.want {
				t.Fatalf("after restart %q (present %v), want %q", got, ok, c.want)
			}
			if names := dataNames(t, b2); !slices.Equal(names, []string{recordName(key)}) {
				t.Errorf("data/ after restart: %q", names)
			}
			// The survivor is a working object: it can be replaced and deleted.
			putNormal(t, b2, key, "third")
			if got, _ := readAll(t, b2, key); got != "third" {
				t.Errorf("after overwrite %q", got)
			}
			if err := b2.commit(key, nil, false); err != nil {
				t.Fatal(err)
			}
			b3, err := openBucket(dir, "b")
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := readAll(t, b3, key); ok || len(dataNames(t, b3)) != 0 {
				t.Errorf("deleted object back after restart: %q", dataNames(t, b3))
			}
		})
	}
}

// TestExternalCommitCrashPoints does the same for an appendable object's commit (a record
// naming a blob): a record written to tmp/ but not renamed is dropped, a renamed one is the
// new state.
func TestExternalCommitCrashPoints(t *testing.T) {
	t.Parallel()
	for _, renamed := range []bool{false, true} {
		dir := t.TempDir()
		b, err := openBucket(dir, "b")
		if err != nil {
			t.Fatal(err)
		}
		blob := writeBlob(t, b, "first")
		m := &objectMeta{Key: "log", Type: objectAppendable, Size: 5, Segments: []segment{{blob, 5}}}
		if err := b.commit("log", m, false); err != nil {
			t.Fatal(err)
		}
		// The next append: data beyond the committed size, then the record.
		f, _ := os.OpenFile(b.blobPath(blob), os.O_WRONLY|os.O_APPEND, 0)
		f.WriteString("+second")
		f.Close()
		m2 := *m
		m2.Size, m2.Segments = 12, []segment{{blob, 12}}
		rec, _ := encodeRecord(&m2)
		tmp := filepath.Join(b.tmpDir, "rec-1")
		os.WriteFile(tmp, rec, 0o600)
		want := "first"
		if renamed {
			if err := os.Rename(tmp, b.recordPath("log")); err != nil {
				t.Fatal(err)
			}
			want = "first+second"
		}
		b2, err := openBucket(dir, "b")
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := readAll(t, b2, "log"); got != want || !ok {
			t.Errorf("renamed %v: %q %v, want %q", renamed, got, ok, want)
		}
		if names := dataNames(t, b2); len(names) != 2 {
			t.Errorf("renamed %v: data/ %q", renamed, names)
		}
	}
}

// TestInlineReaders checks that a reader of an inline object keeps reading its version
// through an overwrite, a delete and an overwrite by an appendable object, and that
// replacing an external object by an inline one frees its blob once unread.
func TestInlineReaders(t *testing.T) {
	t.Parallel()
	b, err := openBucket(t.TempDir(), "b")
	if err != nil {
		t.Fatal(err)
	}
	putNormal(t, b, "k", "version one")
	r1, _ := b.acquire("k")
	putNormal(t, b, "k", "version two, longer")
	r2, _ := b.acquire("k")
	if err := b.commit("k", nil, false); err != nil {
		t.Fatal(err)
	}
	blob := writeBlob(t, b, "appendable")
	if err := b.commit("k", &objectMeta{Key: "k", Type: objectAppendable, Size: 10, Segments: []segment{{blob, 10}}}, false); err != nil {
		t.Fatal(err)
	}
	r3, _ := b.acquire("k")
	putNormal(t, b, "k", "version four")
	for _, c := range []struct {
		r    *objectReader
		want string
	}{{r1, "version one"}, {r2, "version two, longer"}, {r3, "appendable"}} {
		var buf bytes.Buffer
		if _, err := b.writeRange(&buf, c.r, 0, c.r.Size); err != nil || buf.String() != c.want {
			t.Errorf("reader got %q %v, want %q", buf.String(), err, c.want)
		}
		var part bytes.Buffer
		if _, err := b.writeRange(&part, c.r, 2, 3); err != nil || part.String() != c.want[2:5] {
			t.Errorf("range read %q %v", part.String(), err)
		}
	}
	if _, err := os.Stat(b.blobPath(blob)); err != nil {
		t.Error("appendable blob removed under its reader")
	}
	for _, r := range []*objectReader{r1, r2, r3} {
		b.release(r)
	}
	if names := dataNames(t, b); !slices.Equal(names, []string{recordName("k")}) {
		t.Errorf("data/ %q", names)
	}
	if got, _ := readAll(t, b, "k"); got != "version four" {
		t.Errorf("current %q", got)
	}
	// forbidOverwrite leaves the existing object and its data alone.
	blob = writeBlob(t, b, "no")
	if err := b.commit("k", &objectMeta{Key: "k", Type: objectNormal, Size: 2, Segments: []segment{{blob, 2}}}, true); err != errObjectExists {
		t.Errorf("forbidOverwrite: %v", err)
	}
	// A blob that does not hold exactly the object's bytes is refused, nothing replaced.
	if err := b.commit("k", &objectMeta{Key: "k", Type: objectNormal, Size: 5, Segments: []segment{{blob, 5}}}, false); err == nil {
		t.Error("short blob committed")
	}
	if got, _ := readAll(t, b, "k"); got != "version four" {
		t.Errorf("after refused commits %q", got)
	}
}

// TestReadRecordGarbage feeds readRecord damaged and misfiled record files.
func TestReadRecordGarbage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, recordName("k"))
	good := &objectMeta{Key: "k", Type: objectNormal, Size: 4, Inline: true}
	rec, _ := encodeRecord(good)
	valid := append([]byte("data"), rec...)
	mutate := func(f func(b []byte) []byte) []byte { return f(slices.Clone(valid)) }
	ext, _ := encodeRecord(&objectMeta{Key: "k", Type: objectAppendable, Size: 4, Segments: []segment{{"x", 4}}})
	badKey, _ := encodeRecord(&objectMeta{Key: "", Size: 0, Inline: true})
	cases := map[string][]byte{
		"empty":           {},
		"short":           valid[:10],
		"no trailer":      valid[:len(valid)-1],
		"bad magic":       mutate(func(b []byte) []byte { b[len(b)-trailerSize] ^= 1; return b }),
		"huge length":     mutate(func(b []byte) []byte { b[len(b)-5] = 0xff; return b }),
		"length too long": mutate(func(b []byte) []byte { b[len(b)-8] += 10; return b }),
		"bad crc":         mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }),
		"flipped json":    mutate(func(b []byte) []byte { b[5] ^= 0x20; return b }),
		"inline size":     append([]byte("dat"), rec...),
		"external data":   append([]byte("data"), ext...),
		"invalid key":     badKey,
	}
	for name, data := range cases {
		os.WriteFile(path, data, 0o600)
		if _, err := readRecord(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	os.WriteFile(path, valid, 0o600)
	if m, err := readRecord(path); err != nil || m.Key != "k" || m.Size != 4 || !m.Inline {
		t.Fatalf("valid record: %+v %v", m, err)
	}
	if err := os.Rename(path, filepath.Join(dir, recordName("other"))); err != nil {
		t.Fatal(err)
	}
	if _, err := readRecord(filepath.Join(dir, recordName("other"))); err == nil {
		t.Error("misfiled record accepted")
	}
}

// TestLegacyLayoutConverted opens a store written with meta/{sha256(key)}.json records,
// including one whose conversion a crash interrupted.
func TestLegacyLayoutConverted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, d := range []string{"data", "meta", "uploads", "tmp"} {
		os.MkdirAll(filepath.Join(dir, d), 0o700)
	}
	legacy := func(key, blob, data string) {
		os.WriteFile(filepath.Join(dir, "data", blob), []byte(data), 0o600)
		js, _ := json.Marshal(&objectMeta{Key: key, Type: objectNormal, Size: int64(len(data)), Segments: []segment{{blob, int64(len(data))}}})
		os.WriteFile(filepath.Join(dir, "meta", recordName(key)+".json"), js, 0o600)
	}
	legacy("a", "0123456789abcdef0123456789abcdef", "alpha")
	legacy("b/c", "fedcba9876543210fedcba9876543210", "beta")
	// "b/c" was converted before a crash.
	rec, _ := encodeRecord(&objectMeta{Key: "b/c", Type: objectNormal, Size: 4, Segments: []segment{{"fedcba9876543210fedcba9876543210", 4}}})
	os.WriteFile(filepath.Join(dir, "data", recordName("b/c")), rec, 0o600)
	for range 2 {
		b, err := openBucket(dir, "b")
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := readAll(t, b, "a"); got != "alpha" {
			t.Errorf("a: %q", got)
		}
		if got, _ := readAll(t, b, "b/c"); got != "beta" {
			t.Errorf("b/c: %q", got)
		}
		if _, err := os.Stat(filepath.Join(dir, "meta")); !os.IsNotExist(err) {
			t.Errorf("meta/ kept: %v", err)
		}
	}
	// A corrupt legacy record stops the start.
	os.Mkdir(filepath.Join(dir, "meta"), 0o700)
	os.WriteFile(filepath.Join(dir, "meta", recordName("x")+".json"), []byte(`{"key":"y"}`), 0o600)
	if _, err := openBucket(dir, "b"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt legacy record: %v", err)
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
