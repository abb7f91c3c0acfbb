package console

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/protocol"
)

// TestHLSPlaylistServed: the console serves an indexed playlist as OSS holds it, its
// segment and key URIs pointed at its own /hls/object, which serves segments and keys to
// logged-in operators only; a finished playlist is indexed with its length; playlists
// that are garbage or point outside the device's prefix get a clear 502, and the object
// route refuses what is not a stream's segment or key.
func TestHLSPlaylistServed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	a := e.api()
	a.login()
	at := time.Now().Add(-time.Hour)
	seg := clipData(188*10, 3)
	segEv := e.uploadAs("cam-pl", "s-a.ts", "video/mp2t", seg, at)
	key := bytes.Repeat([]byte{7}, 16)
	keyEv := e.uploadAs("cam-pl", "s.key", "application/octet-stream", key, at)
	list := "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-KEY:METHOD=AES-128,URI=\"s.key\"\n" +
		"#EXTINF:1.000,\ns-a.ts\n#EXTINF:0.960,\n../01/s-b.ts\n#EXT-X-ENDLIST\n"
	pl := e.uploadAs("cam-pl", "s.m3u8", "application/vnd.apple.mpegurl", []byte(list), at)
	clip := e.waitIndexed(pl.Key)
	if clip.Container != "HLS" || clip.DurationMS != 1960 || clip.MediaError != "" {
		t.Errorf("playlist indexed as %+v", clip)
	}

	status, body := a.do(http.MethodGet, "/hls/playlist?key="+url.QueryEscape(pl.Key), nil)
	if status != http.StatusOK {
		t.Fatalf("playlist: %d %s", status, body)
	}
	p, err := parsePlaylist(body)
	if err != nil {
		t.Fatal(err)
	}
	dir := path.Dir(pl.Key)
	object := func(key string) string { return "/hls/object?key=" + url.QueryEscape(key) }
	other := path.Join(dir, "../01/s-b.ts")
	if p.SeqNo != 4 || !p.Closed || p.Key == nil || p.Key.URI != object(keyEv.Key) || p.Segments[0].URI != object(segEv.Key) ||
		p.Segments[1].URI != object(other) || p.Segments[1].Duration != 0.96 {
		t.Fatalf("served playlist:\n%s", body)
	}
	for _, tc := range []struct {
		uri  string
		want []byte
	}{{p.Segments[0].URI, seg}, {p.Key.URI, key}} {
		if status, got := a.do(http.MethodGet, tc.uri, nil); status != http.StatusOK || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %d, %d bytes", tc.uri, status, len(got))
		}
	}
	if status, _ := a.do(http.MethodGet, p.Segments[1].URI, nil); status != http.StatusNotFound {
		t.Errorf("a missing segment: %d", status)
	}
	// Logged out: nothing.
	if status, _ := e.api().do(http.MethodGet, p.Segments[0].URI, nil); status != http.StatusSeeOther {
		t.Errorf("a segment without a session: %d", status)
	}
	if status, _ := e.api().do(http.MethodGet, "/hls/playlist?key="+url.QueryEscape(pl.Key), nil); status != http.StatusSeeOther {
		t.Errorf("the playlist without a session: %d", status)
	}

	// Garbage.
	for _, tc := range []struct {
		name, body, want string
	}{
		{"junk.m3u8", "hello, not a playlist", "no #EXTM3U"},
		{"master.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nlow.m3u8\n", "master playlist"},
		{"escape.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n../../../../other/x.ts\n", "leaves the device's prefix"},
		{"abs.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://example.invalid/x.ts\n", "not relative"},
		{"keyabs.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-KEY:METHOD=AES-128,URI=\"/etc/k\"\n#EXTINF:1,\nx.ts\n", "not relative"},
	} {
		ev := e.uploadAs("cam-pl", tc.name, "application/vnd.apple.mpegurl", []byte(tc.body), at)
		e.waitIndexed(ev.Key)
		status, body := a.do(http.MethodGet, "/hls/playlist?key="+url.QueryEscape(ev.Key), nil)
		if status != http.StatusBadGateway || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %d %q, want 502 with %q", tc.name, status, body, tc.want)
		}
	}
	if c, _ := e.db.Clip(t.Context(), path.Join(dir, "junk.m3u8")); c == nil || !strings.Contains(c.MediaError, "no #EXTM3U") {
		t.Errorf("garbage playlist indexed as %+v", c)
	}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/hls/playlist?key=" + url.QueryEscape(segEv.Key), http.StatusBadRequest}, // not a playlist
		{"/hls/playlist?key=" + url.QueryEscape(dir+"/none.m3u8"), http.StatusNotFound},
		{"/hls/object?key=" + url.QueryEscape(dir+"/clip.mp4"), http.StatusBadRequest},
		{"/hls/object?key=" + url.QueryEscape("elsewhere/x.ts"), http.StatusBadRequest},
		{"/hls/object?key=", http.StatusBadRequest},
	} {
		if status, body := a.do(http.MethodGet, tc.path, nil); status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.path, status, body, tc.want)
		}
	}
}

// TestLivePlaylistReplacedSinceItsEvent: the event of a live playlist that the device has
// rewritten since (the verifier finds another size and CRC-64) is indexed verified with
// the object as it is now, not listed as a problem; any other clip whose object differs
// from its event still is.
func TestLivePlaylistReplacedSinceItsEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	at := time.Now().Add(-time.Hour)
	v1 := "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nlive-0.ts\n"
	pl := e.uploadAs("cam-rw", "live.m3u8", PlaylistContentType, []byte(v1), at)
	e.waitIndexed(pl.Key)
	// The device rewrites it (one more segment); the event of the first version arrives
	// late, as the verifier hands it on.
	v2 := v1 + "#EXTINF:1,\nlive-1.ts\n"
	if err := e.bucket.PutObject(pl.Key, strings.NewReader(v2)); err != nil {
		t.Fatal(err)
	}
	clip := e.uploadAs("cam-rw", "clip.ts", "video/mp2t", clipData(188*4, 1), at)
	e.waitIndexed(clip.Key)
	if err := e.bucket.PutObject(clip.Key, strings.NewReader("other bytes")); err != nil {
		t.Fatal(err)
	}
	for i, ue := range []*protocol.UploadEvent{pl, clip} {
		ev := &events.Event{UploadEvent: *ue, Publisher: "cam-rw", Reason: events.ReasonSizeMismatch, Detail: "size differs"}
		ev.ID = fmt.Sprintf("late-%d-aaaaaaaaaaaaaaa", i)
		if err := e.console.handle(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.db.Clip(t.Context(), pl.Key)
	if err != nil || !got.Verified || got.Size != int64(len(v2)) || got.Reason != "" || got.Container != "HLS" {
		t.Fatalf("the replaced playlist indexed as %+v (%v)", got, err)
	}
	probs, err := e.db.Problems(t.Context(), ProblemQuery{Device: "cam-rw", Limit: 10})
	if err != nil || len(probs) != 1 || probs[0].Key != clip.Key || probs[0].Reason != string(events.ReasonSizeMismatch) {
		t.Fatalf("problems %+v (%v): want only the clip's", probs, err)
	}
}
