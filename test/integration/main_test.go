package integration

import (
	"os"
	"testing"

	"github.com/aliyun/alibaba-cloud-sdk-go/services/sts"
)

func TestMain(m *testing.M) {
	// alibaba-cloud-sdk-go fills its STS endpoint table lazily, without a lock, at the
	// first client; these tests start stacks (and token workers) in parallel, so the table
	// is filled once here, before any of them.
	_ = sts.GetEndpointMap()
	os.Exit(m.Run())
}
