package devicekit

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/grafov/m3u8"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/media"
	"github.com/clipgate/clipgate/internal/protocol"
)

// HLS from the device: the seed SDK's oss_media_hls_stream, done the camera's way. The
// camera's encoder already cuts MPEG-TS segments (ffmpeg's hls or segment muxer, a
// hardware encoder's recorder); a Stream uploads each as a clip with the device's own
// credentials and prefix (so each is announced and verified like any upload) and keeps an
// m3u8 playlist beside them in OSS: a sliding window while the stream is live, rewritten
// as segments arrive, then every segment and #EXT-X-ENDLIST once it ends.

// Defaults of StreamConfig.
const (
	DefaultStreamWindow       = 6
	DefaultStreamPollInterval = 500 * time.Millisecond
	// PlaylistContentType is the Content-Type of a stream's playlist (RFC 8216, 4).
	PlaylistContentType = "application/vnd.apple.mpegurl"
	// SegmentContentType is the Content-Type of a stream's segments.
	SegmentContentType = "video/mp2t"
)

// StreamConfig configures a Stream (Kit.NewStream). Zero values take the documented
// defaults.
type StreamConfig struct {
	// Dir is the directory the encoder writes the stream's MPEG-TS segments into (*.ts;
	// names starting with '.' or ending in .tmp or .part are ignored), one directory per
	// stream. It must exist. Required.
	//
	// Segments are taken in the natural order of their names (digits compared as
	// numbers: seg9.ts before seg10.ts). A segment is complete once the encoder's
	// playlist lists it, once a later segment exists, or when the stream ends. If Dir
	// holds an m3u8 playlist (the encoder's, e.g. ffmpeg -f hls), the kit takes each
	// segment's duration from its #EXTINF, and the stream ends when it shows
	// #EXT-X-ENDLIST; otherwise durations come from the segment's timestamps (PTS), and
	// the stream ends with Stream.Finish.
	Dir string
	// Name names the stream's objects: the playlist {device prefix}{yyyy}/{mm}/{dd}/{Name}.m3u8
	// (dated by the stream's start, UTC) and the segments {Name}-{file name}, dated by
	// their own start. Default: Dir's base name and the start's time of day, e.g.
	// "front-143005". A Name must be unique per device and day: a second stream of the
	// same name replaces the first one's playlist. See ValidClipName.
	Name string
	// Window is the number of segments in the live playlist. Default 6.
	Window int
	// Encrypt encrypts the segments with AES-128 (CBC, PKCS#7 padding, RFC 8216 5.2),
	// with Key, and the IV of each segment its media sequence number.
	Encrypt bool
	// Key is the 16-byte AES-128 key; default a random key per stream, kept in
	// StateDir. With Encrypt only.
	Key []byte
	// KeyURI is the URI the playlist's EXT-X-KEY gives for the key. Default: the kit
	// stores the key beside the playlist as {Name}.key, under the device's prefix, and
	// names it relatively; the console serves it to logged-in operators. A KeyURI of your
	// own (a key server) keeps the key off OSS. With Encrypt only.
	KeyURI string
	// PollInterval is the period of the directory scan. Default 500ms.
	PollInterval time.Duration
	// OnEvent, when set, is told of every outcome, from Run's goroutine, one call at a
	// time: it should return quickly.
	OnEvent func(StreamEvent)
}

// StreamEventKind is the kind of a StreamEvent.
type StreamEventKind int

// Outcomes reported to StreamConfig.OnEvent.
const (
	// StreamSegment: a segment is stored (Key, Seq, Duration, Event) and its file
	// removed from Dir.
	StreamSegment StreamEventKind = iota + 1
	// StreamPlaylist: the playlist was written (Key; Ended once it is the final one).
	StreamPlaylist
	// StreamRejected: a segment file is not an MPEG-TS segment (Err); it is left in Dir,
	// out of the playlist, and announced with a "failed" event (Event).
	StreamRejected
	// StreamWarning: the encoder's playlist cannot be read (Err); the kit reads the
	// durations from the segments until it can.
	StreamWarning
	// StreamRetry: storing a segment or the playlist failed (Err); Run tries again after
	// a backoff.
	StreamRetry
)

