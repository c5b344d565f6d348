// tw-promql checks and renders the chart's Grafana dashboard and alert rules with Prometheus'
// own PromQL parser, rule validator and query engine (scripts/promql.sh builds it; the tests
// in tests/chart and scripts/dashboard-shot.sh call it).
//
//	tw-promql check --dashboard D.json --rules R.yaml --metrics M.txt
//	    Parses every panel query and alert expression (Grafana variables replaced by
//	    sample values), validates the rule groups as Prometheus loads them, and fails
//	    when an expression names a metric that M.txt (a /metrics page of a real twd)
//	    does not export. Prints each expression with the metrics it reads.
//	tw-promql render --dashboard D.json --url http://HOST:PORT/metrics --scrapes N
//	    --interval 1s --out shot.png
//	    Scrapes a running twd N times, keeps the samples in an in-memory TSDB, evaluates
//	    every panel's queries over that window with the PromQL engine and draws the panels
//	    into one PNG.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "check":
		err = runCheck(os.Args[2:])
	case "render":
		err = runRender(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tw-promql:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tw-promql check --dashboard D.json --rules R.yaml --metrics M.txt")
	fmt.Fprintln(os.Stderr, "       tw-promql render --dashboard D.json --url URL --scrapes N --interval D --out F.png")
	os.Exit(2)
}
