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
)

// ecmaTable is the CRC-64/ECMA-182 table OSS uses for x-oss-hash-crc64ecma.
var ecmaTable = crc64.MakeTable(crc64.ECMA)

// Bodies are streamed through copyBufs buffers of copyBufSize: large enough that each
// write to disk is one big system call, few enough (copyDepth per body) to keep memory flat.
const (
	copyBufSize = 256 << 10
	copyDepth   = 4
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

// copyIn streams src into f at f's current offset until EOF, updating d. More than limit
// bytes gives errTooLarge (and nothing beyond limit is written). The hashes run in a second
// goroutine, overlapped with reading, the CRC and writing: MD5 alone is slower than most
// disks.
func copyIn(f *os.File, src io.Reader, limit int64, d *digest) error {
	var bufs [copyDepth]*[]byte
	free := make(chan []byte, copyDepth) // buffers neither being hashed nor written
	for i := range bufs {
		bufs[i] = copyBufs.Get().(*[]byte)
		free <- *bufs[i]
	}
	defer func() {
		for _, b := range bufs {
			copyBufs.Put(b)
		}
	}()
	toHash := make(chan []byte, copyDepth)
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for p := range toHash {
			for _, h := range d.hashes {
				h.Write(p)
			}
			free <- p[:cap(p)]
		}
	}()
	err := func() error {
		var n0 int64
		for {
			buf := <-free
			n, err := fill(src, buf)
			if n > 0 {
				if n0+int64(n) > limit {
					return errTooLarge
				}
				p := buf[:n]
				toHash <- p
				d.crc = crc64.Update(d.crc, ecmaTable, p)
				d.size += int64(n)
				if _, werr := f.Write(p); werr != nil {
					return werr
				}
				n0 += int64(n)
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}()
	close(toHash)
	<-hashed // d.hashes are the hasher's until here
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