// String returns "segment", "playlist", "rejected", "warning" or "retry".
func (k StreamEventKind) String() string {
	switch k {
	case StreamSegment:
		return "segment"
	case StreamPlaylist:
		return "playlist"
	case StreamRejected:
		return "rejected"
	case StreamWarning:
		return "warning"
	case StreamRetry:
		return "retry"
	}
	return fmt.Sprintf("StreamEventKind(%d)", int(k))
}

// StreamEvent is one outcome of a Stream.
type StreamEvent struct {
	Kind     StreamEventKind
	Path     string                // the segment file, or the encoder's playlist (Warning)
	Key      string                // the object key (Segment, Playlist)
	Seq      uint64                // the segment's media sequence number (Segment)
	Duration time.Duration         // the segment's duration (Segment)
	Ended    bool                  // the playlist is the final one, with #EXT-X-ENDLIST (Playlist)
	Event    *clipgate.UploadEvent // the upload event (Segment, Playlist, Rejected)
	Err      error                 // why (Rejected, Warning, Retry)
}

// Stream uploads an encoder's HLS segments and keeps their playlist in OSS. Create it
// with Kit.NewStream and call Run.
//
// Each segment is checked (an MPEG-TS file with timestamped video; package media reads
// it), encrypted if asked, uploaded with Kit.Upload (its event, verification by the
// consumers and retries are those of any clip; segments carry the metadata "stream" and
// "seq"), and removed from Dir; then the playlist is rewritten with plain PutObject, the
// only object the kit ever replaces. The playlist is announced with a completed event
// when the stream starts (so that a console lists it and can play it live) and when it
// ends (the final, VOD playlist, which replaces the first in the consumers' index); the
// rewrites between them are not announced, since a consumer could find each one already
// replaced by the next.
//
// The stream's state (start, segments stored, the generated key) is kept in StateDir, so
// a Run after a crash or restart continues the same playlist; once the final playlist is
// stored the state is removed and the next Run on Dir starts a new stream.
type Stream struct {
	kit       *Kit
	cfg       StreamConfig
	log       zerolog.Logger
	statePath string
	tmpDir    string
	finish    chan struct{}
	once      sync.Once

	// Owned by Run's goroutine.
	st       streamState
	rejected map[string]stat // segment files rejected, as they were then
	warned   string          // the last warning about the encoder's playlist
}

// streamState is what a Stream keeps in StateDir.
type streamState struct {
	Dir       string          `json:"dir"`
	Name      string          `json:"name"`
	Start     time.Time       `json:"start"`
	Playlist  string          `json:"playlist,omitempty"` // the playlist's key, once known
	Key       string          `json:"key,omitempty"`      // hex of the generated AES key
	KeyURI    string          `json:"keyURI,omitempty"`
	Segments  []streamSegment `json:"segments"`
	Next      uint64          `json:"next"`      // the next media sequence number
	Announced bool            `json:"announced"` // the live playlist was announced
}

// streamSegment is a stored segment.
type streamSegment struct {
	File     string  `json:"file"`
	Key      string  `json:"key"`
	Seq      uint64  `json:"seq"`
	Duration float64 `json:"duration"` // seconds
}

// streamsDir is the StateDir subdirectory of the streams' state.
const streamsDir = "streams"

