package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/testutil"
)

// chromiumPath finds Chromium: /usr/bin/chromium (Debian's package), else on PATH.
func chromiumPath() string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// logTap keeps the JSON log lines of the stack, to read the local OSS's request log.
type logTap struct {
	mu    sync.Mutex
	lines [][]byte
}

func (l *logTap) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, bytes.Clone(p))
	return len(p), nil
}

// ossRequest is a local OSS request log line.
type ossRequest struct {
	Component string `json:"component"`
	Message   string `json:"message"`
	Method    string `json:"method"`
	Op        string `json:"op"`
	Key       string `json:"key"`
	Status    int    `json:"status"`
	BytesOut  int64  `json:"bytesOut"`
}

// gets returns the local OSS's GetObject requests for key.
func (l *logTap) gets(key string) []ossRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ossRequest
	for _, line := range l.lines {
		sc := bufio.NewScanner(bytes.NewReader(line))
		for sc.Scan() {
			var r ossRequest
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Component == "localcloud" && r.Message == "oss request" &&
				r.Op == "GetObject" && r.Method == "GET" && r.Key == key {
				out = append(out, r)
			}
		}
	}
	return out
}

// recordWebM makes a real, decodable WebM video in the browser itself (a canvas
// animation through MediaRecorder, VP8), so that the test needs no ffmpeg and no video
// file in the repository.
const recordWebM = `new Promise((resolve, reject) => {
  const c = document.createElement("canvas");
  c.width = 160; c.height = 120;
  document.body.appendChild(c);
  const g = c.getContext("2d");
  const rec = new MediaRecorder(c.captureStream(25), {mimeType: "video/webm;codecs=vp8"});
  const chunks = [];
  rec.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  rec.onerror = (e) => reject(String(e.error));
  rec.onstop = () => {
    const r = new FileReader();
    r.onload = () => resolve(r.result.slice(r.result.indexOf(",") + 1));
    r.onerror = () => reject("FileReader failed");
    r.readAsDataURL(new Blob(chunks, {type: "video/webm"}));
  };
  let f = 0;
  const draw = () => {
    g.fillStyle = "hsl(" + (f * 15 % 360) + ",80%,50%)"; g.fillRect(0, 0, 160, 120);
    g.fillStyle = "#fff"; g.font = "20px sans-serif"; g.fillText("clipgate " + f, 10, 65); f++;
  };
  draw();
  const iv = setInterval(draw, 40);
  rec.start(100);
  setTimeout(() => { clearInterval(iv); rec.stop(); }, 1500);
})`

