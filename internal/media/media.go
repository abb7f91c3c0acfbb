// Package media reads a video clip's duration, resolution and codec from its container,
// reading only the parts it needs through an io.ReaderAt (which the console backs with
// ranged GETs on OSS).
//
// MP4 and QuickTime (MOV) go through github.com/abema/go-mp4: the walk reads the header
// of each top-level box and skips the media data, expands only moov (and moof, for a
// fragmented file without a total duration) and reads only the boxes that say the
// duration (mvhd, mehd, mdhd, or the fragments' tfdt and trun), the track kind (hdlr)
// and the picture size (the sample entry, else tkhd). MPEG-TS goes through
// github.com/asticode/go-astits: the duration is the span of the video stream's
// presentation timestamps, the first read from the head of the file and the last from
// its tail; the picture size comes from the stream's sequence parameter set (H.264 or
// H.265, parsed by github.com/Eyevinn/mp4ff).
package media

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Containers, as Info.Container names them.
const (
	MP4    = "mp4"
	MOV    = "mov"
	MPEGTS = "mpegts"
)

// Codecs, as Info.Codec names them.
const (
	H264  = "h264"
	H265  = "h265"
	AV1   = "av1"
	VP8   = "vp8"
	VP9   = "vp9"
	MPEG4 = "mpeg4"
	MPEG2 = "mpeg2"
)

// ErrUnknownFormat is returned for a file that is neither MP4/MOV nor MPEG-TS.
var ErrUnknownFormat = errors.New("media: not an MP4, MOV or MPEG-TS file")

// ErrMalformed wraps the errors of a file that looks like a known container but cannot
// be read as one.
var ErrMalformed = errors.New("media: malformed container")

// Info is what Probe read. Zero fields are unknown.
type Info struct {
	// Container is MP4, MOV or MPEGTS.
	Container string
	// Codec is the video codec (H264, H265, ...; the sample entry's type for others).
	Codec string
	// Width and Height are the picture size in pixels.
	Width, Height int
	// Duration is the presentation's length.
	Duration time.Duration
}

// Probe reads r, size bytes, as a video container. A reader error is returned as it is
// (wrapped), so that the caller can tell a failed read from a bad file (ErrMalformed,
// ErrUnknownFormat) with errors.Is/As.
func Probe(r io.ReaderAt, size int64) (Info, error) {
	head := make([]byte, min(size, 3*192))
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return Info{}, fmt.Errorf("media: reading the head: %w", err)
	}
	switch {
	case isMP4(head):
		return probeMP4(r, size)
	case tsPacketSize(head) != 0:
		return probeTS(r, size, tsPacketSize(head))
	}
	return Info{}, ErrUnknownFormat
}

// isMP4 reports whether b starts with an ISO BMFF / QuickTime top-level box.
func isMP4(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	switch string(b[4:8]) {
	case "ftyp", "moov", "mdat", "free", "skip", "wide", "pnot", "styp":
		return true
	}
	return false
}

// tsPacketSize returns 188 or 192 (M2TS, a 4-byte timestamp before each packet) if b
// starts with three MPEG-TS packets, else 0.
func tsPacketSize(b []byte) int {
	for _, n := range []int{188, 192} {
		off := n - 188 // the sync byte's place in the packet
		if len(b) >= 2*n+off+1 && b[off] == 0x47 && b[n+off] == 0x47 && b[2*n+off] == 0x47 {
			return n
		}
	}
	return 0
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