// NewStream validates cfg and returns a Stream that uploads through k. Errors wrap
// ErrConfig.
func (k *Kit) NewStream(cfg StreamConfig) (*Stream, error) {
	if cfg.Dir == "" {
		return nil, configErr("stream Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, configErr("stream Dir: %v", err)
	}
	cfg.Dir = dir
	if fi, err := os.Stat(dir); err != nil {
		return nil, configErr("stream directory: %v", err)
	} else if !fi.IsDir() {
		return nil, configErr("stream directory %s is not a directory", dir)
	}
	switch {
	case cfg.Window == 0:
		cfg.Window = DefaultStreamWindow
	case cfg.Window < 1:
		return nil, configErr("stream Window %d: want at least 1 segment", cfg.Window)
	}
	switch {
	case cfg.PollInterval == 0:
		cfg.PollInterval = DefaultStreamPollInterval
	case cfg.PollInterval < MinPollInterval:
		return nil, configErr("stream PollInterval %v: want at least %v", cfg.PollInterval, MinPollInterval)
	}
	if cfg.Name != "" {
		if err := ValidClipName(cfg.Name + ".m3u8"); err != nil {
			return nil, configErr("stream Name: %v", err)
		}
	}
	if !cfg.Encrypt && (cfg.Key != nil || cfg.KeyURI != "") {
		return nil, configErr("stream Key and KeyURI need Encrypt")
	}
	if cfg.Key != nil && len(cfg.Key) != 16 {
		return nil, configErr("stream Key: %d bytes, AES-128 needs 16", len(cfg.Key))
	}
	if strings.ContainsAny(cfg.KeyURI, "\"\r\n") {
		return nil, configErr("stream KeyURI may not hold quotes or line breaks")
	}
	cfg.Key = slices.Clone(cfg.Key)
	sum := sha256.Sum256([]byte(dir))
	id := hex.EncodeToString(sum[:8])
	s := &Stream{
		kit:       k,
		cfg:       cfg,
		log:       k.log.With().Str("component", "stream").Str("dir", dir).Logger(),
		statePath: filepath.Join(k.cfg.StateDir, streamsDir, id+".json"),
		tmpDir:    filepath.Join(k.cfg.StateDir, streamsDir, id),
		finish:    make(chan struct{}),
		rejected:  map[string]stat{},
	}
	if err := os.MkdirAll(s.tmpDir, 0o700); err != nil {
		return nil, configErr("StateDir: %v", err)
	}
	return s, nil
}

// Finish ends the stream: Run stores the segments left in Dir (the last one included),
// writes the final playlist and returns. It is needed when the encoder writes no
// playlist of its own (whose #EXT-X-ENDLIST ends the stream otherwise).
func (s *Stream) Finish() { s.once.Do(func() { close(s.finish) }) }

// Run uploads the segments as the encoder completes them and keeps the playlist, until
// the stream ends (the encoder's #EXT-X-ENDLIST, or Finish): then it writes the final
// playlist and returns nil. It returns ctx's error when ctx ends first (the state stays
// for the next Run), ErrClosed when the kit closes, and an error for a state it cannot
// write. Failed uploads are retried with a backoff.
func (s *Stream) Run(ctx context.Context) error {
	if err := s.load(); err != nil {
		return err
	}
	failures := 0
	for {
		done, err := s.pass(ctx)
		switch {
		case err == nil && done:
			return nil
		case err == nil:
			failures = 0
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrClosed), errors.Is(err, errStreamState):
			return err
		default:
			failures++
			var retryAfter time.Duration
			if ae := (*clipgate.AuthError)(nil); errors.As(err, &ae) {
				retryAfter = ae.RetryAfter // over quota: the time to its reset
			}
			wait := streamBackoff.Delay(failures-1, retryAfter)
			s.log.Warn().Err(err).Dur("retry", wait).Msg("stream: storing failed; retrying")
			s.emit(StreamEvent{Kind: StreamRetry, Err: err})
			if err := s.kit.sleep(ctx, wait); err != nil {
				return err
			}
			continue
		}
		t := time.NewTimer(s.cfg.PollInterval)
		select {
		case <-t.C:
		case <-s.finish:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-s.kit.ctx.Done():
			t.Stop()
			return ErrClosed
		}
	}
}

// streamBackoff spaces a Stream's tries after failures: 1 s doubling up to a minute, with
// jitter, or the token worker's retryAfter (up to a day: a quota's reset).
var streamBackoff = backoffPolicy{Base: time.Second, Max: time.Minute, MaxRetryAfter: 24 * time.Hour}

var errStreamState = errors.New("devicekit: stream state")