// startBrowser starts headless Chromium with a fresh profile and returns a tab's
// context, bounded to five minutes, whose confirm() dialogs are accepted. The browser
// exits when the test ends.
func startBrowser(t *testing.T, chromium string) context.Context {
	t.Helper()
	userData := t.TempDir()
	// A bound on the whole browser session, so that a wait for an element that never
	// shows fails the test instead of hanging it.
	limit, cancelLimit := context.WithTimeout(context.Background(), 5*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(limit,
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(userData),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	// Runs before the TempDir removal: the browser has exited.
	t.Cleanup(func() { cancelTab(); cancelAlloc(); cancelLimit() })
	// Accept the confirm() dialogs of the forms (the click waits for the dialog to
	// close, so another goroutine answers it).
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return ctx
}

// TestBrowser drives headless Chromium through the console: log in, the device list, a
// device's clips, the player, whose <video> loads the clip from the local OSS through
// its signed URL (the local OSS's request log shows the GETs, and the element decodes
// the video), then delete. It skips without Chromium, unless CLIPGATE_E2E=1.
func TestBrowser(t *testing.T) {
	chromium := chromiumPath()
	if chromium == "" {
		needProgram(t, "Chromium is not installed: apt-get install chromium")
	}
	t.Parallel()
	tap := &logTap{}
	e := newEnv(t, envOptions{stack: inproc.Options{Logger: zerolog.New(tap).Level(zerolog.InfoLevel)}})

	ctx := startBrowser(t, chromium)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	run := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}

	// A real video, made by the browser, uploaded by a camera.
	do("opening a blank page", chromedp.Navigate("about:blank"))
	b64 := run("recording a WebM in the browser", chromedp.Evaluate[string](recordWebM, chromedp.EvalAwaitPromise))
	video, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(video) < 1000 || !bytes.HasPrefix(video, []byte{0x1a, 0x45, 0xdf, 0xa3}) {
		t.Fatalf("recorded video: %d bytes, %v", len(video), err)
	}
	ev := e.uploadAs("cam-web", "clip.webm", "video/webm", video, time.Now().Add(-time.Minute))
	e.waitIndexed(ev.Key)
	t.Logf("uploaded a %d-byte WebM as %s", len(video), ev.Key)
	// And a clip no browser can play: bytes that are no video, said to be MP4.
	junk := clipData(64<<10, 9)
	broken := e.uploadAs("cam-web", "broken.mp4", "video/mp4", junk, time.Now().Add(-2*time.Minute))
	e.waitIndexed(broken.Key)

	// Log in: the console sends the browser to the login page first.
	do("login",
		chromedp.Navigate(e.console.URL()+"/"),
		chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.SendKeys(chromedp.ID("name"), testAdmin),
		chromedp.SendKeys(chromedp.ID("password"), testPassword),
		chromedp.Submit(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("devices")),
	)
	if loc := run("location", chromedp.Location()); loc != e.console.URL()+"/" {
		t.Fatalf("after login at %s", loc)
	}

	// The device list, the device, its clip.
	row := chromedp.CSS(`tr[data-device="cam-web"]`)
	if text := run("device row", chromedp.Text(row)); !strings.Contains(text, "cam-web") || !strings.Contains(text, "online") {
		t.Fatalf("device row: %q", text)
	}
	do("opening the device", chromedp.Click(chromedp.CSS(`tr[data-device="cam-web"] a`)), chromedp.WaitVisible(chromedp.ID("clips")))
	if loc := run("location", chromedp.Location()); loc != e.console.URL()+"/devices/cam-web" {
		t.Fatalf("device page at %s", loc)
	}
	do("opening the clip", chromedp.Click(chromedp.CSS(`tr[data-key="`+ev.Key+`"] a.play`)), chromedp.WaitVisible(chromedp.ID("player")))

	// The video element loads and decodes the clip, from the local OSS.
	type state struct {
		ReadyState int     `json:"readyState"`
		Src        string  `json:"src"`
		Buffered   float64 `json:"buffered"`
		Width      int     `json:"width"`
		Error      int     `json:"error"`
	}
	var st state
	testutil.WaitFor(t, "the video to load", func() bool {
		var err error
		st, err = chromedp.Run(ctx, chromedp.Evaluate[state](`(() => { const v = document.getElementById("player");
			return {readyState: v.readyState, src: v.currentSrc, buffered: v.buffered.length ? v.buffered.end(0) : 0,
			        width: v.videoWidth, error: v.error ? v.error.code : 0}; })()`))
		if err != nil {
			t.Fatal(err)
		}
		if st.Error != 0 {
			t.Fatalf("the video element failed: MediaError code %d (src %s)", st.Error, st.Src)
		}
		return st.ReadyState >= 2 && st.Width == 160 // HAVE_CURRENT_DATA, and the frame size decoded
	})
	u, err := url.Parse(st.Src)
	if err != nil || !strings.HasPrefix(st.Src, e.stack.OSSEndpoint()+"/") || u.Query().Get("x-oss-signature") == "" {
		t.Fatalf("video source %q is not a signed local OSS URL", st.Src)
	}
	var served int64
	gets := tap.gets(ev.Key)
	for _, g := range gets {
		if g.Status != 200 && g.Status != 206 {
			t.Fatalf("local OSS answered the video with %d", g.Status)
		}
		served += g.BytesOut
	}
	if len(gets) == 0 || served == 0 {
		t.Fatalf("the local OSS served no bytes of %s (requests: %+v)", ev.Key, gets)
	}
	t.Logf("video readyState %d, %.2fs buffered; local OSS served %d bytes of %d in %d GETs", st.ReadyState, st.Buffered, served, len(video), len(gets))
	// A playable clip shows neither message.
	if msgs := run("player messages", chromedp.Evaluate[string](`["cannot-play", "may-not-play"].filter((id) => !document.getElementById(id).hidden).join()`)); msgs != "" {
		t.Fatalf("a playable clip shows %q", msgs)
	}

	// Delete it (accepting the confirmation): back on the device page, without the clip.
	do("delete", chromedp.Click(chromedp.CSS(`#delete button`)), chromedp.WaitVisible(chromedp.CSS(`p.flash`)))
	flash := run("flash", chromedp.Text(chromedp.CSS(`p.flash`)))
	if loc := run("location", chromedp.Location()); flash != "Clip deleted." || !strings.HasPrefix(loc, e.console.URL()+"/devices/cam-web") {
		t.Fatalf("after delete: %q at %s", flash, loc)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('tr[data-key]')].map((r) => r.dataset.key).join()`))
	if err != nil || rows != broken.Key {
		t.Fatalf("clip rows after delete: %q, %v; want only %s", rows, err, broken.Key)
	}
	if _, err := e.bucket.GetObjectDetailedMeta(ev.Key); !isOSSNotFound(err) {
		t.Fatalf("object after delete: %v", err)
	}
	if _, err := e.db.Clip(context.Background(), ev.Key); err == nil {
		t.Fatal("index row after delete")
	}

	// The clip the browser cannot play: a message and the download, not a blank player.
	do("opening the broken clip", chromedp.Navigate(e.console.URL()+"/play?key="+url.QueryEscape(broken.Key)),
		chromedp.WaitVisible(chromedp.ID("cannot-play")))
	type verdict struct {
		PlayerHidden bool   `json:"playerHidden"`
		Message      string `json:"message"`
		Download     string `json:"download"`
	}
	v, err := chromedp.Run(ctx, chromedp.Evaluate[verdict](`(() => { const m = document.getElementById("cannot-play");
		return {playerHidden: document.getElementById("player").hidden, message: m.innerText, download: m.querySelector("a").href}; })()`))
	if err != nil {
		t.Fatal(err)
	}
	if !v.PlayerHidden || !strings.Contains(v.Message, "cannot play this clip (video/mp4)") {
		t.Fatalf("unplayable clip: %+v", v)
	}
	resp, err := http.Get(v.Download)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err != nil || resp.StatusCode != http.StatusOK ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") || params["filename"] != "broken.mp4" || !bytes.Equal(got, junk) {
		t.Fatalf("download link: %d %q, %d bytes, %v", resp.StatusCode, resp.Header.Get("Content-Disposition"), len(got), err)
	}

	// Every input pattern compiles as Chrome compiles patterns (the v flag; an invalid
	// one is silently ignored), and the retention form's refuses a bad prefix.
	for _, path := range []string{"/", "/clips", "/problems", "/retention"} {
		do("opening "+path, chromedp.Navigate(e.console.URL()+path), chromedp.WaitReady(chromedp.CSS("main")))
		bad := run("patterns of "+path, chromedp.Evaluate[string](`[...document.querySelectorAll("input[pattern]")].filter((i) => {
			try { new RegExp("^(?:" + i.pattern + ")$", "v"); return false; } catch (e) { return true; } }).map((i) => i.name).join()`))
		if bad != "" {
			t.Errorf("%s: invalid pattern on input(s) %s", path, bad)
		}
	}
	type validity struct {
		Bad, Good, Submittable bool
	}
	val, err := chromedp.Run(ctx, chromedp.Evaluate[validity](`(() => { const p = document.getElementById("prefix"), out = {};
		p.value = "clips/cam 01/"; out.Bad = p.validity.patternMismatch; out.Submittable = document.getElementById("retention").checkValidity();
		p.value = "clips/cam-01/"; out.Good = p.validity.patternMismatch; return out; })()`))
	if err != nil || !val.Bad || val.Good || val.Submittable {
		t.Fatalf("retention prefix validity: bad value mismatched %v, good value mismatched %v, form with the bad one submittable %v (%v)",
			val.Bad, val.Good, val.Submittable, err)
	}
}
