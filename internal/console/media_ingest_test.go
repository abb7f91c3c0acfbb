package console

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/media"
	"github.com/clipgate/clipgate/internal/media/mediatest"
	"github.com/clipgate/clipgate/internal/protocol"
)

// uploadFile uploads a file as a clip of device id, with an optional poster.
func (e *env) uploadFile(id, path, poster string, recorded time.Time) *protocol.UploadEvent {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ev, err := e.kit(id).Upload(ctx, devicekit.Clip{Path: path, Poster: poster, RecordedAt: recorded})
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

// TestIngestMedia: at ingest the console reads each clip's length, picture size and
// codec from its container, with a few ranged GETs rather than the whole clip, and finds
// its poster; the API and the player hand out the poster; deleting the clip deletes the
// poster; the reconciler does not take the poster for a clip.
func TestIngestMedia(t *testing.T) {
	t.Parallel()
	if PosterSuffix != devicekit.PosterSuffix {
		t.Fatalf("the console looks for %q, the device kit uploads %q", PosterSuffix, devicekit.PosterSuffix)
	}
	tap := &logTap{}
	e := newEnv(t, envOptions{stack: inproc.Options{Logger: zerolog.New(tap).Level(zerolog.InfoLevel)}})
	dir := t.TempDir()
	big := mediatest.Make(t, dir, mediatest.Clip{Name: "big.mp4", Width: 640, Height: 360, Seconds: 10, Bitrate: "3M"})
	poster := mediatest.Poster(t, big, 320)
	ts := mediatest.Make(t, dir, mediatest.Clip{Name: "cam.ts", Width: 320, Height: 180, Seconds: 3, Audio: true})
	frag := mediatest.Make(t, dir, mediatest.Clip{Name: "frag.mov", Width: 352, Height: 288, Seconds: 4, Layout: "fragmented", Codec: "h265"})
	junk := filepath.Join(dir, "notes.mp4")
	if err := os.WriteFile(junk, clipData(5000, 3), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		path, poster string
		codec        string
		container    string
	}{
		{big, poster, media.H264, media.MP4},
		{ts, "", media.H264, media.MPEGTS},
		{frag, "", media.H265, media.MOV},
	} {
		ev := e.uploadFile("cam-media", tc.path, tc.poster, now)
		c := e.waitIndexed(ev.Key)
		want := mediatest.FFprobe(t, tc.path)
		if c.Container != tc.container || c.Codec != tc.codec || c.Width != want.Width || c.Height != want.Height ||
			math.Abs(float64(c.DurationMS)-want.Duration*1000) > 40 || c.MediaError != "" || c.Poster != (tc.poster != "") {
			t.Errorf("%s: %+v; ffprobe %+v", filepath.Base(tc.path), c, want)
		}
		// Only ranged GETs, and far less than the clip.
		var served int64
		gets := tap.gets(ev.Key)
		for _, g := range gets {
			if g.Status != http.StatusPartialContent {
				t.Errorf("%s: a GET answered %d, not a range", ev.Key, g.Status)
			}
			served += g.BytesOut
		}
		if len(gets) == 0 || (ev.Size > 1<<20 && served > ev.Size/8) {
			t.Errorf("%s: %d GETs read %d of %d bytes", filepath.Base(tc.path), len(gets), served, ev.Size)
		}
		t.Logf("%s: %d ranged GETs, %d of %d bytes: %dx%d %s %s %d ms", filepath.Base(tc.path), len(gets), served, ev.Size,
			c.Width, c.Height, c.Codec, c.Container, c.DurationMS)
	}
	bigKey := e.stack.Prefix() + "cam-media/" + now.UTC().Format("2006/01/02") + "/big.mp4"
	// Not a video: indexed with the reason, no length.
	jev := e.uploadFile("cam-media", junk, "", now)
	if c := e.waitIndexed(jev.Key); c.MediaError == "" || c.DurationMS != 0 || c.Width != 0 || !c.Verified {
		t.Errorf("junk clip: %+v", c)
	}

	// The API hands out the poster's URL; OSS serves the poster.
	a := e.api()
	a.login()
	var cw clipWithURL
	a.json(http.MethodGet, "/api/clip?key="+url.QueryEscape(bigKey), nil, http.StatusOK, &cw)
	want, err := os.ReadFile(poster)
	if err != nil {
		t.Fatal(err)
	}
	if cw.PosterURL == "" || !bytes.Equal(fetch(t, cw.PosterURL, ""), want) {
		t.Fatalf("poster URL %q", cw.PosterURL)
	}
	_, page := a.do(http.MethodGet, "/play?key="+url.QueryEscape(bigKey), nil)
	if !bytes.Contains(page, []byte(` poster="`)) || !bytes.Contains(page, []byte("640×360 H.264")) || !bytes.Contains(page, []byte("10.0 s")) {
		t.Fatalf("player page without the poster or the facts:\n%s", page)
	}

	// The reconciler leaves the poster alone.
	if n, err := e.console.Reconcile(context.Background()); err != nil || n != 0 {
		t.Fatalf("reconcile: %d, %v", n, err)
	}
	if _, err := e.db.Clip(context.Background(), bigKey+PosterSuffix); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the poster was indexed as a clip: %v", err)
	}
	// Deleting the clip deletes its poster.
	a.json(http.MethodDelete, "/api/clip?key="+url.QueryEscape(bigKey), nil, http.StatusNoContent, nil)
	for _, k := range []string{bigKey, bigKey + PosterSuffix} {
		if _, err := e.bucket.GetObjectDetailedMeta(k); !isOSSNotFound(err) {
			t.Errorf("%s after delete: %v", k, err)
		}
	}
}