// pass stores the complete segments in order; done once the stream ended and its final
// playlist is stored.
func (s *Stream) pass(ctx context.Context) (done bool, err error) {
	enc := s.readEncoder()
	files, err := s.segmentFiles()
	if err != nil {
		return false, err
	}
	ending := enc.ended
	select {
	case <-s.finish:
		ending = true
	default:
	}
	for i, f := range files {
		if !ending && !enc.listed(f.name) && i == len(files)-1 {
			break // the encoder may still be writing it
		}
		if err := s.segment(ctx, f, enc.durations[f.name], ending); err != nil {
			return false, err
		}
	}
	if !ending {
		return false, nil
	}
	if err := s.end(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// segmentFile is a candidate segment in Dir.
type segmentFile struct {
	name string
	fi   fs.FileInfo
}

// segmentFiles lists the segment files not yet stored nor rejected (unchanged), in
// natural order.
func (s *Stream) segmentFiles() ([]segmentFile, error) {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("devicekit: stream directory: %w", err)
	}
	stored := map[string]bool{}
	for _, seg := range s.st.Segments {
		stored[seg.File] = true
	}
	var out []segmentFile
	for _, e := range entries {
		name := e.Name()
		if tempName(name) || !strings.EqualFold(filepath.Ext(name), ".ts") || stored[name] || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		if r, ok := s.rejected[name]; ok && r.size == fi.Size() && r.mtime.Equal(fi.ModTime()) {
			continue
		}
		out = append(out, segmentFile{name, fi})
	}
	slices.SortFunc(out, func(a, b segmentFile) int { return naturalCompare(a.name, b.name) })
	return out, nil
}

// naturalCompare orders names with their runs of digits compared as numbers.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := len(na) - len(nb); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digitRun(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// encoderList is what the encoder's own playlist says.
type encoderList struct {
	durations map[string]float64 // segment file name -> #EXTINF seconds
	ended     bool               // #EXT-X-ENDLIST
}

func (e encoderList) listed(name string) bool { _, ok := e.durations[name]; return ok }

// readEncoder reads the encoder's playlist in Dir, if there is one. One that cannot be
// read is reported (StreamWarning, once per content) and counts as absent.
func (s *Stream) readEncoder() encoderList {
	out := encoderList{durations: map[string]float64{}}
	matches, _ := filepath.Glob(filepath.Join(s.cfg.Dir, "*.m3u8"))
	var lists []string
	for _, m := range matches {
		if !tempName(filepath.Base(m)) {
			lists = append(lists, m)
		}
	}
	if len(lists) == 0 {
		return out
	}
	warn := func(p string, err error) encoderList {
		if msg := p + err.Error(); msg != s.warned {
			s.warned = msg
			s.log.Warn().Err(err).Str("playlist", p).Msg("stream: the encoder's playlist is unreadable; reading durations from the segments")
			s.emit(StreamEvent{Kind: StreamWarning, Path: p, Err: err})
		}
		return encoderList{durations: map[string]float64{}}
	}
	if len(lists) > 1 {
		return warn(s.cfg.Dir, fmt.Errorf("devicekit: %d playlists in the stream directory, want at most one", len(lists)))
	}
	p, err := parseMediaPlaylist(lists[0])
	if err != nil {
		return warn(lists[0], err)
	}
	for _, seg := range p.Segments {
		if seg != nil {
			out.durations[path.Base(seg.URI)] = seg.Duration
		}
	}
	out.ended = p.Closed
	s.warned = ""
	return out
}

// maxPlaylistSize bounds a playlist the kit reads.
const maxPlaylistSize = 4 << 20

// parseMediaPlaylist reads an HLS media playlist file (github.com/grafov/m3u8), with a
// clear error for a file that is not one: too large, not starting with #EXTM3U, a master
// playlist, or a segment without a positive #EXTINF duration.
func parseMediaPlaylist(file string) (*m3u8.MediaPlaylist, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("devicekit: playlist: %w", err)
	}
	return decodeMediaPlaylist(b)
}

