package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/grafov/m3u8"

	"github.com/clipgate/clipgate/events"
)

// HLS streams (devicekit.Stream): a device stores MPEG-TS segments and an m3u8 playlist
// beside them, rewritten while the stream is live and closed with #EXT-X-ENDLIST once it
// ends. The playlist is indexed like any clip; its player page plays it with hls.js
// (web/static/vendor/hls.js, refreshed by scripts/refresh-hlsjs.sh) or the browser's own
// HLS.
//
// The console serves the playlist and the segments itself, unlike a clip's bytes, which
// come straight from OSS through a presigned URL: hls.js loads them with fetch/XHR, which
// a presigned OSS URL would answer only with a CORS rule for the console's origin on the
// bucket, and a finished stream may be watched for longer than a presigned URL lives.
// The playlist is read from OSS at every request (a live one changes), and its URIs are
// rewritten to the console's own /hls/object URLs; those serve only segments (.ts) and
// keys (.key) under the prefix, to logged-in operators, as any clip is.

// PlaylistContentType is the Content-Type of an HLS playlist.
const PlaylistContentType = "application/vnd.apple.mpegurl"

// maxPlaylistBytes bounds a playlist the console reads.
const maxPlaylistBytes = 4 << 20

// IsPlaylist reports whether a clip is an HLS playlist (by its type, or its name).
func IsPlaylist(c *Clip) bool {
	ct := strings.ToLower(c.ContentType)
	return ct == PlaylistContentType || ct == "application/x-mpegurl" || strings.HasSuffix(strings.ToLower(c.Key), ".m3u8")
}

// errBadPlaylist is wrapped by the errors of a playlist that cannot be played as it is.
var errBadPlaylist = errors.New("bad playlist")

// parsePlaylist reads an HLS media playlist (github.com/grafov/m3u8).
func parsePlaylist(b []byte) (*m3u8.MediaPlaylist, error) {
	if !bytes.HasPrefix(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), []byte("#EXTM3U")) {
		return nil, fmt.Errorf("%w: not an m3u8 playlist (no #EXTM3U first line)", errBadPlaylist)
	}
	pl, kind, err := m3u8.Decode(*bytes.NewBuffer(b), false)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed m3u8: %v", errBadPlaylist, err)
	}
	if kind != m3u8.MEDIA {
		return nil, fmt.Errorf("%w: a master playlist, not a stream's media playlist", errBadPlaylist)
	}
	return pl.(*m3u8.MediaPlaylist), nil
}

// playlistDuration is the sum of a playlist's #EXTINF durations.
func playlistDuration(p *m3u8.MediaPlaylist) time.Duration {
	var sum float64
	for _, s := range p.Segments {
		if s != nil && s.Duration > 0 && !math.IsInf(s.Duration, 0) {
			sum += s.Duration
		}
	}
	return time.Duration(sum * float64(time.Second))
}

// readPlaylist reads a playlist object from OSS, within maxPlaylistBytes.
func (c *Console) readPlaylist(ctx context.Context, key string) ([]byte, error) {
	body, err := c.cfg.Bucket.GetObject(key, oss.WithContext(ctx))
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%w: no object %s", ErrNotFound, key)
		}
		return nil, &ossReadError{err}
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, maxPlaylistBytes+1))
	if err != nil {
		return nil, &ossReadError{err}
	}
	if len(b) > maxPlaylistBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", errBadPlaylist, maxPlaylistBytes)
	}
	return b, nil
}

// inspectPlaylist is inspect for a playlist: its length once the stream has ended (the
// sum of its segments' durations), "HLS" as its container.
func (c *Console) inspectPlaylist(ctx context.Context, key string) (*Media, error) {
	m := &Media{}
	m.Container = "HLS"
	b, err := c.readPlaylist(ctx, key)
	var readErr *ossReadError
	switch {
	case errors.As(err, &readErr) && !isNotFound(readErr.err):
		return nil, fmt.Errorf("%w: %v", ErrOSS, err)
	case err != nil:
		m.Error = err.Error()
		return m, nil
	}
	p, err := parsePlaylist(b)
	if err != nil {
		m.Error = err.Error()
		return m, nil
	}
	if p.Closed {
		m.Duration = playlistDuration(p)
	}
	return m, nil
}

