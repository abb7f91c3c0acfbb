package localcloud

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"hash/crc64"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// ecmaTable is the CRC-64/ECMA-182 table OSS uses for x-oss-hash-crc64ecma.
var ecmaTable = crc64.MakeTable(crc64.ECMA)

// Bodies are streamed through copyBufs buffers of copyBufSize: large enough that each
// write to disk is one big system call, few enough (copyDepth per body) to keep memory flat.
// Bodies of at most inlineMax bytes are hashed by the goroutine that reads them (the
// handoff to other goroutines would cost more than it saves).
const (
	copyBufSize = 256 << 10
	copyDepth   = 4
	inlineMax   = 16 << 10
)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// errTooLarge reports a body over its limit.
var errTooLarge = errors.New("body too large")

// digest accumulates the size, CRC-64 and hashes of streamed data.
type digest struct {
	size   int64
	crc    uint64      // continues from its initial value, as crc64.Update does
	hashes []hash.Hash // each sees every byte
}

// chunk is one buffer of a body on its way through copyIn's consumers.
type chunk struct {
	buf  *[]byte
	n    int
	left atomic.Int32 // consumers yet to see it; the last one frees the chunk
}

// copyIn streams src into f at f's current offset until EOF, updating d. More than limit
// bytes gives errTooLarge (and nothing beyond limit is written).
//
// The copy is a pipeline: the caller only reads, and each buffer goes to one goroutine per
// consumer (the file write, the CRC-64, each hash), so that MD5 (slower than most disks),
// the CRC and the write run in parallel with each other and with the next read. A buffer
// is read into again once every consumer is done with it. A body of at most inlineMax
// bytes is written, checksummed and hashed by the caller.
func copyIn(f *os.File, src io.Reader, limit int64, d *digest) error {
	var chunks [copyDepth]chunk
	for i := range chunks {
		chunks[i].buf = copyBufs.Get().(*[]byte)
	}
	defer func() {
		for i := range chunks {
			copyBufs.Put(chunks[i].buf)
		}
	}()
	first := &chunks[0]
	n, err := fill(src, *first.buf)
	if n > 0 && int64(n) > limit {
		return errTooLarge
	}
	if err != nil && n <= inlineMax {
		// The whole body (or all there is of it) is in the buffer.
		p := (*first.buf)[:n]
		d.size += int64(n)
		d.crc = crc64.Update(d.crc, ecmaTable, p)
		for _, h := range d.hashes {
			h.Write(p)
		}
		if _, werr := f.Write(p); werr != nil {
			return werr
		}
		if err == io.EOF {
			return nil
		}
		return err
	}

	free := make(chan *chunk, copyDepth) // chunks no consumer holds
	for i := 1; i < copyDepth; i++ {
		free <- &chunks[i]
	}
	var (
		wg      sync.WaitGroup
		werr    error       // the write's error; read after wg.Wait
		wfailed atomic.Bool // set with werr, to stop reading early
	)
	consumers := make([]func(p []byte), 0, 2+len(d.hashes))
	consumers = append(consumers,
		func(p []byte) {
			if werr == nil {
				if _, werr = f.Write(p); werr != nil {
					wfailed.Store(true)
				}
			}
		},
		func(p []byte) { d.crc = crc64.Update(d.crc, ecmaTable, p) })
	for _, h := range d.hashes {
		consumers = append(consumers, func(p []byte) { h.Write(p) })
	}
	queues := make([]chan *chunk, len(consumers))
	for i, consume := range consumers {
		q := make(chan *chunk, copyDepth)
		queues[i] = q
		wg.Go(func() {
			for c := range q {
				consume((*c.buf)[:c.n])
				if c.left.Add(-1) == 0 {
					free <- c
				}
			}
		})
	}
	send := func(c *chunk) {
		c.left.Store(int32(len(queues)))
		for _, q := range queues {
			q <- c
		}
	}
	first.n = n
	err = func() error {
		c, read := first, int64(n)
		for {
			d.size += int64(c.n)
			send(c)
			if err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
			if wfailed.Load() {
				return nil // the write's error is returned below
			}
			c = <-free
			c.n, err = fill(src, *c.buf)
			if read+int64(c.n) > limit {
				free <- c
				return errTooLarge
			}
			read += int64(c.n)
		}
	}()
	for _, q := range queues {
		close(q)
	}
	wg.Wait() // d and werr are the consumers' until here
	if werr != nil {
		return werr
	}
	return err
}

// fill reads into buf until it is full or src fails. Unlike io.ReadFull it passes src's
// error on unchanged, so that a body cut short (io.ErrUnexpectedEOF from net/http) is not
// mistaken for its end.
func fill(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// crc64Combine returns the CRC-64/ECMA of A‖B from crc1 = CRC(A), crc2 = CRC(B) and
// len2 = len(B). For a CRC with inverted initial value and output, CRC(A‖B) equals
// crc2 XOR (crc1 advanced through len2 zero bytes of the raw register), and advancing through
// n zero bytes is a linear map over GF(2), applied here as a 64×64 bit matrix raised to the
// n-th power by repeated squaring.
func crc64Combine(crc1, crc2 uint64, len2 int64) uint64 {
	if len2 <= 0 {
		return crc1 // CRC(A‖ε) = CRC(A)
	}
	// One zero bit: shift right, folding in the reflected polynomial when bit 0 falls out.
	var op [64]uint64
	op[0] = crc64.ECMA
	for i := 1; i < 64; i++ {
		op[i] = 1 << (i - 1)
	}
	var sq [64]uint64
	gf2Square(&sq, &op) // two zero bits
	gf2Square(&op, &sq) // four
	gf2Square(&sq, &op) // eight: one zero byte
	// sq now advances one byte; walk len2's bits, squaring for each.
	for n := uint64(len2); ; {
		if n&1 != 0 {
			crc1 = gf2Times(&sq, crc1)
		}
		n >>= 1
		if n == 0 {
			break
		}
		gf2Square(&op, &sq)
		sq = op
	}
	return crc1 ^ crc2
}

// gf2Times multiplies the bit matrix m (column i is the image of bit i) by v.
func gf2Times(m *[64]uint64, v uint64) uint64 {
	var out uint64
	for i := 0; v != 0; i, v = i+1, v>>1 {
		if v&1 != 0 {
			out ^= m[i]
		}
	}
	return out
}

// gf2Square sets dst to m·m.
func gf2Square(dst, m *[64]uint64) {
	for i := range m {
		dst[i] = gf2Times(m, m[i])
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