// decodeMediaPlaylist is parseMediaPlaylist for the playlist's bytes.
func decodeMediaPlaylist(b []byte) (*m3u8.MediaPlaylist, error) {
	if len(b) > maxPlaylistSize {
		return nil, fmt.Errorf("devicekit: playlist of %d bytes, at most %d read", len(b), maxPlaylistSize)
	}
	if !bytes.HasPrefix(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), []byte("#EXTM3U")) {
		return nil, errors.New("devicekit: not an m3u8 playlist (no #EXTM3U first line)")
	}
	pl, kind, err := m3u8.Decode(*bytes.NewBuffer(b), false)
	if err != nil {
		return nil, fmt.Errorf("devicekit: malformed m3u8 playlist: %w", err)
	}
	if kind != m3u8.MEDIA {
		return nil, errors.New("devicekit: a master playlist, want a media playlist")
	}
	p := pl.(*m3u8.MediaPlaylist)
	for _, seg := range p.Segments {
		if seg == nil {
			continue
		}
		if seg.URI == "" || !(seg.Duration > 0) || math.IsInf(seg.Duration, 0) {
			return nil, fmt.Errorf("devicekit: malformed m3u8 playlist: segment %q without a positive duration", seg.URI)
		}
	}
	return p, nil
}

// load reads the stream's state from StateDir, or starts a new one.
func (s *Stream) load() error {
	b, err := os.ReadFile(s.statePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.st = streamState{Dir: s.cfg.Dir}
		return nil
	case err != nil:
		return fmt.Errorf("%w: %v", errStreamState, err)
	}
	var st streamState
	if err := json.Unmarshal(b, &st); err != nil || st.Dir != s.cfg.Dir {
		s.log.Warn().Err(err).Msg("stream: unreadable state replaced; a new stream starts")
		st = streamState{Dir: s.cfg.Dir}
	}
	s.st = st
	return nil
}

func (s *Stream) save() error {
	b, _ := json.Marshal(&s.st)
	if err := writeFileAtomic(s.statePath, b); err != nil {
		return fmt.Errorf("%w: %v", errStreamState, err)
	}
	return nil
}

// begin fixes the stream's name, start, playlist key and AES key at its first segment.
func (s *Stream) begin(ctx context.Context, start time.Time) error {
	if s.st.Playlist != "" {
		return nil
	}
	creds, err := s.kit.Credentials(ctx)
	if err != nil {
		return err
	}
	st := &s.st
	st.Start = start.UTC()
	st.Name = s.cfg.Name
	if st.Name == "" {
		st.Name = SanitizeClipName(filepath.Base(s.cfg.Dir)) + "-" + st.Start.Format("150405")
	}
	st.Playlist = objectKey(s.kit.devicePrefix(creds.OSS), st.Start, st.Name+".m3u8")
	if len(st.Playlist) > protocol.MaxObjectKeyLen {
		return fmt.Errorf("%w: playlist key %q is longer than %d bytes", ErrInvalidClip, st.Playlist, protocol.MaxObjectKeyLen)
	}
	if s.cfg.Encrypt {
		key := s.cfg.Key
		if key == nil {
			key = make([]byte, 16)
			rand.Read(key)
		}
		st.Key = hex.EncodeToString(key)
		st.KeyURI = s.cfg.KeyURI
	}
	return s.save()
}

// aesKey is the stream's AES-128 key, nil without encryption.
func (s *Stream) aesKey() []byte {
	if s.st.Key == "" {
		return nil
	}
	k, _ := hex.DecodeString(s.st.Key)
	return k
}

