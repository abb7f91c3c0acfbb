package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/Eyevinn/mp4ff/avc"
	"github.com/Eyevinn/mp4ff/hevc"
	astits "github.com/asticode/go-astits"
)

// The parts of an MPEG-TS file Probe reads: the head, up to the first few timestamps of
// the video stream after its tables and the sequence parameter set (at most tsHead
// bytes), and the tail, for the last timestamps: tsTail bytes, more (up to tsTailMax)
// while that holds too few of them.
const (
	tsHead      = 2 << 20
	tsTail      = 64 << 10
	tsTailMax   = 4 << 20
	tsEnoughPTS = 8
)

// ptsWrap is the period of the 33-bit presentation timestamps (90 kHz).
const ptsWrap = 1 << 33

// tsWindow is what one pass over part of the file found.
type tsWindow struct {
	videoPID   int // -1 until known
	streamType astits.StreamType
	pts        []int64 // the video stream's timestamps, in file order
	firstData  []byte  // the first video PES's payload (for the SPS)
}

// demux reads n bytes at off into w, stopping early once w holds enough timestamps if
// enough is set.
func demux(r io.ReaderAt, off, n int64, packetSize int, w *tsWindow, enough bool) error {
	rec := &errorRecorder{r: r}
	dmx := astits.NewDemuxer(context.Background(), io.NewSectionReader(rec, off, n), astits.DemuxerOptPacketSize(packetSize))
	for {
		d, err := dmx.NextData()
		if rec.err != nil {
			return fmt.Errorf("media: reading the MPEG-TS: %w", rec.err)
		}
		if errors.Is(err, astits.ErrNoMorePackets) || errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return malformed("MPEG-TS: %v", err)
		}
		switch {
		case d.PMT != nil && w.videoPID < 0:
			for _, es := range d.PMT.ElementaryStreams {
				if es.StreamType.IsVideo() {
					w.videoPID, w.streamType = int(es.ElementaryPID), es.StreamType
					break
				}
			}
		case d.PES != nil && d.PES.Header != nil:
			h := d.PES.Header
			// Without the tables (the tail), the video stream is the PES stream with a
			// video stream ID (0xE0 to 0xEF).
			if w.videoPID < 0 && h.StreamID >= 0xE0 && h.StreamID <= 0xEF {
				w.videoPID = int(d.PID)
			}
			if int(d.PID) != w.videoPID || h.OptionalHeader == nil || h.OptionalHeader.PTS == nil {
				continue
			}
			w.pts = append(w.pts, h.OptionalHeader.PTS.Base)
			if w.firstData == nil {
				w.firstData = slices.Clone(d.PES.Data)
			}
			if enough && len(w.pts) >= tsEnoughPTS {
				return nil
			}
		}
	}
}

func probeTS(r io.ReaderAt, size int64, packetSize int) (Info, error) {
	head := tsWindow{videoPID: -1}
	headLen := min(size, tsHead) / int64(packetSize) * int64(packetSize)
	if err := demux(r, 0, headLen, packetSize, &head, true); err != nil {
		return Info{}, err
	}
	if len(head.pts) == 0 {
		return Info{}, malformed("MPEG-TS without a timestamped video stream in its first %d bytes", headLen)
	}
	info := Info{Container: MPEGTS}
	switch head.streamType {
	case astits.StreamTypeH264Video:
		info.Codec = H264
	case astits.StreamTypeH265Video:
		info.Codec = H265
	case astits.StreamTypeMPEG4Video:
		info.Codec = MPEG4
	case astits.StreamTypeMPEG2Video, astits.StreamTypeMPEG1Video:
		info.Codec = MPEG2
	}
	info.Width, info.Height = pictureSize(info.Codec, head.firstData)

	// The tail: the last timestamps. A file that the head read whole has them already.
	pts := head.pts
	if len(head.pts) >= tsEnoughPTS || headLen < size {
		for tail := int64(tsTail); ; tail *= 4 {
			start := max(size-tail, 0) / int64(packetSize) * int64(packetSize)
			w := tsWindow{videoPID: head.videoPID}
			if err := demux(r, start, size-start, packetSize, &w, false); err != nil {
				return Info{}, err
			}
			if len(w.pts) >= 2 || start == 0 || tail >= tsTailMax {
				pts = append(w.pts, head.pts...)
				break
			}
		}
	}
	info.Duration = ptsSpan(slices.Min(head.pts), pts)
	return info, nil
}

// ptsSpan is the duration from first to the end of the last frame among pts: the
// largest timestamp (unwrapped past first), plus one frame (the smallest step between
// timestamps in order).
func ptsSpan(first int64, pts []int64) time.Duration {
	if len(pts) == 0 {
		return 0
	}
	un := make([]int64, len(pts))
	for i, p := range pts {
		if p < first {
			p += ptsWrap
		}
		un[i] = p - first
	}
	slices.Sort(un)
	var frame int64
	for i := 1; i < len(un); i++ {
		if d := un[i] - un[i-1]; d > 0 && (frame == 0 || d < frame) {
			frame = d
		}
	}
	last := un[len(un)-1] + frame
	return time.Duration(last) * time.Second / 90000
}

// pictureSize reads the width and height from the sequence parameter set in an Annex B
// byte stream (the first video PES).
func pictureSize(codec string, data []byte) (int, int) {
	for _, nalu := range avc.ExtractNalusFromByteStream(data) {
		if len(nalu) < 2 {
			continue
		}
		switch codec {
		case H264:
			if nalu[0]&0x1f == 7 {
				if sps, err := avc.ParseSPSNALUnit(nalu, false); err == nil {
					return int(sps.Width), int(sps.Height)
				}
			}
		case H265:
			if (nalu[0]>>1)&0x3f == 33 {
				if sps, err := hevc.ParseSPSNALUnit(nalu); err == nil {
					w, h := sps.ImageSize()
					return int(w), int(h)
				}
			}
		}
	}
	return 0, 0
}
