package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"gopkg.in/yaml.v3"
)

// Series Prometheus itself makes for every scrape target.
var synthetic = map[string]bool{"up": true, "scrape_duration_seconds": true}

// rulesOf reads a PrometheusRule manifest (or a plain rules file) and returns its groups as
// a Prometheus rules file.
func rulesOf(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc["kind"] == "PrometheusRule" {
		spec, ok := doc["spec"].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: a PrometheusRule without spec", path)
		}
		return yaml.Marshal(spec)
	}
	return b, nil
}

func runCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	dashPath := fs.String("dashboard", "", "Grafana dashboard JSON")
	rulesPath := fs.String("rules", "", "PrometheusRule manifest or rules file")
	metricsPath := fs.String("metrics", "", "a /metrics page of twd (text format)")
	_ = fs.Parse(args)
	if *dashPath == "" || *rulesPath == "" || *metricsPath == "" {
		return fmt.Errorf("check needs --dashboard, --rules and --metrics")
	}
	text, err := os.ReadFile(*metricsPath)
	if err != nil {
		return err
	}
	have := exported(string(text))
	if len(have) == 0 {
		return fmt.Errorf("%s holds no # TYPE line: not a metrics page", *metricsPath)
	}

	var problems []string
	checkExpr := func(where, expr string) {
		names, err := metricNames(substitute(expr, "5m"))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %q: %v", where, expr, err))
			return
		}
		for _, n := range names {
			if !have[n] && !synthetic[n] {
				problems = append(problems, fmt.Sprintf("%s: reads %s, which twd does not export", where, n))
			}
		}
		fmt.Printf("%s\t%s\n", where, strings.Join(names, ","))
	}

	d, err := loadDashboard(*dashPath)
	if err != nil {
		return err
	}
	panels := d.queryPanels()
	if len(panels) == 0 {
		return fmt.Errorf("%s: no panel runs a query", *dashPath)
	}
	for _, p := range panels {
		for i, t := range p.Targets {
			checkExpr(fmt.Sprintf("panel %q target %d", p.Title, i), t.Expr)
		}
	}

	content, err := rulesOf(*rulesPath)
	if err != nil {
		return err
	}
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, promParser, slog.Default())
	for _, e := range errs {
		problems = append(problems, fmt.Sprintf("rules: %v", e))
	}
	if groups != nil {
		alerts := 0
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				name := r.Alert
				if name == "" {
					name = r.Record
				} else {
					alerts++
					for _, k := range []string{"summary", "description"} {
						if r.Annotations[k] == "" {
							problems = append(problems, fmt.Sprintf("alert %s: no %s annotation", name, k))
						}
					}
					if r.Labels["severity"] == "" {
						problems = append(problems, fmt.Sprintf("alert %s: no severity label", name))
					}
				}
				checkExpr("rule "+name, r.Expr)
			}
		}
		if alerts == 0 {
			problems = append(problems, "rules: no alert")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problems:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}