// segment stores one segment file and rewrites the live playlist (unless the stream is
// ending: the final playlist follows).
func (s *Stream) segment(ctx context.Context, f segmentFile, encDur float64, ending bool) error {
	p := filepath.Join(s.cfg.Dir, f.name)
	info, err := probeSegment(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // gone meanwhile
	}
	if err != nil {
		s.reject(f, err)
		return nil
	}
	dur := encDur
	if dur <= 0 {
		dur = info.Duration.Seconds()
	}
	if err := s.begin(ctx, f.fi.ModTime().Add(-time.Duration(dur*float64(time.Second)))); err != nil {
		return err
	}
	if err := s.storeKey(ctx); err != nil {
		return err
	}
	seq := s.st.Next
	upload := p
	if key := s.aesKey(); key != nil {
		if upload, err = s.encrypt(p, key, seq); err != nil {
			return err
		}
	}
	clip := Clip{
		Path:        upload,
		Name:        s.segmentName(f.name),
		ContentType: SegmentContentType,
		RecordedAt:  f.fi.ModTime().Add(-time.Duration(dur * float64(time.Second))),
		Metadata:    map[string]string{"stream": s.st.Name, "seq": strconv.FormatUint(seq, 10)},
	}
	ev, err := s.kit.Upload(ctx, clip)
	if err != nil {
		if errors.Is(err, ErrInvalidClip) {
			s.reject(f, err)
			return nil
		}
		return err
	}
	s.st.Segments = append(s.st.Segments, streamSegment{File: f.name, Key: ev.Key, Seq: seq, Duration: dur})
	s.st.Next = seq + 1
	if err := s.save(); err != nil {
		return err
	}
	if upload != p {
		os.Remove(upload)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn().Err(err).Str("file", f.name).Msg("stream: the stored segment could not be removed")
	}
	s.log.Debug().Str("key", ev.Key).Uint64("seq", seq).Float64("duration", dur).Msg("stream: segment stored")
	s.emit(StreamEvent{Kind: StreamSegment, Path: p, Key: ev.Key, Seq: seq, Duration: time.Duration(dur * float64(time.Second)), Event: ev})
	if ending {
		return nil
	}
	return s.writePlaylist(ctx, false)
}

// segmentName is the clip name of a segment file: {Name}-{file name}.
func (s *Stream) segmentName(file string) string {
	return cutUTF8(s.st.Name+"-"+SanitizeClipName(file), MaxClipNameLen)
}

// probeSegment checks that a file is an MPEG-TS segment with timestamped video.
func probeSegment(p string) (media.Info, error) {
	f, err := os.Open(p)
	if err != nil {
		return media.Info{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return media.Info{}, err
	}
	if err := emptyClip(fi.Size()); err != nil {
		return media.Info{}, err
	}
	info, err := media.Probe(f, fi.Size())
	switch {
	case err != nil:
		return info, fmt.Errorf("not an MPEG-TS segment: %w", err)
	case info.Container != media.MPEGTS:
		return info, fmt.Errorf("not an MPEG-TS segment: an %s file", info.Container)
	case info.Duration <= 0:
		return info, errors.New("not an MPEG-TS segment: no duration in its timestamps")
	}
	return info, nil
}

// reject sets a segment file aside (until it changes) and announces it.
func (s *Stream) reject(f segmentFile, why error) {
	s.rejected[f.name] = stat{f.fi.Size(), f.fi.ModTime()}
	p := filepath.Join(s.cfg.Dir, f.name)
	ev := &clipgate.UploadEvent{
		V:           protocol.Version,
		ID:          s.rejectID(f),
		Device:      s.kit.cfg.DeviceID,
		Status:      clipgate.StatusFailed,
		Size:        f.fi.Size(),
		ContentType: SegmentContentType,
		RecordedAt:  f.fi.ModTime().UTC(),
		UploadedAt:  s.kit.now().UTC(),
		Attempts:    1,
		Metadata:    map[string]string{"stream": s.st.Name, "file": truncate(f.name, protocol.MaxMetadataLen)},
		Error:       truncate("rejected: "+why.Error(), protocol.MaxMessageLen),
	}
	if err := s.kit.announce(ev); err != nil {
		s.log.Warn().Err(err).Str("event", ev.ID).Msg("stream: the rejection is queued in the outbox")
	}
	s.log.Warn().Err(why).Str("file", f.name).Msg("stream: segment rejected")
	s.emit(StreamEvent{Kind: StreamRejected, Path: p, Event: ev, Err: why})
}

// rejectID is the event ID of a rejected segment file: the same for the same file.
func (s *Stream) rejectID(f segmentFile) string {
	m := hmac.New(sha256.New, s.kit.eventKey)
	fmt.Fprintf(m, "clipgate rejected segment\n%s\n%s\n%d\n%d", s.cfg.Dir, f.name, f.fi.Size(), f.fi.ModTime().UnixNano())
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// encrypt writes the AES-128 encryption of a segment into StateDir (RFC 8216 5.2: CBC,
// PKCS#7 padding, the IV the media sequence number as a 128-bit big-endian integer) and
// returns its path. A file left by an interrupted attempt is used again, so that a retry
// uploads the same bytes under the same event ID.
func (s *Stream) encrypt(p string, key []byte, seq uint64) (string, error) {
	out := filepath.Join(s.tmpDir, strconv.FormatUint(seq, 10)+".ts")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	plain, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	sealed, err := EncryptSegment(plain, key, SegmentIV(seq))
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(out, sealed); err != nil {
		return "", fmt.Errorf("%w: %v", errStreamState, err)
	}
	return out, nil
}

// SegmentIV is the IV of the segment with media sequence number seq when the playlist's
// EXT-X-KEY gives none (RFC 8216 5.2): seq as a 128-bit big-endian integer.
func SegmentIV(seq uint64) []byte {
	iv := make([]byte, aes.BlockSize)
	binary.BigEndian.PutUint64(iv[8:], seq)
	return iv
}

// EncryptSegment encrypts a segment as HLS's METHOD=AES-128 does: AES-128-CBC with PKCS#7
// padding.
func EncryptSegment(plain, key, iv []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("devicekit: segment key: %w", err)
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	out := make([]byte, len(plain)+pad)
	copy(out, plain)
	for i := len(plain); i < len(out); i++ {
		out[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, out)
	return out, nil
}

// DecryptSegment reverses EncryptSegment, checking the padding.
func DecryptSegment(sealed, key, iv []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("devicekit: segment key: %w", err)
	}
	if len(sealed) == 0 || len(sealed)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("devicekit: encrypted segment of %d bytes, not a whole number of AES blocks", len(sealed))
	}
	out := make([]byte, len(sealed))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, sealed)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize || !bytes.Equal(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, errors.New("devicekit: encrypted segment: bad PKCS#7 padding (wrong key or IV?)")
	}
	return out[:len(out)-pad], nil
}

