package localcloud

// Throughput benchmarks for issue 2: object uploads through the official OSS SDK against
// localcloud, beside the raw disk writing the same bytes with the same fsync. See
// BENCHMARKS.md for the commands and figures.

import (
	"crypto/md5"
	"crypto/rand"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"
)

const (
	benchBigSize   = 256 << 20
	benchSmallSize = 64 << 10
	benchSmallN    = 1000
	// benchWriteBuf matches the server's copy buffer, so the raw baseline makes the same
	// write calls.
	benchWriteBuf = 512 << 10
)

// patternReader yields a 1 MiB random block over and over, so a 256 MiB body costs the
// client no memory and the bytes are not trivially compressible.
type patternReader struct {
	block []byte
	off   int
}

func newPatternReader(b testing.TB) *patternReader {
	block := make([]byte, 1<<20)
	if _, err := rand.Read(block); err != nil {
		b.Fatal(err)
	}
	return &patternReader{block: block}
}

func (p *patternReader) Read(buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		c := copy(buf[n:], p.block[p.off:])
		n += c
		p.off = (p.off + c) % len(p.block)
	}
	return n, nil
}

// benchBucket starts localcloud with one unrestricted key and returns an SDK bucket handle.
func benchBucket(b *testing.B) *oss.Bucket {
	b.Helper()
	key := AccessKey{ID: "LTAIbench", Secret: rand.Text()}
	s, err := Start(Config{
		DataDir: b.TempDir(),
		Keys:    []AccessKey{key},
		Buckets: []string{"bench"},
		Logger:  zerolog.Nop(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	c, err := oss.New(s.OSSEndpoint(), key.ID, key.Secret, oss.Timeout(10, 600))
	if err != nil {
		b.Fatal(err)
	}
	bk, err := c.Bucket("bench")
	if err != nil {
		b.Fatal(err)
	}
	return bk
}

// BenchmarkPutObject256MiB uploads one 256 MiB object per iteration with PutObject (CRC-64
// checked by the SDK and the server, data fsynced by the server).
func BenchmarkPutObject256MiB(b *testing.B) {
	bk := benchBucket(b)
	src := newPatternReader(b)
	b.SetBytes(benchBigSize)
	defer reportCPU(b, benchBigSize)()
	for i := 0; b.Loop(); i++ {
		if err := bk.PutObject(fmt.Sprintf("big/%d", i%2), io.LimitReader(src, benchBigSize)); err != nil {
			b.Fatal(err)
		}
	}
}

// Small-object benchmarks run twice: names=new puts 1000 new keys (files) in every
// iteration, as cameras do (each clip has its own key); names=reused puts the same 1000
// keys in every iteration, so from the second on each PutObject replaces an object (and
// the raw baseline truncates and rewrites its file in place). On ext4 the replacements
// cost localcloud CPU out of proportion: each frees the old version's inode, and ext4's
// inode allocator skips inodes freed within the last minute or more by scanning them on
// every new file (recently_deleted in find_inode_bit; see BENCHMARKS.md).
var benchNames = []string{"names=new", "names=reused"}

// smallName is the name of object j of iteration i.
func smallName(names string, i, j int) string {
	if names == "names=reused" {
		return fmt.Sprintf("small-%04d", j)
	}
	return fmt.Sprintf("small-%d-%04d", i, j)
}

// BenchmarkPutObject64KiBx1000 uploads 1000 objects of 64 KiB one after another per
// iteration.
func BenchmarkPutObject64KiBx1000(b *testing.B) {
	for _, names := range benchNames {
		b.Run(names, func(b *testing.B) {
			bk := benchBucket(b)
			src := newPatternReader(b)
			b.SetBytes(benchSmallSize * benchSmallN)
			defer reportCPU(b, benchSmallSize*benchSmallN)()
			for i := 0; b.Loop(); i++ {
				for j := range benchSmallN {
					if err := bk.PutObject(smallName(names, i, j), io.LimitReader(src, benchSmallSize)); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// benchClients is the number of concurrent SDK clients (and raw writers) of the
// concurrent small-object benchmarks.
const benchClients = 16

// BenchmarkPutObject64KiBx1000Concurrent uploads 1000 objects of 64 KiB per iteration from
// benchClients SDK clients at once (each its own client and connection), so that commits
// overlap and share fsyncs of data/.
func BenchmarkPutObject64KiBx1000Concurrent(b *testing.B) {
	for _, names := range benchNames {
		b.Run(names, func(b *testing.B) { benchPutConcurrent(b, names) })
	}
}

func benchPutConcurrent(b *testing.B, names string) {
	bk := benchBucket(b)
	bks := make([]*oss.Bucket, benchClients)
	for i := range bks {
		c, err := oss.New(bk.Client.Config.Endpoint, bk.Client.Config.AccessKeyID, bk.Client.Config.AccessKeySecret, oss.Timeout(10, 600))
		if err != nil {
			b.Fatal(err)
		}
		if bks[i], err = c.Bucket(bk.BucketName); err != nil {
			b.Fatal(err)
		}
	}
	srcs := make([]*patternReader, benchClients)
	for i := range srcs {
		srcs[i] = newPatternReader(b)
	}
	b.SetBytes(benchSmallSize * benchSmallN)
	defer reportCPU(b, benchSmallSize*benchSmallN)()
	for i := 0; b.Loop(); i++ {
		runConcurrent(b, func(w, j int) error {
			return bks[w].PutObject(smallName(names, i, j), io.LimitReader(srcs[w], benchSmallSize))
		})
	}
}

// runConcurrent runs do for j = 0 .. benchSmallN-1 on benchClients goroutines (w is the
// goroutine's number) and fails b on the first error.
func runConcurrent(b *testing.B, do func(w, j int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchClients)
	for w := range benchClients {
		wg.Go(func() {
			for {
				j := int(next.Add(1)) - 1
				if j >= benchSmallN {
					return
				}
				if err := do(w, j); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkRawDisk64KiBx1000Concurrent is the baseline for
// BenchmarkPutObject64KiBx1000Concurrent: benchClients goroutines write 1000 files of
// 64 KiB per iteration, each file written and fsynced as BenchmarkRawDisk64KiBx1000 does
// (sync=file), or also followed by an fsync of the directory, which a new file needs for
// its name to be durable (sync=file+dir: what a raw durable write costs, with no sharing
// of directory fsyncs between writers).
func BenchmarkRawDisk64KiBx1000Concurrent(b *testing.B) {
	for _, names := range benchNames {
		for _, dirSync := range []bool{false, true} {
			name := names + "/sync=file"
			if dirSync {
				name += "+dir"
			}
			b.Run(name, func(b *testing.B) { benchRawConcurrent(b, names, dirSync) })
		}
	}
}

func benchRawConcurrent(b *testing.B, names string, dirSync bool) {
	dir := b.TempDir()
	srcs := make([]*patternReader, benchClients)
	bufs := make([][]byte, benchClients)
	for i := range srcs {
		srcs[i], bufs[i] = newPatternReader(b), make([]byte, benchWriteBuf)
	}
	b.SetBytes(benchSmallSize * benchSmallN)
	defer reportCPU(b, benchSmallSize*benchSmallN)()
	for i := 0; b.Loop(); i++ {
		runConcurrent(b, func(w, j int) error {
			err := writeSynced(filepath.Join(dir, smallName(names, i, j)), srcs[w], benchSmallSize, bufs[w])
			if err == nil && dirSync {
				err = benchSyncDir(dir)
			}
			return err
		})
	}
}

// writeSynced writes size bytes of src to path in benchWriteBuf chunks and fsyncs it: what
// the server does with an object's data, without HTTP, signatures, hashing or metadata.
func writeSynced(path string, src io.Reader, size int64, buf []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(onlyWriter{f}, io.LimitReader(src, size), buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// onlyWriter hides *os.File's ReadFrom, so CopyBuffer uses the buffer (no copy_file_range).
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// BenchmarkRawDisk256MiB writes and fsyncs a 256 MiB file on the same disk (the test's
// temporary directory) per iteration: the baseline for BenchmarkPutObject256MiB.
func BenchmarkRawDisk256MiB(b *testing.B) {
	dir := b.TempDir()
	src := newPatternReader(b)
	buf := make([]byte, benchWriteBuf)
	b.SetBytes(benchBigSize)
	defer reportCPU(b, benchBigSize)()
	for i := 0; b.Loop(); i++ {
		if err := writeSynced(filepath.Join(dir, fmt.Sprintf("big-%d", i%2)), src, benchBigSize, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawDisk64KiBx1000 writes and fsyncs 1000 files of 64 KiB per iteration: the
// baseline for BenchmarkPutObject64KiBx1000.
func BenchmarkRawDisk64KiBx1000(b *testing.B) {
	for _, names := range benchNames {
		b.Run(names, func(b *testing.B) {
			dir := b.TempDir()
			src := newPatternReader(b)
			buf := make([]byte, benchWriteBuf)
			b.SetBytes(benchSmallSize * benchSmallN)
			defer reportCPU(b, benchSmallSize*benchSmallN)()
			for i := 0; b.Loop(); i++ {
				for j := range benchSmallN {
					if err := writeSynced(filepath.Join(dir, smallName(names, i, j)), src, benchSmallSize, buf); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkRawDiskDurable64KiBx1000 is BenchmarkRawDisk64KiBx1000 with a commit protocol's
// durability steps per object, and nothing else (no HTTP, SDK, signatures or hashing):
//
//   - fsyncs=4, the store before inline records: the data file fsynced, its directory
//     fsynced, then a 300-byte metadata record written to a temporary file, fsynced,
//     renamed into another directory and that directory fsynced;
//   - fsyncs=3, the store's PutObject now: the data file fsynced (by the handler), the
//     record appended to it and fsynced again, the file renamed to its key's name and the
//     directory fsynced;
//   - fsyncs=2, the same without the handler's first fsync, which the second makes
//     redundant.
//
// The gap between a protocol and BenchmarkPutObject64KiBx1000 is the cost of HTTP, the
// SDK, signatures and hashing.
func BenchmarkRawDiskDurable64KiBx1000(b *testing.B) {
	for _, fsyncs := range []int{4, 3, 2} {
		b.Run(fmt.Sprintf("fsyncs=%d", fsyncs), func(b *testing.B) {
			dir := b.TempDir()
			dataDir, metaDir, tmpDir := filepath.Join(dir, "data"), filepath.Join(dir, "meta"), filepath.Join(dir, "tmp")
			for _, d := range []string{dataDir, metaDir, tmpDir} {
				if err := os.Mkdir(d, 0o700); err != nil {
					b.Fatal(err)
				}
			}
			src := newPatternReader(b)
			buf := make([]byte, benchWriteBuf)
			record := make([]byte, 300)
			b.SetBytes(benchSmallSize * benchSmallN)
			for b.Loop() {
				for j := range benchSmallN {
					var err error
					if fsyncs == 4 {
						err = durableSeparate(dataDir, metaDir, tmpDir, j, src, buf, record)
					} else {
						err = durableInline(dataDir, j, src, buf, record, fsyncs == 3)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// durableSeparate stores object j as data file plus separate record (four fsyncs).
func durableSeparate(dataDir, metaDir, tmpDir string, j int, src io.Reader, buf, record []byte) error {
	name := fmt.Sprintf("small-%04d", j)
	if err := writeSynced(filepath.Join(dataDir, name), src, benchSmallSize, buf); err != nil {
		return err
	}
	if err := benchSyncDir(dataDir); err != nil {
		return err
	}
	tmp := filepath.Join(tmpDir, name)
	if err := writeSynced(tmp, &patternReader{block: record}, int64(len(record)), buf); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(metaDir, name)); err != nil {
		return err
	}
	return benchSyncDir(metaDir)
}

// durableInline stores object j as one file holding data and record, renamed into place
// (three fsyncs with firstSync, else two).
func durableInline(dataDir string, j int, src io.Reader, buf, record []byte, firstSync bool) error {
	tmp := filepath.Join(dataDir, fmt.Sprintf("tmp-%04d", j))
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(onlyWriter{f}, io.LimitReader(src, benchSmallSize), buf)
	if err == nil && firstSync {
		err = f.Sync()
	}
	if err == nil {
		_, err = f.Write(record)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dataDir, fmt.Sprintf("small-%04d", j)))
	}
	if err != nil {
		return err
	}
	return benchSyncDir(dataDir)
}

// reportCPU returns a function that reports, as cpu-s/GiB, the process's CPU time (user +
// system, every goroutine: with the SDK client in the same process, client and server
// together) per GiB moved since reportCPU was called, each iteration moving perOp bytes.
// Unlike MB/s it depends little on what else runs on the machine. Call it right before the
// b.Loop loop and the returned function after it.
func reportCPU(b *testing.B, perOp int64) func() {
	t0 := processCPU(b)
	return func() {
		if b.N > 0 {
			b.ReportMetric((processCPU(b)-t0).Seconds()/(float64(b.N)*float64(perOp)/(1<<30)), "cpu-s/GiB")
		}
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMD5 and BenchmarkCRC64ECMA are the raw rates of the two hashes the server must
// compute over every byte it receives, on one core, over 512 KiB buffers.
func BenchmarkMD5(b *testing.B) {
	buf := make([]byte, benchWriteBuf)
	h := md5.New()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		h.Write(buf)
	}
}

// BenchmarkCRC64ECMA: see BenchmarkMD5.
func BenchmarkCRC64ECMA(b *testing.B) {
	buf := make([]byte, benchWriteBuf)
	var crc uint64
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		crc = crc64.Update(crc, ecmaTable, buf)
	}
	_ = crc
}

func benchSyncDir(dir string) error {
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

// BenchmarkResolveSTSToken is the per-request cost of checking temporary credentials on
// the OSS side (the token's claims and policies are cached after the first request).
func BenchmarkResolveSTSToken(b *testing.B) {
	a, _ := newTestAuthority(b)
	cr, err := a.AssumeRole("LTAIworker", uploaderARN, "cam-1", testSessPolicy, time.Hour, t0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Resolve(cr.AccessKeyID, cr.SecurityToken, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAssumeRole is the cost of issuing one set of temporary credentials.
func BenchmarkAssumeRole(b *testing.B) {
	a, _ := newTestAuthority(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.AssumeRole("LTAIworker", uploaderARN, "cam-1", testSessPolicy, time.Hour, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateFile creates 1000 empty files per iteration with O_CREAT|O_EXCL in a fresh
// temporary directory, as newBlob does for every PutObject, and reports the CPU per create.
// On ext4 it depends on the inode group the directory lands in: the allocator scans the
// group's recently freed inodes on every create (see BENCHMARKS.md).
func BenchmarkCreateFile(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "bench", "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	const n = 1000
	t0 := processCPU(b)
	for i := 0; b.Loop(); i++ {
		for j := range n {
			f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%d-%d", i, j)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	}
	b.ReportMetric(float64((processCPU(b)-t0).Microseconds())/float64(b.N*n), "cpu-µs/create")
}
