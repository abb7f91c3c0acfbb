package console

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/clipgate/clipgate/internal/media/mediatest"
	"github.com/clipgate/clipgate/internal/testutil"
)

// browser wraps a Chromium tab for a test: each step fails the test with what it was doing.
type browser struct {
	t   *testing.T
	ctx context.Context
	url string // the console's
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func evalIn[T any](b *browser, what, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// open goes to a console path and waits for its main element.
func (b *browser) open(path string) {
	b.t.Helper()
	b.do("opening "+path, chromedp.Navigate(b.url+path), chromedp.WaitReady(chromedp.CSS("main")))
}

// login logs in through the form (from a logged-out state).
func (b *browser) login(name, password string) {
	b.t.Helper()
	b.do("login as "+name,
		chromedp.Navigate(b.url+"/login"),
		chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Submit(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("who")),
	)
}

func (b *browser) logout() {
	b.t.Helper()
	b.do("log out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.ID("login")))
}

// submit submits a form and waits for the page it leads to. The page is marked first,
// so that nothing after runs on it: a wait for an element could find it on the page
// being left.
func (b *browser) submit(what, form string) {
	b.t.Helper()
	evalIn[bool](b, what+": marking the page", `window.submitted = true`)
	b.do(what, chromedp.Submit(chromedp.ID(form)))
	testutil.WaitFor(b.t, what+": the next page", func() bool {
		// An evaluation can fail while the page is replaced; it is tried again.
		next, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`!window.submitted && document.readyState !== "loading"`))
		return err == nil && next
	})
}

// viewport sets the window size; mobile emulates a phone (touch, overlay scrollbars).
func (b *browser) viewport(w, h int64, mobile bool) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
		Width: w, Height: h, DeviceScaleFactor: 1, Mobile: mobile}); err != nil {
		b.t.Fatal(err)
	}
}

// colorScheme emulates the system's light or dark setting.
func (b *browser) colorScheme(scheme string) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
		b.t.Fatal(err)
	}
}

// luminanceJS returns the relative luminance (0 black, 1 white) of a computed color
// property of the element that sel finds.
func luminanceJS(sel, prop string) string {
	return `(() => { const c = getComputedStyle(document.querySelector(` + "`" + sel + "`" + `))[` + "`" + prop + "`" + `];
		const m = c.match(/\d+(\.\d+)?/g).map(Number);
		const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
		return 0.2126 * lin(m[0]) + 0.7152 * lin(m[1]) + 0.0722 * lin(m[2]); })()`
}