// storeKey uploads the generated key beside the playlist, once, when the playlist names
// it relatively (no KeyURI).
func (s *Stream) storeKey(ctx context.Context) error {
	if s.st.Key == "" || s.st.KeyURI != "" {
		return nil
	}
	p := filepath.Join(s.tmpDir, "stream.key")
	if err := writeFileAtomic(p, s.aesKey()); err != nil {
		return fmt.Errorf("%w: %v", errStreamState, err)
	}
	ev, err := s.kit.Upload(ctx, Clip{Path: p, Name: s.st.Name + ".key", ContentType: DefaultContentType,
		RecordedAt: s.st.Start, Metadata: map[string]string{"stream": s.st.Name}})
	if err != nil {
		return err
	}
	s.st.KeyURI = relativeURI(s.st.Playlist, ev.Key)
	return s.save()
}

// relativeURI is the URI of key relative to the directory of from (both keys under the
// same device prefix): "b.ts", or "../03/b.ts" across a day.
func relativeURI(from, key string) string {
	a, b := strings.Split(path.Dir(from), "/"), strings.Split(key, "/")
	n := 0
	for n < len(a) && n < len(b)-1 && a[n] == b[n] {
		n++
	}
	return strings.Repeat("../", len(a)-n) + strings.Join(b[n:], "/")
}

// playlist returns the stream's playlist as it stands: the last Window segments and the
// media sequence number of the first while live, every segment and #EXT-X-ENDLIST once
// ended.
func (s *Stream) playlist(ended bool) []byte {
	segs := s.st.Segments
	if !ended && len(segs) > s.cfg.Window {
		segs = segs[len(segs)-s.cfg.Window:]
	}
	p, _ := m3u8.NewMediaPlaylist(0, uint(max(len(segs), 1)))
	if len(segs) > 0 {
		p.SeqNo = segs[0].Seq
	}
	var target float64
	for _, seg := range s.st.Segments { // over all, so that it never shrinks (RFC 8216 6.2.1)
		target = max(target, math.Ceil(seg.Duration))
	}
	for _, seg := range segs {
		_ = p.Append(relativeURI(s.st.Playlist, seg.Key), seg.Duration, "")
	}
	p.TargetDuration = target
	if s.st.Key != "" {
		_ = p.SetDefaultKey("AES-128", s.st.KeyURI, "", "", "")
	}
	if ended {
		p.MediaType = m3u8.VOD
		p.Close()
	}
	return bytes.Clone(p.Encode().Bytes())
}

