package gen

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
)

// Options tune Generate. The zero value generates qflow_gen.go only.
type Options struct {
	// Tags are build tags for loading, comma-separated as for go build -tags.
	Tags string
	// Mermaid also writes qflow_<flow>.mmd, a Mermaid flowchart, beside
	// qflow_gen.go. The diagram is always part of the generated doc comment.
	Mermaid bool
	// SQL also writes qflow_<flow>.sql, a migration that registers the
	// flow's shape.
	SQL bool
}

// A File is the content qflowgen wants at Path.
type File struct {
	Path    string // absolute
	Content []byte
}

// Result is what Generate produced for one package.
type Result struct {
	PkgPath string
	Files   []File // qflow_gen.go first
}

// Generate loads the packages matching patterns (default ".") from the
// working directory wd with environment env (nil: os.Environ()), checks
// their //qflow: annotations and renders the generated files. It writes
// nothing: see Result.Commit and Result.Stale.
//
// When any package has a problem, Generate returns no results and every
// diagnostic of every package; FormatDiagnostics prints them. Packages
// without annotations produce no result.
func Generate(ctx context.Context, wd string, env []string, patterns []string, opts Options) ([]Result, []Diagnostic) {
	pkgs, diags := load(ctx, wd, env, patterns, opts.Tags)
	if len(diags) > 0 {
		return nil, SortDiagnostics(diags)
	}
	var results []Result
	for _, p := range pkgs {
		m, ds := analyze(p)
		diags = append(diags, ds...)
		if m == nil || len(ds) > 0 || len(diags) > 0 {
			continue
		}
		files, err := emit(m, opts)
		if err != nil {
			diags = append(diags, Diagnostic{Msg: err.Error()})
			continue
		}
		results = append(results, Result{PkgPath: m.Path, Files: files})
	}
	if len(diags) > 0 {
		return nil, SortDiagnostics(diags)
	}
	return results, nil
}

// Stale returns the files of r whose content on disk differs (or which do
// not exist).
func (r Result) Stale() ([]File, error) {
	var out []File
	for _, f := range r.Files {
		old, err := os.ReadFile(f.Path)
		if errors.Is(err, fs.ErrNotExist) || err == nil && !bytes.Equal(old, f.Content) {
			out = append(out, f)
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Commit writes the files of r whose content changed, and returns them.
// Files already up to date are not touched, so their modification times
// (and build caches keyed on them) survive.
func (r Result) Commit() ([]File, error) {
	stale, err := r.Stale()
	if err != nil {
		return nil, err
	}
	for _, f := range stale {
		if err := os.WriteFile(f.Path, f.Content, 0o666); err != nil {
			return nil, err
		}
	}
	return stale, nil
}
