package console

import (
	"bytes"
	"errors"
	"image"
	"image/color/palette"
	"image/draw"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/clipgate/clipgate/internal/media/mediatest"
)

// screenshotsEnv names the directory, relative to the repository's root, where
// TestScreenshots writes the console's screenshots:
//
//	CLIPGATE_SCREENSHOTS=docs/screenshots go test -run TestScreenshots ./internal/console/
const screenshotsEnv = "CLIPGATE_SCREENSHOTS"

// repoRoot finds the directory of go.mod above the working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal(errors.New("no go.mod above the working directory"))
		}
		dir = parent
	}
}

// quantize re-encodes a PNG screenshot in 256 colors (Plan 9's palette, no dithering:
// the pages are flat colors), a quarter of the size or less.
func quantize(b []byte) ([]byte, error) {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	p := image.NewPaletted(img.Bounds(), palette.Plan9)
	draw.Draw(p, p.Bounds(), img, img.Bounds().Min, draw.Src)
	var out bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&out, p); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// TestScreenshots takes screenshots of the console's main pages, on the seeded fleet, for
// the README. It runs only with CLIPGATE_SCREENSHOTS set.
func TestScreenshots(t *testing.T) {
	out := os.Getenv(screenshotsEnv)
	if out == "" {
		t.Skip(screenshotsEnv + " is not set: no screenshots")
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(repoRoot(t), out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	chromium := chromiumPath()
	if chromium == "" {
		t.Fatal("Chromium is not installed: apt-get install chromium")
	}
	mediatest.FFmpeg(t)
	e := newEnv(t, envOptions{})
	f := seedFleet(t, e)
	b := &browser{t: t, ctx: startBrowser(t, chromium), url: e.console.URL()}
	b.colorScheme("light")
	b.viewport(1200, 800, false)
	// The viewer watches a clip, for the audit log.
	b.login(f.Viewer, f.ViewerPassword)
	b.open("/play?key=" + url.QueryEscape(f.Yard))
	b.logout()
	b.login(testAdmin, testPassword)
	shoot := func(name, path string) {
		t.Helper()
		b.open(path)
		shot, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		small, err := quantize(shot)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(out, name+".png")
		if err := os.WriteFile(file, small, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes", file, len(small))
	}
	shoot("devices", "/")
	shoot("device", "/devices/cam-front?limit=6")
	shoot("clips", "/clips?status=poster&limit=10")
	shoot("player", "/play?key="+url.QueryEscape(f.Front))
	shoot("retention", "/retention")
	shoot("operators", "/operators")
	shoot("audit", "/audit?limit=12")
	// A phone in dark mode.
	b.colorScheme("dark")
	b.viewport(390, 844, true)
	shoot("phone-dark-device", "/devices/cam-front?limit=5")
}