// writePlaylist stores the playlist (live, or the final one), and announces it when it
// is the first or the final.
func (s *Stream) writePlaylist(ctx context.Context, ended bool) error {
	body := s.playlist(ended)
	announce := ended || !s.st.Announced
	ev, err := s.kit.putPlaylist(ctx, s.st.Playlist, body, s.st.Start, map[string]string{"stream": s.st.Name})
	if err != nil {
		return err
	}
	if announce {
		if err := s.kit.announceUpload(ev); err != nil {
			if errors.Is(err, errOutbox) {
				return err
			}
			s.log.Warn().Err(err).Str("event", ev.ID).Msg("stream: the playlist's event is queued in the outbox")
		}
		if !ended {
			s.st.Announced = true
			if err := s.save(); err != nil {
				return err
			}
		}
	}
	s.emit(StreamEvent{Kind: StreamPlaylist, Key: s.st.Playlist, Ended: ended, Event: ev})
	return nil
}

// end writes the final playlist and forgets the stream. A stream that stored no segment
// ends without a playlist.
func (s *Stream) end(ctx context.Context) error {
	if len(s.st.Segments) > 0 {
		if err := s.writePlaylist(ctx, true); err != nil {
			return err
		}
	}
	if err := os.Remove(s.statePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %v", errStreamState, err)
	}
	os.RemoveAll(s.tmpDir)
	s.st = streamState{Dir: s.cfg.Dir}
	return nil
}

func (s *Stream) emit(e StreamEvent) {
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(e)
	}
}

// putPlaylist stores a playlist, replacing the one before (the only object the kit
// replaces), and checks the CRC-64 OSS reports. It returns the completed upload event of
// this version, not yet announced; its ID is derived from the key and the content.
func (k *Kit) putPlaylist(ctx context.Context, key string, body []byte, recorded time.Time, meta map[string]string) (*clipgate.UploadEvent, error) {
	crc := crc64.Checksum(body, crcTable)
	var retry ossRetry
	attempts := 0
	for {
		attempts++
		creds, err := k.Credentials(ctx)
		if err != nil {
			return nil, err
		}
		bucket, err := k.bucketFor(ctx, creds.OSS)
		if err != nil {
			return nil, err
		}
		resp, err := bucket.DoPutObject(&oss.PutObjectRequest{ObjectKey: key, Reader: bytes.NewReader(body)},
			[]oss.Option{oss.ContentType(PlaylistContentType), oss.CacheControl("no-cache"), oss.WithContext(ctx), k.dateHeader()})
		if err == nil {
			resp.Body.Close()
			if err = checkCRC(resp.Headers, crc); err == nil {
				m := hmac.New(sha256.New, k.eventKey)
				fmt.Fprintf(m, "clipgate playlist\n%s\n%s\n%d\n%d", k.cfg.DeviceID, key, len(body), crc)
				return &clipgate.UploadEvent{
					V:           protocol.Version,
					ID:          base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16]),
					Device:      k.cfg.DeviceID,
					Status:      clipgate.StatusCompleted,
					Bucket:      creds.OSS.Bucket,
					Key:         key,
					Size:        int64(len(body)),
					CRC64:       strconv.FormatUint(crc, 10),
					ContentType: PlaylistContentType,
					RecordedAt:  recorded.UTC(),
					UploadedAt:  k.now().UTC(),
					Attempts:    attempts,
					Metadata:    meta,
				}, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		renew, wait, ok := retry.next(err)
		switch {
		case !ok:
			return nil, fmt.Errorf("devicekit: storing the playlist %s: %w", key, err)
		case renew:
			k.invalidate(creds)
		default:
			if err := k.sleep(ctx, wait); err != nil {
				return nil, err
			}
		}
	}
}
