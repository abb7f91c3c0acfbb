package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/media"
)

// PosterSuffix names a clip's poster: the device uploads a JPEG of the clip's first
// keyframe as {key}.poster.jpg, beside the clip, under its own prefix (the same as
// devicekit.PosterSuffix, which the console does not import).
const PosterSuffix = ".poster.jpg"

// IsPosterKey reports whether key names a poster rather than a clip.
func IsPosterKey(key string) bool { return strings.HasSuffix(key, PosterSuffix) }

// Probe limits: what reading one clip's container may cost.
const (
	// probeBlock is the size of one ranged GET (and of the reader's cache blocks).
	probeBlock = 64 << 10
	// probeMaxBytes and probeMaxRequests bound one clip's reading; past them the clip is
	// indexed without its media facts.
	probeMaxBytes    = 8 << 20
	probeMaxRequests = 256
)

// errProbeBudget stops a probe that would read more than its budget.
var errProbeBudget = errors.New("the clip needs more reading than the console allows for one clip")

// ossRangeReader is an io.ReaderAt over one object, by ranged GETs of probeBlock bytes
// (cached), within a budget of bytes and requests.
type ossRangeReader struct {
	ctx    context.Context
	bucket *oss.Bucket
	key    string
	size   int64

	mu       sync.Mutex
	blocks   map[int64][]byte
	requests int
	bytes    int64
}

func newRangeReader(ctx context.Context, bucket *oss.Bucket, key string, size int64) *ossRangeReader {
	return &ossRangeReader{ctx: ctx, bucket: bucket, key: key, size: size, blocks: map[int64][]byte{}}
}

// ReadAt implements io.ReaderAt.
func (r *ossRangeReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.size {
			return n, io.EOF
		}
		b, err := r.block(pos / probeBlock)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], b[pos%probeBlock:])
	}
	return n, nil
}

func (r *ossRangeReader) block(i int64) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.blocks[i]; ok {
		return b, nil
	}
	start := i * probeBlock
	end := min(start+probeBlock, r.size) - 1
	if r.requests >= probeMaxRequests || r.bytes+end-start+1 > probeMaxBytes {
		return nil, errProbeBudget
	}
	r.requests++
	body, err := r.bucket.GetObject(r.key, oss.Range(start, end), oss.WithContext(r.ctx))
	if err != nil {
		return nil, &ossReadError{err}
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, end-start+2))
	if err != nil {
		return nil, &ossReadError{err}
	}
	if int64(len(b)) != end-start+1 {
		// The object changed (or the server ignored the range): not the clip announced.
		return nil, &ossReadError{fmt.Errorf("a ranged GET of bytes %d-%d returned %d bytes", start, end, len(b))}
	}
	r.bytes += int64(len(b))
	r.blocks[i] = b
	return b, nil
}

// ossReadError is a failed GET while probing: the probe is tried again (the event is
// left for redelivery), unlike a clip that is not a video.
type ossReadError struct{ err error }

func (e *ossReadError) Error() string { return "reading the clip from OSS: " + e.err.Error() }
func (e *ossReadError) Unwrap() error { return e.err }

// inspect reads what the console indexes about a clip besides its event: the container's
// facts (ranged GETs, a few blocks) and whether the device uploaded a poster (a HEAD).
// A clip that is not a video, or not a readable one, gets Media.Error; an OSS failure
// is an error, so that the event is handled again later.
func (c *Console) inspect(ctx context.Context, ev *events.Event) (*Media, error) {
	if !ev.Verified || !storable(ev) || ev.Size <= 0 {
		return nil, nil
	}
	if IsPlaylist(&Clip{Key: ev.Key, ContentType: ev.ContentType}) {
		return c.inspectPlaylist(ctx, ev.Key)
	}
	m := &Media{}
	r := newRangeReader(ctx, c.cfg.Bucket, ev.Key, ev.Size)
	info, err := media.Probe(r, ev.Size)
	var readErr *ossReadError
	switch {
	case err == nil:
		m.Info = info
	case errors.As(err, &readErr) && !isNotFound(readErr.err):
		return nil, fmt.Errorf("%w: %v", ErrOSS, err)
	case errors.Is(err, errProbeBudget):
		m.Error = errProbeBudget.Error()
	case errors.Is(err, media.ErrUnknownFormat):
		m.Error = "not an MP4, MOV or MPEG-TS clip"
	default:
		m.Error = err.Error()
	}
	exists, err := c.cfg.Bucket.IsObjectExist(ev.Key+PosterSuffix, oss.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("%w: looking for the poster of %s: %v", ErrOSS, ev.Key, err)
	}
	m.Poster = exists
	c.log.Debug().Str("key", ev.Key).Str("container", m.Container).Dur("duration", m.Duration).Int("width", m.Width).
		Int("height", m.Height).Bool("poster", m.Poster).Int("requests", r.requests).Int64("bytes", r.bytes).
		Str("error", m.Error).Msg("clip inspected")
	return m, nil
}

// isNotFound reports whether err is OSS answering 404 (the clip went away meanwhile).
func isNotFound(err error) bool {
	var se oss.ServiceError
	return errors.As(err, &se) && se.StatusCode == http.StatusNotFound
}

// knownOrPoster is the reconciler's lookup: posters are not clips, and indexed clips are
// known.
func (c *Console) knownOrPoster(ctx context.Context, key string) (bool, error) {
	if IsPosterKey(key) {
		return true, nil
	}
	return c.store.KnownClip(ctx, key)
}
