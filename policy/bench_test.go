package policy

import "testing"

func BenchmarkDevicePolicy(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DevicePolicy("clips", "v1/", "cam-000123", "wa"); err != nil {
			b.Fatal(err)
		}
	}
}
