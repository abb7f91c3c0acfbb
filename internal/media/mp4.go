package media

import (
	"errors"
	"fmt"
	"io"
	"time"

	mp4 "github.com/abema/go-mp4"
)

// maxBoxes bounds the boxes one walk visits (a file of a million tiny boxes would
// otherwise make a million reads).
const maxBoxes = 100_000

// errTooManyBoxes stops a walk at maxBoxes.
var errTooManyBoxes = errors.New("media: more boxes than a clip has")

// mp4Track is what the walk learned about one track.
type mp4Track struct {
	id        uint32
	handler   string // "vide", "soun", ...
	timescale uint32
	duration  uint64 // mdhd, in timescale units
	codec     string
	width     int
	height    int
	// Fragments: the default sample duration (trex), and the end of the latest
	// fragment (tfdt plus its samples' durations), in timescale units.
	defaultDuration uint32
	fragmentEnd     uint64
}

// mp4Walk collects the boxes that matter.
type mp4Walk struct {
	quickTime     bool
	timescale     uint32 // mvhd
	duration      uint64 // mvhd
	fragmentTotal uint64 // mehd, in mvhd timescale units
	tracks        []*mp4Track
	boxes         int
	fragment      fragmentState
	currentTrack  *mp4Track
	sawMoov       bool
}

// fragmentState is the traf being read.
type fragmentState struct {
	track           *mp4Track
	base            uint64
	defaultDuration uint32
}

func (w *mp4Walk) track(id uint32) *mp4Track {
	for _, t := range w.tracks {
		if t.id == id {
			return t
		}
	}
	return nil
}

// containers are the boxes the walk descends into.
var containers = map[mp4.BoxType]bool{
	mp4.BoxTypeMoov(): true, mp4.BoxTypeTrak(): true, mp4.BoxTypeMdia(): true,
	mp4.BoxTypeMinf(): true, mp4.BoxTypeStbl(): true, mp4.BoxTypeStsd(): true,
	mp4.BoxTypeMvex(): true, mp4.BoxTypeMoof(): true, mp4.BoxTypeTraf(): true,
}

// codecOfEntry names the codec of a visual sample entry type.
var codecOfEntry = map[string]string{
	"avc1": H264, "avc3": H264, "hvc1": H265, "hev1": H265, "av01": AV1,
	"vp08": VP8, "vp09": VP9, "mp4v": MPEG4,
}

func (w *mp4Walk) handle(h *mp4.ReadHandle) (any, error) {
	if w.boxes++; w.boxes > maxBoxes {
		return nil, errTooManyBoxes
	}
	t := h.BoxInfo.Type
	depth := len(h.Path)
	switch {
	case t == mp4.BoxTypeFtyp() && depth == 1:
		box, _, err := h.ReadPayload()
		if err != nil {
			return nil, err
		}
		if ftyp, ok := box.(*mp4.Ftyp); ok {
			w.quickTime = string(ftyp.MajorBrand[:]) == "qt  "
		}
		return nil, nil
	case t == mp4.BoxTypeMoof() && depth == 1:
		if w.knowsDuration() {
			return nil, nil // every fragment would be a read, for nothing
		}
	case t == mp4.BoxTypeMoov() && depth == 1:
		w.sawMoov = true
	case t == mp4.BoxTypeTrak():
		w.currentTrack = &mp4Track{}
		w.tracks = append(w.tracks, w.currentTrack)
	case t == mp4.BoxTypeTraf():
		w.fragment = fragmentState{}
	}
	if containers[t] {
		if depth > 1 && h.Path[0] != mp4.BoxTypeMoov() && h.Path[0] != mp4.BoxTypeMoof() {
			return nil, nil // a moov or moof inside something else: not ours
		}
		_, err := h.Expand()
		if t == mp4.BoxTypeTraf() {
			w.endFragment()
		}
		return nil, err
	}
	if depth == 1 || !h.BoxInfo.IsSupportedType() {
		return nil, nil // media data and everything else: skipped, header only
	}
	switch t {
	case mp4.BoxTypeMvhd(), mp4.BoxTypeMehd(), mp4.BoxTypeTrex(), mp4.BoxTypeTkhd(), mp4.BoxTypeMdhd(), mp4.BoxTypeHdlr(),
		mp4.BoxTypeTfhd(), mp4.BoxTypeTfdt(), mp4.BoxTypeTrun():
	default:
		if len(h.Path) < 2 || h.Path[len(h.Path)-2] != mp4.BoxTypeStsd() {
			return nil, nil
		}
	}
	box, _, err := h.ReadPayload()
	if err != nil {
		return nil, err
	}
	w.take(t, box)
	return nil, nil
}

