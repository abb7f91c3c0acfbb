package console

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/media/mediatest"
)

// fleet is what seedFleet made: a small fleet with a history, as an operator would see it.
type fleet struct {
	// Front is cam-front's newest clip (with a poster); Yard is an MPEG-TS clip of cam-yard.
	Front, Yard string
	// Now is the hour the recording times count back from.
	Now time.Time
	// Hours is when cam-front recorded, hourly, around its gap of GapHours hours that
	// ended GapEnd hours ago.
	GapHours, GapEnd int
	// Viewer and its password: an operator with the viewer role.
	Viewer, ViewerPassword string
}

// seedFleet uploads real clips (ffmpeg) through device kits: cam-front every hour for
// the last 50 hours but for a 10-hour gap, and once a day before, all with posters;
// cam-yard, MPEG-TS clips for the last 6 hours; cam-garage, a file that is not a video,
// and revoked. It adds a viewer.
func seedFleet(t *testing.T, e *env) fleet {
	t.Helper()
	dir := t.TempDir()
	front := mediatest.Make(t, dir, mediatest.Clip{Name: "front.mp4", Width: 640, Height: 360, Seconds: 4, Audio: true, Bitrate: "200k"})
	poster := mediatest.Poster(t, front, 320)
	yard := mediatest.Make(t, dir, mediatest.Clip{Name: "yard.ts", Width: 320, Height: 180, Seconds: 3})
	junk := filepath.Join(dir, "garage.mp4")
	if err := os.WriteFile(junk, clipData(3000, 5), 0o600); err != nil {
		t.Fatal(err)
	}
	f := fleet{GapHours: 10, GapEnd: 14, Viewer: "vera", ViewerPassword: "vera's long password"}
	now := time.Now().UTC().Truncate(time.Hour)
	f.Now = now
	var keys []string
	upload := func(dev, path, poster string, at time.Time) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		name := at.Format("150405") + filepath.Ext(path)
		ev, err := e.kit(dev).Upload(ctx, devicekit.Clip{Path: path, Name: name, Poster: poster, RecordedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, ev.Key)
		return ev.Key
	}
	for h := 50; h >= 1; h-- {
		if h > f.GapEnd && h <= f.GapEnd+f.GapHours {
			continue
		}
		f.Front = upload("cam-front", front, poster, now.Add(-time.Duration(h)*time.Hour+7*time.Minute))
	}
	for d := 20; d >= 3; d-- {
		if d >= 12 && d <= 15 {
			continue // four days without clips
		}
		upload("cam-front", front, poster, now.Add(-time.Duration(d)*24*time.Hour+3*time.Hour))
	}
	for h := 6; h >= 1; h-- {
		f.Yard = upload("cam-yard", yard, "", now.Add(-time.Duration(h)*time.Hour+20*time.Minute))
	}
	upload("cam-garage", junk, "", now.Add(-2*time.Hour))
	for _, k := range keys {
		e.waitIndexed(k)
	}
	a := e.api()
	a.login()
	a.json(http.MethodPut, "/api/operators/"+f.Viewer, map[string]string{"role": "viewer", "password": f.ViewerPassword}, http.StatusOK, nil)
	e.closeKit("cam-garage")
	a.json(http.MethodPost, "/api/devices/cam-garage/revoke", nil, http.StatusOK, nil)
	a.json(http.MethodPut, "/api/retention/rules", map[string]any{"prefix": "", "days": 90}, http.StatusOK, nil)
	a.json(http.MethodPut, "/api/retention/rules", map[string]any{"prefix": e.stack.Prefix() + "cam-yard/", "days": 14}, http.StatusOK, nil)
	var tok newTokenAnswer
	a.json(http.MethodPost, "/api/tokens", map[string]string{"name": "nightly-export", "role": "viewer", "ttl": "720h"}, http.StatusCreated, &tok)
	return f
}

// TestSeedFleet checks the fixture the browser tests and the screenshots use.
func TestSeedFleet(t *testing.T) {
	t.Parallel()
	mediatest.FFmpeg(t)
	e := newEnv(t, envOptions{})
	f := seedFleet(t, e)
	a := e.api()
	a.login()
	var tl Timeline
	a.json(http.MethodGet, "/api/timeline?device=cam-front", nil, http.StatusOK, &tl)
	if len(tl.Slots) != DefaultHours || len(tl.Gaps) != 1 || tl.Gaps[0].Slots != f.GapHours {
		t.Fatalf("cam-front's timeline: %d slots, gaps %+v", len(tl.Slots), tl.Gaps)
	}
	a.json(http.MethodGet, "/api/timeline?device=cam-front&step=day", nil, http.StatusOK, &tl)
	if len(tl.Gaps) != 1 || tl.Gaps[0].Slots != 4 {
		t.Fatalf("cam-front per day: gaps %+v", tl.Gaps)
	}
	var page clipsPage
	a.json(http.MethodGet, "/api/clips?status=poster&limit=500", nil, http.StatusOK, &page)
	for _, c := range page.Clips {
		if c.Device != "cam-front" || !c.Poster {
			t.Fatalf("poster search: %+v", c)
		}
	}
	a.json(http.MethodGet, "/api/clips?status=no-duration", nil, http.StatusOK, &page)
	if len(page.Clips) != 1 || !strings.HasPrefix(page.Clips[0].Key, e.stack.Prefix()+"cam-garage/") {
		t.Fatalf("clips of unknown length: %+v", page.Clips)
	}
	var tot Totals
	a.json(http.MethodGet, "/api/storage", nil, http.StatusOK, &tot)
	if tot.Devices != 3 || tot.Clips != int64(50-f.GapHours+14+6+1) {
		t.Fatalf("storage: %+v", tot)
	}
	t.Logf("%+v", tot)
}
