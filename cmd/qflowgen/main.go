package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/quantumflow/qflow/gen"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is main with its arguments and outputs passed in; it returns the
// exit code: 0 ok, 1 diagnostics (or stale files with -check), 2 usage.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qflowgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check", false, "write nothing; exit 1 naming each generated file that is stale")
	tags := fs.String("tags", "", "comma-separated build tags for loading the packages")
	mermaid := fs.Bool("mermaid", false, "also write qflow_<flow>.mmd, a Mermaid diagram of each flow")
	sql := fs.Bool("sql", false, "also write qflow_<flow>.sql, a migration that registers each flow's shape")
	verbose := fs.Bool("v", false, "name each file written")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: qflowgen [-check] [-mermaid] [-sql] [-tags list] [-v] [packages]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(stderr, "qflowgen:", err)
		return 1
	}
	opts := gen.Options{Tags: *tags, Mermaid: *mermaid, SQL: *sql}
	results, diags := gen.Generate(context.Background(), wd, nil, fs.Args(), opts)
	if len(diags) > 0 {
		gen.FormatDiagnostics(stderr, wd, diags)
		return 1
	}
	code := 0
	for _, r := range results {
		var files []gen.File
		if *check {
			files, err = r.Stale()
		} else {
			files, err = r.Commit()
		}
		if err != nil {
			fmt.Fprintln(stderr, "qflowgen:", err)
			return 1
		}
		for _, f := range files {
			switch {
			case *check:
				fmt.Fprintf(stderr, "qflowgen: %s is stale: rerun go generate\n", rel(wd, f.Path))
				code = 1
			case *verbose:
				fmt.Fprintf(stdout, "wrote %s\n", rel(wd, f.Path))
			}
		}
	}
	return code
}

func rel(wd, path string) string {
	if r, err := filepath.Rel(wd, path); err == nil && filepath.IsLocal(r) {
		return r
	}
	return path
}
