package main

import (
	"context"
	"flag"
	"fmt"
	"image/color"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// scrape fetches one /metrics page and appends its samples at time ts, labelled like a
// Prometheus scrape (job, instance).
func scrape(ctx context.Context, db *tsdb.DB, url, instance string, ts time.Time) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	app := db.Appender(ctx)
	t := ts.UnixMilli()
	add := func(name string, m *dto.Metric, extra map[string]string, v float64) error {
		b := labels.NewBuilder(labels.EmptyLabels())
		b.Set("__name__", name)
		b.Set("job", "twd")
		b.Set("instance", instance)
		for _, lp := range m.GetLabel() {
			b.Set(lp.GetName(), lp.GetValue())
		}
		for k, v := range extra {
			b.Set(k, v)
		}
		_, err := app.Append(0, b.Labels(), t, v)
		return err
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var err error
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				err = add(name, m, nil, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				err = add(name, m, nil, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				err = add(name, m, nil, m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, bk := range h.GetBucket() {
					le := fmt.Sprint(bk.GetUpperBound())
					if err = add(name+"_bucket", m, map[string]string{"le": le},
						float64(bk.GetCumulativeCount())); err != nil {
						break
					}
				}
				if err == nil {
					err = add(name+"_bucket", m, map[string]string{"le": "+Inf"}, float64(h.GetSampleCount()))
				}
				if err == nil {
					err = add(name+"_sum", m, nil, h.GetSampleSum())
				}
				if err == nil {
					err = add(name+"_count", m, nil, float64(h.GetSampleCount()))
				}
			}
			if err != nil {
				_ = app.Rollback()
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	up := labels.FromStrings("__name__", "up", "instance", instance, "job", "twd")
	if _, err := app.Append(0, up, t, 1); err != nil {
		_ = app.Rollback()
		return err
	}
	return app.Commit()
}

func runRender(args []string) error {
	fs := flag.NewFlagSet("render", flag.ExitOnError)
	dashPath := fs.String("dashboard", "", "Grafana dashboard JSON")
	url := fs.String("url", "", "twd metrics URL")
	scrapes := fs.Int("scrapes", 60, "scrapes to take")
	interval := fs.Duration("interval", time.Second, "time between scrapes")
	out := fs.String("out", "dashboard.png", "PNG to write")
	_ = fs.Parse(args)
	if *dashPath == "" || *url == "" || *scrapes < 3 {
		return fmt.Errorf("render needs --dashboard, --url and --scrapes >= 3")
	}
	d, err := loadDashboard(*dashPath)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tw-promql-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := tsdb.Open(dir, nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		return err
	}
	defer db.Close()

	ctx := context.Background()
	start := time.Now()
	for i := 0; i < *scrapes; i++ {
		if err := scrape(ctx, db, *url, "twd-0", time.Now()); err != nil {
			return err
		}
		if i+1 < *scrapes {
			time.Sleep(*interval)
		}
	}
	end := time.Now()

	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples: 10_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute,
		Parser: promParser,
	})
	// Rates over four scrapes: the window Grafana's $__rate_interval gives a 4x scrape.
	rate := model.Duration(4 * *interval).String()
	var plots []*plot.Plot
	for _, p := range d.queryPanels() {
		pl := plot.New()
		pl.Title.Text = p.Title
		pl.X.Label.Text = "seconds"
		pl.Y.Label.Text = unitLabels[p.FieldConfig.Defaults.Unit]
		pl.Legend.Top = true
		pl.Legend.Left = true
		series := 0
		for _, t := range p.Targets {
			q, err := engine.NewRangeQuery(ctx, db, nil, substitute(t.Expr, rate), start, end, *interval)
			if err != nil {
				return fmt.Errorf("panel %q: %w", p.Title, err)
			}
			res := q.Exec(ctx)
			if res.Err != nil {
				return fmt.Errorf("panel %q: %w", p.Title, res.Err)
			}
			m, err := res.Matrix()
			if err != nil {
				return fmt.Errorf("panel %q: %w", p.Title, err)
			}
			sort.Slice(m, func(i, j int) bool { return labels.Compare(m[i].Metric, m[j].Metric) < 0 })
			for _, s := range m {
				pts := plotter.XYs{}
				for _, f := range s.Floats {
					if math.IsNaN(f.F) || math.IsInf(f.F, 0) {
						continue
					}
					pts = append(pts, plotter.XY{X: float64(f.T-start.UnixMilli()) / 1000, Y: f.F})
				}
				if len(pts) == 0 {
					continue
				}
				line, err := plotter.NewLine(pts)
				if err != nil {
					return err
				}
				line.Color = palette[series%len(palette)]
				line.Width = vg.Points(1.5)
				series++
				pl.Add(line)
				pl.Legend.Add(legend(t.LegendFormat, s.Metric), line)
			}
			q.Close()
		}
		if series == 0 {
			pl.Title.Text += " (no data)"
		}
		plots = append(plots, pl)
	}
	return drawGrid(plots, *out)
}

// Axis labels for Grafana's unit names.
var unitLabels = map[string]string{
	"percentunit": "ratio", "cps": "per second", "Bps": "bytes per second", "s": "seconds",
	"short": "", "bytes": "bytes",
}

var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff},
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
	color.RGBA{0xe3, 0x77, 0xc2, 0xff}, color.RGBA{0x7f, 0x7f, 0x7f, 0xff},
}

// legend expands a Grafana legend format ("{{tier}}") with a series' labels.
func legend(format string, l labels.Labels) string {
	if format == "" {
		return l.String()
	}
	out := format
	l.Range(func(lb labels.Label) {
		out = strings.ReplaceAll(out, "{{"+lb.Name+"}}", lb.Value)
	})
	return out
}

// drawGrid lays the panels out three to a row into one PNG.
func drawGrid(plots []*plot.Plot, path string) error {
	const cols = 3
	rows := (len(plots) + cols - 1) / cols
	img := vgimg.New(vg.Points(float64(cols)*420), vg.Points(float64(rows)*300))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Points(12), PadY: vg.Points(12),
		PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(8)}
	grid := make([][]*plot.Plot, rows)
	for r := range grid {
		grid[r] = make([]*plot.Plot, cols)
		for c := 0; c < cols && r*cols+c < len(plots); c++ {
			grid[r][c] = plots[r*cols+c]
		}
	}
	canvases := plot.Align(grid, tiles, dc)
	for r := range grid {
		for c := range grid[r] {
			if grid[r][c] != nil {
				grid[r][c].Draw(canvases[r][c])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return err
	}
	return f.Close()
}