// replacedPlaylist handles the event of a live playlist that its object no longer
// matches. A stream's playlist is the one object a device replaces (devicekit.Stream
// rewrites it as segments arrive), so an event that names an older version of it (the
// object's size or CRC-64 differs) is no bad upload: it is indexed with the object's
// current size and CRC-64, verified, rather than listed as a problem. The verifier has
// checked the publisher, bucket and prefix already; a playlist written while its device
// was revoked stays rejected.
func (c *Console) replacedPlaylist(ctx context.Context, ev *events.Event) error {
	if ev.Verified || (ev.Reason != events.ReasonSizeMismatch && ev.Reason != events.ReasonCRCMismatch) ||
		!IsPlaylist(&Clip{Key: ev.Key, ContentType: ev.ContentType}) {
		return nil
	}
	h, err := c.cfg.Bucket.GetObjectDetailedMeta(ev.Key, oss.WithContext(ctx))
	switch {
	case isNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("%w: HEAD of the playlist %s: %v", ErrOSS, ev.Key, err)
	}
	size, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	crc := h.Get(oss.HTTPHeaderOssCRC64)
	if err != nil || size <= 0 || crc == "" {
		return nil
	}
	if at, revoked := c.revoked.RevokedAt(ev.Device); revoked {
		if modified, _ := http.ParseTime(h.Get("Last-Modified")); !modified.Before(at.Truncate(time.Second)) {
			ev.Reason, ev.Detail = events.ReasonRevoked, "the playlist was replaced after its device was revoked"
			return nil
		}
	}
	c.log.Debug().Str("key", ev.Key).Str("event", ev.ID).Str("reason", string(ev.Reason)).Msg("a live playlist replaced since its event: indexed as it is now")
	ev.Size, ev.CRC64, ev.ETag = size, crc, strings.Trim(h.Get("ETag"), `"`)
	ev.Verified, ev.Reason, ev.Detail = true, "", ""
	return nil
}

// hlsPlaylist serves an indexed playlist as OSS holds it now, its segment and key URIs
// rewritten to /hls/object URLs. URIs that leave the device's prefix are refused.
func (c *Console) hlsPlaylist(w http.ResponseWriter, r *http.Request) {
	clip, err := c.clipOf(r)
	if err == nil && !IsPlaylist(clip) {
		err = invalidf("%s is not an HLS playlist", clip.Key)
	}
	var b []byte
	if err == nil {
		b, err = c.readPlaylist(r.Context(), clip.Key)
	}
	var out []byte
	if err == nil {
		out, err = c.rewritePlaylist(clip, b)
	}
	if err != nil {
		var readErr *ossReadError
		status, msg := 0, ""
		switch {
		case errors.Is(err, errBadPlaylist):
			status, msg = http.StatusBadGateway, "the stream's playlist cannot be played: "+err.Error()
		case errors.As(err, &readErr):
			status, msg = http.StatusBadGateway, err.Error()
		default:
			status, _, msg = c.statusOf(err)
		}
		http.Error(w, msg, status)
		return
	}
	w.Header().Set("Content-Type", PlaylistContentType)
	_, _ = w.Write(out)
}

// rewritePlaylist points the playlist's URIs at the console.
func (c *Console) rewritePlaylist(clip *Clip, b []byte) ([]byte, error) {
	p, err := parsePlaylist(b)
	if err != nil {
		return nil, err
	}
	own := c.cfg.Prefix + clip.Device + "/"
	local := func(uri string) (string, error) {
		u, err := url.Parse(uri)
		if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(uri, "/") || u.RawQuery != "" {
			return "", fmt.Errorf("%w: URI %q is not relative to the playlist", errBadPlaylist, uri)
		}
		key := path.Join(path.Dir(clip.Key), u.Path)
		if !strings.HasPrefix(key, own) {
			return "", fmt.Errorf("%w: URI %q leaves the device's prefix %s", errBadPlaylist, uri, own)
		}
		return "/hls/object?key=" + url.QueryEscape(key), nil
	}
	for _, s := range p.Segments {
		if s == nil {
			continue
		}
		if s.URI, err = local(s.URI); err != nil {
			return nil, err
		}
		if s.Key != nil && s.Key.URI != "" {
			if s.Key.URI, err = local(s.Key.URI); err != nil {
				return nil, err
			}
		}
	}
	if p.Key != nil && p.Key.URI != "" {
		if p.Key.URI, err = local(p.Key.URI); err != nil {
			return nil, err
		}
	}
	p.ResetCache()
	return p.Encode().Bytes(), nil
}

// hlsObject serves a stream's segment (.ts) or key (.key) from OSS to a logged-in
// operator.
func (c *Console) hlsObject(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	err := c.checkKey(key)
	ct := ""
	switch ext := strings.ToLower(path.Ext(key)); {
	case err != nil:
	case ext == ".ts":
		ct = "video/mp2t"
	case ext == ".key":
		ct = "application/octet-stream"
	default:
		err = invalidf("%s is neither a stream's segment (.ts) nor its key (.key)", key)
	}
	if err != nil {
		status, _, msg := c.statusOf(err)
		http.Error(w, msg, status)
		return
	}
	res, err := c.cfg.Bucket.DoGetObject(&oss.GetObjectRequest{ObjectKey: key}, []oss.Option{oss.WithContext(r.Context())})
	if err != nil {
		if isNotFound(err) {
			http.Error(w, "no object "+key, http.StatusNotFound)
			return
		}
		http.Error(w, "reading from OSS: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Response.Close()
	w.Header().Set("Content-Type", ct)
	if n := res.Response.Headers.Get("Content-Length"); n != "" {
		if _, err := strconv.ParseInt(n, 10, 64); err == nil {
			w.Header().Set("Content-Length", n)
		}
	}
	if _, err := io.Copy(w, res.Response); err != nil {
		c.log.Debug().Err(err).Str("key", key).Msg("serving a stream object cut short")
	}
}