// take records a box's payload.
func (w *mp4Walk) take(t mp4.BoxType, box mp4.IBox) {
	cur := w.currentTrack
	switch b := box.(type) {
	case *mp4.Mvhd:
		w.timescale, w.duration = b.Timescale, b.GetDuration()
		if b.GetVersion() == 0 && b.DurationV0 == 0xFFFFFFFF {
			w.duration = 0 // "unknown"
		}
	case *mp4.Mehd:
		w.fragmentTotal = b.GetFragmentDuration()
	case *mp4.Trex:
		if tr := w.track(b.TrackID); tr != nil {
			tr.defaultDuration = b.DefaultSampleDuration
		}
	case *mp4.Tkhd:
		if cur != nil {
			cur.id = b.TrackID
			if cur.width == 0 {
				cur.width, cur.height = int(b.Width>>16), int(b.Height>>16)
			}
		}
	case *mp4.Mdhd:
		if cur != nil {
			cur.timescale, cur.duration = b.Timescale, b.GetDuration()
		}
	case *mp4.Hdlr:
		if cur != nil {
			cur.handler = string(b.HandlerType[:])
		}
	case *mp4.VisualSampleEntry:
		if cur != nil && cur.codec == "" {
			cur.codec = codecOfEntry[t.String()]
			if cur.codec == "" {
				cur.codec = t.String()
			}
			if b.Width > 0 && b.Height > 0 {
				cur.width, cur.height = int(b.Width), int(b.Height)
			}
		}
	case *mp4.Tfhd:
		w.fragment.track = w.track(b.TrackID)
		if b.GetFlags()&mp4.TfhdDefaultSampleDurationPresent != 0 {
			w.fragment.defaultDuration = b.DefaultSampleDuration
		} else if w.fragment.track != nil {
			w.fragment.defaultDuration = w.fragment.track.defaultDuration
		}
	case *mp4.Tfdt:
		w.fragment.base = b.GetBaseMediaDecodeTime()
		if tr := w.fragment.track; tr != nil {
			tr.fragmentEnd = max(tr.fragmentEnd, w.fragment.base)
		}
	case *mp4.Trun:
		tr := w.fragment.track
		if tr == nil {
			return
		}
		var sum uint64
		for _, e := range b.Entries {
			if b.GetFlags()&0x100 != 0 {
				sum += uint64(e.SampleDuration)
			} else {
				sum += uint64(w.fragment.defaultDuration)
			}
		}
		if len(b.Entries) == 0 {
			sum = uint64(b.SampleCount) * uint64(w.fragment.defaultDuration)
		}
		w.fragment.base += sum
		tr.fragmentEnd = max(tr.fragmentEnd, w.fragment.base)
	}
}

func (w *mp4Walk) endFragment() { w.fragment = fragmentState{} }

// knowsDuration reports whether moov said the duration, so the fragments need not be read.
func (w *mp4Walk) knowsDuration() bool {
	return w.timescale > 0 && (w.duration > 0 || w.fragmentTotal > 0)
}

// video returns the first video track (or the first track with a picture size).
func (w *mp4Walk) video() *mp4Track {
	for _, t := range w.tracks {
		if t.handler == "vide" {
			return t
		}
	}
	for _, t := range w.tracks {
		if t.width > 0 && t.height > 0 {
			return t
		}
	}
	return nil
}

func ticks(n uint64, timescale uint32) time.Duration {
	if timescale == 0 {
		return 0
	}
	sec := n / uint64(timescale)
	rem := n % uint64(timescale)
	if sec > uint64(100*365*24*time.Hour/time.Second) { // nonsense: a century
		return 0
	}
	return time.Duration(sec)*time.Second + time.Duration(rem)*time.Second/time.Duration(timescale)
}

// readerAtSeeker is an io.ReadSeeker over an io.ReaderAt that remembers the first error
// of the underlying reader (other than EOF), which go-mp4 may not pass on intact.
type readerAtSeeker struct {
	*io.SectionReader
	src *errorRecorder
}

type errorRecorder struct {
	r   io.ReaderAt
	err error
}

func (e *errorRecorder) ReadAt(p []byte, off int64) (int, error) {
	n, err := e.r.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) && e.err == nil {
		e.err = err
	}
	return n, err
}

func newReadSeeker(r io.ReaderAt, size int64) readerAtSeeker {
	rec := &errorRecorder{r: r}
	return readerAtSeeker{SectionReader: io.NewSectionReader(rec, 0, size), src: rec}
}

func probeMP4(r io.ReaderAt, size int64) (Info, error) {
	rs := newReadSeeker(r, size)
	w := &mp4Walk{}
	_, err := mp4.ReadBoxStructure(rs, w.handle)
	if rs.src.err != nil {
		return Info{}, fmt.Errorf("media: reading the MP4: %w", rs.src.err)
	}
	if err != nil {
		return Info{}, malformed("MP4: %v", err)
	}
	if !w.sawMoov {
		return Info{}, malformed("MP4 without a movie box (moov)")
	}
	info := Info{Container: MP4}
	if w.quickTime {
		info.Container = MOV
	}
	v := w.video()
	if v != nil {
		info.Codec, info.Width, info.Height = v.codec, v.width, v.height
	}
	switch {
	case w.timescale > 0 && w.duration > 0:
		info.Duration = ticks(w.duration, w.timescale)
	case w.timescale > 0 && w.fragmentTotal > 0:
		info.Duration = ticks(w.fragmentTotal, w.timescale)
	default:
		// A fragmented file without a total: the end of the video track's last
		// fragment, else the longest track.
		var best time.Duration
		for _, t := range w.tracks {
			d := ticks(max(t.duration, t.fragmentEnd), t.timescale)
			if t == v && d > 0 {
				best = d
				break
			}
			best = max(best, d)
		}
		info.Duration = best
	}
	return info, nil
}
