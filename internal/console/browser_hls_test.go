package console

import (
	"context"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/media/mediatest"
	"github.com/clipgate/clipgate/internal/testutil"
)

// streamState is what the stream player shows (#stream-state and the video element).
type streamState struct {
	Live     string  `json:"live"`
	First    string  `json:"first"`
	Segments string  `json:"segments"`
	Text     string  `json:"text"`
	Error    string  `json:"error"`
	Ready    int     `json:"ready"`
	Width    int     `json:"width"`
	Time     float64 `json:"time"`
	Duration float64 `json:"duration"`
	Ended    bool    `json:"ended"`
	Src      string  `json:"src"`
}

const readStream = `(() => { const s = document.getElementById("stream-state"), v = document.getElementById("stream"),
	e = document.getElementById("stream-error");
	return {live: s.dataset.live || "", first: s.dataset.first || "", segments: s.dataset.segments || "", text: s.innerText,
	        error: e.hidden ? "" : e.innerText, ready: v.readyState, width: v.videoWidth, time: v.currentTime,
	        duration: isFinite(v.duration) ? v.duration : -1, ended: v.ended, src: v.currentSrc}; })()`

// TestBrowserHLS drives headless Chromium through a camera's HLS stream: a device kit's
// Stream stores real segments (ffmpeg's), encrypted with AES-128, as they arrive; the
// console's player (hls.js, the key and segments served by the console) plays the live
// playlist and sees it advance, the media sequence of its first segment going up as the
// window slides; once the stream ends, the finished stream plays to its end. It skips
// without Chromium or ffmpeg, unless CLIPGATE_E2E=1.
func TestBrowserHLS(t *testing.T) {
	chromium := chromiumPath()
	if chromium == "" {
		needProgram(t, "Chromium is not installed: apt-get install chromium")
	}
	mediatest.FFmpeg(t)
	t.Parallel()
	srcs, _ := mediatest.HLS(t, t.TempDir(), mediatest.Clip{Name: "seg.ts", Width: 320, Height: 180, FPS: 25, Seconds: 6}, 1)
	if len(srcs) != 6 {
		t.Fatalf("ffmpeg cut %d segments", len(srcs))
	}
	e := newEnv(t, envOptions{})

	// The camera: its encoder writes segments into dir, its kit streams them.
	dir := t.TempDir()
	evs := make(chan devicekit.StreamEvent, 64)
	st, err := e.kit("cam-live").NewStream(devicekit.StreamConfig{Dir: dir, Name: "live", Window: 3, Encrypt: true,
		PollInterval: 20 * time.Millisecond, OnEvent: func(ev devicekit.StreamEvent) { evs <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, stopped := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(stopped)
		done <- st.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-stopped })
	feed := func(i int) {
		t.Helper()
		b, err := os.ReadFile(srcs[i])
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(srcs[i])
		if err := os.WriteFile(filepath.Join(dir, name+".tmp"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, name+".tmp"), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	playlist := func(ended bool) string {
		t.Helper()
		for {
			select {
			case ev := <-evs:
				switch {
				case ev.Kind == devicekit.StreamPlaylist && ev.Ended == ended:
					return ev.Key
				case ev.Kind == devicekit.StreamRetry || ev.Kind == devicekit.StreamRejected:
					t.Fatalf("stream: %s: %v", ev.Kind, ev.Err)
				}
			case <-time.After(time.Minute):
				t.Fatal("no playlist from the stream")
			}
		}
	}
	// Three segments stored (the fourth may still be written): a live playlist of three.
	for i := range 4 {
		feed(i)
	}
	var key string
	for range 3 {
		key = playlist(false)
	}
	clip := e.waitIndexed(key)
	if !IsPlaylist(clip) || clip.Container != "HLS" || clip.DurationMS != 0 {
		t.Fatalf("the live playlist indexed as %+v", clip)
	}

	b := &browser{t: t, ctx: startBrowser(t, chromium), url: e.console.URL()}
	b.login(testAdmin, testPassword)
	b.open("/play?key=" + url.QueryEscape(key))
	var s streamState
	testutil.WaitFor(t, "the live stream to play", func() bool {
		s = evalIn[streamState](b, "stream state", readStream)
		if s.Error != "" {
			t.Fatalf("the player failed: %s", s.Error)
		}
		return s.Live == "true" && s.Ready >= 2 && s.Width == 320
	})
	if s.First != "0" || s.Segments != "3" || !strings.HasPrefix(s.Src, "blob:") {
		t.Fatalf("live stream as first loaded: %+v", s)
	}
	t.Logf("live: %q", s.Text)
	// Two more segments arrive: the player's reloads of the playlist see the window slide.
	feed(4)
	playlist(false)
	feed(5)
	playlist(false)
	testutil.WaitFor(t, "the live playlist to advance", func() bool {
		s = evalIn[streamState](b, "stream state", readStream)
		return s.First == "2" && s.Live == "true"
	})
	if s.Segments != "3" || s.Error != "" {
		t.Fatalf("live stream after two more segments: %+v", s)
	}
	t.Logf("live, advanced: %q", s.Text)

	// The stream ends: the final playlist lists all six, and plays to its end.
	st.Finish()
	if final := playlist(true); final != key {
		t.Fatalf("final playlist %s, live one %s", final, key)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the final playlist to be indexed", func() bool {
		c, err := e.db.Clip(context.Background(), key)
		return err == nil && c.DurationMS > 0
	})
	if c, _ := e.db.Clip(context.Background(), key); math.Abs(float64(c.DurationMS)-6000) > 200 {
		t.Errorf("the finished stream indexed with %d ms", c.DurationMS)
	}
	b.open("/play?key=" + url.QueryEscape(key))
	testutil.WaitFor(t, "the finished stream to load", func() bool {
		s = evalIn[streamState](b, "stream state", readStream)
		if s.Error != "" {
			t.Fatalf("the player failed: %s", s.Error)
		}
		return s.Live == "false" && s.Ready >= 1
	})
	if s.Segments != "6" || math.Abs(s.Duration-6) > 0.2 {
		t.Fatalf("finished stream: %+v", s)
	}
	t.Logf("finished: %q", s.Text)
	evalIn[bool](b, "play", `(() => { const v = document.getElementById("stream"); v.playbackRate = 4; v.play(); return true; })()`)
	testutil.WaitFor(t, "the finished stream to play to its end", func() bool {
		s = evalIn[streamState](b, "stream state", readStream)
		if s.Error != "" {
			t.Fatalf("the player failed: %s", s.Error)
		}
		return s.Ended
	})
	if math.Abs(s.Time-s.Duration) > 0.1 {
		t.Fatalf("ended at %.2f s of %.2f s", s.Time, s.Duration)
	}
}
