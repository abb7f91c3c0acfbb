package localcloud

import (
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// BenchmarkCommitProtocol64KiBx1000Concurrent is PutObject's commit protocol alone, no
// HTTP, SDK, signatures or hashing, from benchClients goroutines at once, 1000 objects of
// 64 KiB per iteration: write the data and a 300-byte record into a fresh file, fsync it,
// rename it to its object's name (new names in every iteration), then make the rename durable with an fsync of the directory, either each commit its own
// (dir=each, the store before group commit) or through groupSync (dir=group, the store
// now). Reports the directory fsyncs per object.
func BenchmarkCommitProtocol64KiBx1000Concurrent(b *testing.B) {
	for _, group := range []bool{false, true} {
		name := "dir=each"
		if group {
			name = "dir=group"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			g := newGroupSync(dir)
			var dirSyncs atomic.Int64
			g.setFsync(func(d string) error { dirSyncs.Add(1); return syncDir(d) })
			srcs := make([]*patternReader, benchClients)
			bufs := make([][]byte, benchClients)
			for i := range srcs {
				srcs[i], bufs[i] = newPatternReader(b), make([]byte, benchWriteBuf)
			}
			record := make([]byte, 300)
			b.SetBytes(benchSmallSize * benchSmallN)
			done := reportCPU(b, benchSmallSize*benchSmallN)
			for i := 0; b.Loop(); i++ {
				runConcurrent(b, func(w, j int) error {
					if err := commitInline(filepath.Join(dir, smallName("names=new", i, j)), srcs[w], bufs[w], record); err != nil {
						return err
					}
					if group {
						return g.sync()
					}
					dirSyncs.Add(1)
					return syncDir(dir)
				})
			}
			done()
			b.ReportMetric(float64(dirSyncs.Load())/float64(b.N*benchSmallN), "dir-fsyncs/object")
		})
	}
}

// commitInline writes an object's data and record into a fresh file beside path, fsyncs
// it and renames it to path.
func commitInline(path string, src io.Reader, buf, record []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "blob-")
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(onlyWriter{f}, io.LimitReader(src, benchSmallSize), buf)
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
		err = os.Rename(f.Name(), path)
	}
	return err
}
