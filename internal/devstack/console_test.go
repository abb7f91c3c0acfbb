package devstack

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clipgate/clipgate/devicekit"
)

// TestConsole: the devstack runs the console, prints its URL and password, indexes the
// device's uploads, and keeps the password across restarts.
func TestConsole(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := filepath.Join(t.TempDir(), "state")
	d, err := Start(ctx, randomPorts(dir))
	if err != nil {
		t.Fatal(err)
	}
	var banner bytes.Buffer
	if err := d.PrintBanner(&banner); err != nil {
		t.Fatal(err)
	}
	url := d.Console.URL()
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.Contains(banner.String(), url) || !strings.Contains(banner.String(), d.Console.Password) {
		t.Fatalf("banner without the console (%s):\n%s", url, banner.String())
	}
	resp, err := http.Get(url + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte("Operator password")) {
		t.Fatalf("login page: %d %s", resp.StatusCode, page)
	}
	if st, err := os.Stat(filepath.Join(dir, consolePasswordFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", st, err)
	}

	kit, err := devicekit.New(d.Stack.DeviceConfig(DefaultDeviceID))
	if err != nil {
		t.Fatal(err)
	}
	if err := kit.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	clip := filepath.Join(t.TempDir(), "a.mp4")
	if err := os.WriteFile(clip, []byte("a clip for the console"), 0o600); err != nil {
		t.Fatal(err)
	}
	ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip})
	_ = kit.Close()
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if missing := d.Console.waitIndexed(wctx, []string{ev.Key}); len(missing) > 0 {
		t.Fatalf("not indexed: %v", missing)
	}
	password := d.Console.Password
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d, err = Start(ctx, randomPorts(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Console.Password != password {
		t.Fatal("the console password changed across restarts")
	}
	if c, err := d.Console.DB.Clip(ctx, ev.Key); err != nil || !c.Verified {
		t.Fatalf("the index after a restart: %+v, %v", c, err)
	}
}

// TestDemoConsole: the demo's clips appear in its console.
func TestDemoConsole(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	res, err := Demo(testContext(t), DemoConfig{Devices: 1, Clips: 2, Config: Config{BcryptCost: bcrypt.MinCost}}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if res.Indexed != 2 || !strings.Contains(out.String(), "demo: 2 of 2 clips in the console at http://127.0.0.1:") {
		t.Fatalf("result %+v\n%s", res, out.String())
	}
}
