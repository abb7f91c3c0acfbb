package localcloud

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// nodeClientDir holds the Node.js client: script.js, package.json and package-lock.json
// (node_modules is installed by `npm ci --prefix internal/localcloud/testdata/nodeclient`).
var nodeClientDir = filepath.Join("testdata", "nodeclient")

// TestNodeClient runs Alibaba's Node.js SDKs (ali-oss with V1 and V4 signatures and STS
// tokens, @alicloud/pop-core for AssumeRole) against a localcloud started here: a second
// client, written by neither this project nor the Go SDKs' authors, checks the protocol
// (see testdata/nodeclient/script.js for the operations). Without node or the npm packages
// the test is skipped, and fails instead when CLIPGATE_E2E=1 (as in CI).
func TestNodeClient(t *testing.T) {
	t.Parallel()
	unavailable := func(why string) {
		if os.Getenv("CLIPGATE_E2E") == "1" {
			t.Fatal(why + " (CLIPGATE_E2E=1 requires it)")
		}
		t.Skip(why)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable("node is not installed")
	}
	for _, pkg := range []string{"ali-oss", "@alicloud/pop-core"} {
		if _, err := os.Stat(filepath.Join(nodeClientDir, "node_modules", pkg, "package.json")); err != nil {
			unavailable("the npm package " + pkg + " is not installed: run npm ci --prefix internal/localcloud/testdata/nodeclient")
		}
	}
	const domain = "localcloud.test"
	e := newOSSEnv(t, func(c *Config) { c.EndpointDomain = domain })

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "script.js")
	cmd.Dir = nodeClientDir
	cmd.Env = append(os.Environ(),
		"LC_OSS_ENDPOINT="+e.srv.OSSEndpoint(),
		"LC_STS_ENDPOINT=http://"+e.srv.STSEndpoint(),
		"LC_AK="+e.ak, "LC_SK="+e.sk,
		"LC_ROLE_ARN="+e.srv.RoleARN(testRoleName),
		"LC_BUCKET="+testBucket, "LC_OTHER_BUCKET=other-bucket",
		"LC_REGION="+testRegion, "LC_DOMAIN="+domain,
		// Loopback only, whatever the environment says about proxies.
		"HTTP_PROXY=", "HTTPS_PROXY=", "http_proxy=", "https_proxy=", "NO_PROXY=*", "no_proxy=*",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node script.js: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^PASS (\d+)$`).FindSubmatch(out)
	oks := strings.Count(string(out), "\nok ") + map[bool]int{true: 1}[strings.HasPrefix(string(out), "ok ")]
	if m == nil || string(m[1]) != strconv.Itoa(oks) || oks < 30 {
		t.Fatalf("unexpected output (%d checks passed):\n%s", oks, out)
	}
	t.Logf("%d checks passed through ali-oss and @alicloud/pop-core", oks)
}
