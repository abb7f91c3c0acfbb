// Package opstest scrapes operations endpoints (package ops) in tests.
package opstest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/clipgate/clipgate/internal/ops"
)

// Metrics are the samples of one scrape by series: the metric name and its labels in
// name order, as Series prints them (histograms by their _count and _sum).
type Metrics map[string]float64

// Series is the key of a sample: name{label="value",...}, labels in name order.
func Series(name string, labels ...string) string {
	if len(labels)%2 != 0 {
		panic("opstest: labels come in name, value pairs")
	}
	type kv struct{ k, v string }
	var l []kv
	for i := 0; i < len(labels); i += 2 {
		l = append(l, kv{labels[i], labels[i+1]})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].k < l[j].k })
	if len(l) == 0 {
		return name
	}
	parts := make([]string, len(l))
	for i, p := range l {
		parts[i] = fmt.Sprintf("%s=%q", p.k, p.v)
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// Get returns the value of a series (0 when absent, as a counter not yet incremented).
func (m Metrics) Get(name string, labels ...string) float64 { return m[Series(name, labels...)] }

// Has reports whether the scrape had the series.
func (m Metrics) Has(name string, labels ...string) bool {
	_, ok := m[Series(name, labels...)]
	return ok
}

// Names returns the metric family names of the scrape.
func (m Metrics) Names() map[string]bool {
	out := map[string]bool{}
	for k := range m {
		name, _, _ := strings.Cut(k, "{")
		out[name] = true
	}
	return out
}

// Scrape GETs http://addr/metrics and parses it. It fails the test on any error, and on a
// response that is not the Prometheus text format.
func Scrape(t testing.TB, addr string) Metrics {
	t.Helper()
	body, status := get(t, "http://"+addr+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	m, err := Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return m
}

// Parse parses the Prometheus text format.
func Parse(r io.Reader) (Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := Metrics{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName(), l.GetValue())
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[Series(name, labels...)] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[Series(name, labels...)] = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				out[Series(name, labels...)] = m.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[Series(name+"_count", labels...)] = float64(h.GetSampleCount())
				out[Series(name+"_sum", labels...)] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					out[Series(name+"_bucket", append(labels, "le", model.FloatString(b.GetUpperBound()).String())...)] = float64(b.GetCumulativeCount())
				}
			case dto.MetricType_SUMMARY:
				out[Series(name+"_count", labels...)] = float64(m.GetSummary().GetSampleCount())
				out[Series(name+"_sum", labels...)] = m.GetSummary().GetSampleSum()
			}
		}
	}
	return out, nil
}

// Health GETs http://addr/path (/healthz or /readyz) and decodes the report, strictly.
func Health(t testing.TB, addr, path string) (int, ops.Report) {
	t.Helper()
	body, status := get(t, "http://"+addr+path)
	var rep ops.Report
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("GET %s: %d, body not a report: %v\n%s", path, status, err, body)
	}
	return status, rep
}

func get(t testing.TB, url string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b), resp.StatusCode
}

// Delta returns after minus before for a series.
func Delta(before, after Metrics, name string, labels ...string) float64 {
	return after.Get(name, labels...) - before.Get(name, labels...)
}

// fqNameRE finds the name in a Desc's String (client_golang has no accessor for it).
var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// DescribedNames returns the names of the metrics the collectors describe.
func DescribedNames(cs ...prometheus.Collector) map[string]bool {
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	out := map[string]bool{}
	for d := range ch {
		if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
			out[m[1]] = true
		}
	}
	return out
}