// TestBrowserOperator drives headless Chromium through what an operator sees: the
// fleet's storage, a device's timelines with its gap, the clip search by status with
// posters loaded from OSS, a clip's length and picture; at phone width every page fits
// without horizontal scrolling; the colors follow the system's dark setting; a viewer
// sees no admin controls and cannot open the admin's pages; the audit log shows what
// the viewer did. It skips without Chromium or ffmpeg, unless CLIPGATE_E2E=1.
func TestBrowserOperator(t *testing.T) {
	chromium := chromiumPath()
	if chromium == "" {
		needProgram(t, "Chromium is not installed: apt-get install chromium")
	}
	mediatest.FFmpeg(t)
	t.Parallel()
	e := newEnv(t, envOptions{})
	f := seedFleet(t, e)
	b := &browser{t: t, ctx: startBrowser(t, chromium), url: e.console.URL()}
	b.viewport(1280, 900, false)
	b.colorScheme("light")
	b.login(testAdmin, testPassword)

	// The fleet: total storage, and each device's.
	b.open("/")
	if s := evalIn[string](b, "storage", `document.getElementById("storage").innerText`); !strings.Contains(s, "clips of 3 devices") || !strings.Contains(s, "MiB") {
		t.Errorf("storage line %q", s)
	}
	if s := evalIn[string](b, "a device's storage", `document.querySelector('tr[data-device="cam-front"] td.storage').innerText`); !strings.HasSuffix(s, "iB") {
		t.Errorf("cam-front's storage %q", s)
	}

	// A device: two timelines, a bar per slot, the gap shaded and written out.
	b.do("device page", chromedp.Click(chromedp.CSS(`tr[data-device="cam-front"] a`)), chromedp.WaitVisible(chromedp.ID("timeline-hour")))
	type timeline struct {
		Bars, Gaps, Shaded int
		GapText            string
		Height             float64
	}
	tl := evalIn[timeline](b, "hourly timeline", `(() => { const f = document.getElementById("timeline-hour");
		return {bars: f.querySelectorAll("rect").length, gaps: Number(f.dataset.gaps), shaded: f.querySelectorAll("rect.gap").length,
		        gapText: f.querySelector("ul.gaps") ? f.querySelector("ul.gaps").innerText : "",
		        height: f.querySelector("svg").getBoundingClientRect().height}; })()`)
	if tl.Bars != DefaultHours || tl.Gaps != 1 || tl.Shaded != f.GapHours || !strings.Contains(tl.GapText, "No clips from") ||
		!strings.Contains(tl.GapText, "(10 hours)") || tl.Height < 50 {
		t.Errorf("hourly timeline as shown: %+v", tl)
	}
	day := evalIn[timeline](b, "daily timeline", `(() => { const f = document.getElementById("timeline-day");
		return {bars: f.querySelectorAll("rect").length, gaps: Number(f.dataset.gaps), shaded: f.querySelectorAll("rect.gap").length,
		        gapText: f.querySelector("ul.gaps") ? f.querySelector("ul.gaps").innerText : ""}; })()`)
	if day.Bars != DefaultDays || day.Gaps != 1 || day.Shaded != 4 || !strings.Contains(day.GapText, "(4 days)") {
		t.Errorf("daily timeline as shown: %+v", day)
	}
	// A bar is a link to its hour's clips.
	href := evalIn[string](b, "a bar's link", `document.querySelector("#timeline-hour rect.bar").parentNode.getAttribute("href")`)
	b.open(href)
	rows := evalIn[int](b, "the hour's clips", `document.querySelectorAll("#clips tbody tr").length`)
	if !strings.Contains(href, "from=") || rows != 1 {
		t.Errorf("the bar's link %q shows %d clips", href, rows)
	}

	// Search the fleet by status: the clips with a poster, posters loaded from OSS.
	b.open("/clips")
	b.do("choosing a status", chromedp.SetValue(chromedp.ID("status"), "poster"))
	b.submit("search by status", "filter")
	type thumbs struct {
		Rows, Thumbs, Visible, Loaded int
		Devices                       string
	}
	var th thumbs
	// The posters in view load (the others load lazily, as they scroll in).
	testutil.WaitFor(t, "the posters to load", func() bool {
		th = evalIn[thumbs](b, "posters", `(() => { const imgs = [...document.querySelectorAll("#clips td.thumb img")];
			const visible = imgs.filter((i) => i.getBoundingClientRect().top < innerHeight);
			return {rows: document.querySelectorAll("#clips tbody tr").length, thumbs: imgs.length, visible: visible.length,
			        loaded: visible.filter((i) => i.complete && i.naturalWidth === 320).length,
			        devices: [...new Set([...document.querySelectorAll("#clips td[data-label=Device]")].map((td) => td.innerText))].join()}; })()`)
		return th.Visible > 0 && th.Loaded == th.Visible
	})
	if th.Rows != DefaultPageSize || th.Thumbs != th.Rows || th.Devices != "cam-front" {
		t.Errorf("poster search shows %+v", th)
	}
	// Search the fleet by device, time range and status at once, as an operator fills in
	// the form (UTC): cam-yard recorded at 20 past each of the last 6 hours.
	search := func(status string) (keys []string, empty string) {
		t.Helper()
		b.open("/clips")
		b.do("filling in the search",
			chromedp.SetValue(chromedp.CSS(`#filter input[name="device"]`), "cam-yard"),
			chromedp.SetValue(chromedp.CSS(`#filter input[name="from"]`), f.Now.Add(-4*time.Hour).Format("2006-01-02T15:04")),
			chromedp.SetValue(chromedp.CSS(`#filter input[name="to"]`), f.Now.Add(-time.Hour).Format("2006-01-02T15:04")),
			chromedp.SetValue(chromedp.ID("status"), status))
		b.submit("search by device, time and status", "filter")
		type found struct {
			Keys  []string
			Empty string
		}
		got := evalIn[found](b, "the search's clips", `({keys: [...document.querySelectorAll("#clips tbody tr")].map((r) => r.dataset.key),
			empty: document.getElementById("no-clips") ? document.getElementById("no-clips").innerText : ""})`)
		return got.Keys, got.Empty
	}
	keys, _ := search("verified")
	if len(keys) != 3 { // recorded 1:40, 2:40 and 3:40 ago
		t.Errorf("cam-yard's verified clips from 4 to 1 hours ago: %q", keys)
	}
	for i, k := range keys { // newest first
		at := f.Now.Add(-time.Duration(2+i)*time.Hour + 20*time.Minute)
		if !strings.HasPrefix(k, e.stack.Prefix()+"cam-yard/") || !strings.HasSuffix(k, "/"+at.Format("150405")+".ts") {
			t.Errorf("clip %d of the search is %s, want cam-yard's of %s", i, k, at.Format(time.RFC3339))
		}
	}
	if keys, empty := search("poster"); len(keys) != 0 || empty != "No clips match this search." {
		t.Errorf("cam-yard's clips with a poster: %q, %q", keys, empty)
	}

	// A clip: its length and picture, read from the container.
	b.open("/play?key=" + url.QueryEscape(f.Yard))
	if d := evalIn[string](b, "length", `document.getElementById("clip-duration").innerText`); d != "3.0 s" {
		t.Errorf("length shown %q", d)
	}
	if p := evalIn[string](b, "picture", `document.getElementById("clip-picture").innerText`); !strings.HasPrefix(p, "320×180 H.264 · mpegts") {
		t.Errorf("picture shown %q", p)
	}

	// Phone width: no page scrolls sideways; the timeline and the tables stay readable.
	b.viewport(320, 700, true)
	pages := []string{"/", "/devices/cam-front", "/clips", "/clips?device=cam-front&status=poster", "/play?key=" + url.QueryEscape(f.Front),
		"/problems", "/retention", "/operators", "/tokens", "/audit"}
	for _, path := range pages {
		b.open(path)
		type width struct{ Scroll, Inner int }
		w := evalIn[width](b, "widths of "+path, `({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})`)
		if w.Inner != 320 || w.Scroll > w.Inner {
			t.Errorf("%s at phone width: scrollWidth %d, innerWidth %d", path, w.Scroll, w.Inner)
		}
	}
	b.open("/devices/cam-front")
	if w := evalIn[float64](b, "timeline width", `document.querySelector("#timeline-hour svg").getBoundingClientRect().width`); w < 250 || w > 320 {
		t.Errorf("timeline %.0f px wide at phone width", w)
	}

	// Dark and light follow the system's setting.
	for _, tc := range []struct {
		scheme     string
		bgDark     bool
		textBright bool
	}{{"dark", true, true}, {"light", false, false}} {
		b.colorScheme(tc.scheme)
		b.open("/devices/cam-front")
		bg := evalIn[float64](b, "background", luminanceJS("body", "backgroundColor"))
		fg := evalIn[float64](b, "text", luminanceJS("body", "color"))
		panel := evalIn[float64](b, "table", luminanceJS("figure.timeline", "backgroundColor"))
		if (bg < 0.1) != tc.bgDark || (fg > 0.5) != tc.textBright || (panel < 0.1) != tc.bgDark {
			t.Errorf("%s: background luminance %.2f, text %.2f, panel %.2f", tc.scheme, bg, fg, panel)
		}
	}

	// A viewer: no admin controls, no admin pages.
	b.viewport(1280, 900, false)
	b.logout()
	b.login(f.Viewer, f.ViewerPassword)
	if who := evalIn[string](b, "who", `document.getElementById("who").innerText`); who != f.Viewer+" viewer" {
		t.Errorf("logged in as %q", who)
	}
	b.open("/play?key=" + url.QueryEscape(f.Front))
	type controls struct {
		Delete, Audit bool
	}
	if c := evalIn[controls](b, "controls", `({delete: !!document.getElementById("delete"), audit: !!document.querySelector('a[href="/audit"]')})`); c.Delete || c.Audit {
		t.Errorf("a viewer sees admin controls: %+v", c)
	}
	b.open("/devices/cam-front")
	if evalIn[bool](b, "revoke", `!!document.getElementById("revocation")`) {
		t.Error("a viewer sees the revoke button")
	}
	b.open("/audit")
	if msg := evalIn[string](b, "audit as a viewer", `document.querySelector("p.error").innerText`); !strings.Contains(msg, "Only an admin") {
		t.Errorf("a viewer on the audit page: %q", msg)
	}
	// The admin reads what the viewer did.
	b.logout()
	b.login(testAdmin, testPassword)
	b.open("/audit?actor=" + f.Viewer)
	actions := evalIn[string](b, "audit rows", `[...document.querySelectorAll("#audit tbody tr")].map((r) => r.dataset.action).join()`)
	if actions != "logout,playback_url,login" {
		t.Errorf("the viewer's audit trail as shown: %q", actions)
	}
}
