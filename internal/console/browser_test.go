package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
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

	"github.com/clipgate/clipgate/clipgatetest"
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
	e := newEnv(t, envOptions{stack: clipgatetest.Options{Logger: zerolog.New(tap).Level(zerolog.InfoLevel)}})

	// The browser: a fresh profile, nothing but loopback.
	userData := t.TempDir()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
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
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(userData),
	)
	t.Cleanup(cancelAlloc) // runs before the TempDir removal: the browser has exited
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	// Accept the confirm() dialogs of the delete form (the click waits for the dialog to
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
	ev := e.upload("cam-web", "clip.webm", video, time.Now().Add(-time.Minute))
	e.waitIndexed(ev.Key)
	t.Logf("uploaded a %d-byte WebM as %s", len(video), ev.Key)

	// Log in: the console sends the browser to the login page first.
	do("login",
		chromedp.Navigate(e.console.URL()+"/"),
		chromedp.WaitVisible(chromedp.ID("login")),
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
	waitFor(t, "the video to load", func() bool {
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

	// Delete it (accepting the confirmation): back on the device page, without the clip.
	do("delete", chromedp.Click(chromedp.CSS(`#delete button`)), chromedp.WaitVisible(chromedp.CSS(`p.flash`)))
	flash := run("flash", chromedp.Text(chromedp.CSS(`p.flash`)))
	if loc := run("location", chromedp.Location()); flash != "Clip deleted." || !strings.HasPrefix(loc, e.console.URL()+"/devices/cam-web") {
		t.Fatalf("after delete: %q at %s", flash, loc)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('tr[data-key]').length`))
	if err != nil || rows != 0 {
		t.Fatalf("%d clip rows after delete, %v", rows, err)
	}
	if _, err := e.bucket.GetObjectDetailedMeta(ev.Key); !isOSSNotFound(err) {
		t.Fatalf("object after delete: %v", err)
	}
	if _, err := e.db.Clip(context.Background(), ev.Key); err == nil {
		t.Fatal("index row after delete")
	}
}
