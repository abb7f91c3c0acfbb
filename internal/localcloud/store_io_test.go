package localcloud

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"hash"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestCopyIn streams bodies of sizes around the boundaries (hashed inline, one buffer,
// several, more than the pipeline's depth) through copyIn in reads of odd sizes and checks the
// file, the size, the CRC-64 and every hash against the data.
func TestCopyIn(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, (copyDepth+2)*copyBufSize+12345)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	sizes := []int{0, 1, inlineMax, inlineMax + 1, copyBufSize - 1, copyBufSize, copyBufSize + 1, 2 * copyBufSize,
		copyDepth * copyBufSize, (copyDepth+1)*copyBufSize + 7, len(data)}
	for _, size := range sizes {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			t.Parallel()
			body := data[:size]
			f, err := os.Create(filepath.Join(t.TempDir(), "blob"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Start from a prefix, as an append does: the CRC continues and the data goes
			// after what the file holds.
			prefix := []byte("prefix")
			if _, err := f.Write(prefix); err != nil {
				t.Fatal(err)
			}
			d := &digest{size: 6, crc: crc64.Checksum(prefix, ecmaTable), hashes: []hash.Hash{md5.New(), sha256.New()}}
			src := &oddReader{r: bytes.NewReader(body), rng: rand.New(rand.NewPCG(uint64(size), 3))}
			if err := copyIn(f, src, int64(size), d); err != nil {
				t.Fatal(err)
			}
			whole := append(append([]byte{}, prefix...), body...)
			got, err := os.ReadFile(f.Name())
			if err != nil || !bytes.Equal(got, whole) {
				t.Fatalf("file holds %d bytes (%v), want %d", len(got), err, len(whole))
			}
			if d.size != int64(len(whole)) || d.crc != crc64.Checksum(whole, ecmaTable) {
				t.Errorf("size %d crc %x, want %d %x", d.size, d.crc, len(whole), crc64.Checksum(whole, ecmaTable))
			}
			md, sh := md5.Sum(body), sha256.Sum256(body)
			if !bytes.Equal(d.hashes[0].Sum(nil), md[:]) || !bytes.Equal(d.hashes[1].Sum(nil), sh[:]) {
				t.Error("hash mismatch")
			}
		})
	}
}

// TestCopyInErrors checks that a body over the limit writes nothing beyond it, that a
// source error is passed on unchanged, and that a failed write stops the copy with its
// error, with bodies hashed inline, of one buffer and of several.
func TestCopyInErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, size := range []int{1000, 100_000, 3*copyBufSize + 5} {
		body := bytes.Repeat([]byte{'x'}, size)
		name := strconv.Itoa(size)

		f, _ := os.Create(filepath.Join(dir, "limit"+name))
		d := &digest{hashes: []hash.Hash{md5.New()}}
		err := copyIn(f, bytes.NewReader(body), int64(size-1), d)
		fi, _ := f.Stat()
		f.Close()
		if !errors.Is(err, errTooLarge) || fi.Size() > int64(size-1) {
			t.Errorf("%d bytes, limit %d: %v, %d bytes written", size, size-1, err, fi.Size())
		}

		cut := errors.New("connection reset")
		f, _ = os.Create(filepath.Join(dir, "cut"+name))
		d = &digest{hashes: []hash.Hash{md5.New()}}
		err = copyIn(f, io.MultiReader(bytes.NewReader(body), &errReader{cut}), int64(2*size), d)
		f.Close()
		if !errors.Is(err, cut) || d.size != int64(size) {
			t.Errorf("%d bytes then an error: %v, size %d", size, err, d.size)
		}

		path := filepath.Join(dir, "ro"+name)
		os.WriteFile(path, nil, 0o600)
		f, _ = os.Open(path) // read-only: every write fails
		d = &digest{hashes: []hash.Hash{md5.New()}}
		err = copyIn(f, bytes.NewReader(body), int64(size), d)
		f.Close()
		if err == nil {
			t.Errorf("%d bytes into a read-only file: no error", size)
		}
	}
}

// oddReader returns at most a random 1 to 100,000 bytes per Read.
type oddReader struct {
	r   io.Reader
	rng *rand.Rand
}

func (o *oddReader) Read(p []byte) (int, error) {
	return o.r.Read(p[:min(len(p), 1+o.rng.IntN(100_000))])
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }
