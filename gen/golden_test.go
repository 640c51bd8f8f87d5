package gen_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/quantumflow/qflow/gen"
)

var update = flag.Bool("update", false, "rewrite the want/ files of gen/testdata/<Case> (after compiling the generated code)")

// TestGolden runs qflowgen on every gen/testdata/<Case> package and compares
// its output with <Case>/want/: the generated files, or errors.txt holding
// the diagnostics. Every generated package is then compiled and vetted.
//
// A case may hold a file named "flags" listing options: mermaid, sql.
func TestGolden(t *testing.T) {
	root := moduleRoot(t)
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	writeTempModule(t, tmp, "example.com/golden", root)
	env := testEnv()

	type outcome struct {
		name  string
		files []gen.File // generated, rebased into the temp module
	}
	var generated []outcome
	var cases []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), "_") && e.Name() != "fuzz" {
			cases = append(cases, e.Name())
		}
	}
	results := make([]outcome, len(cases))
	t.Run("generate", func(t *testing.T) {
		for i, name := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				src := filepath.Join("testdata", name)
				dir := filepath.Join(tmp, name)
				copyGoFiles(t, src, dir)
				var opts gen.Options
				if b, err := os.ReadFile(filepath.Join(src, "flags")); err == nil {
					for _, f := range strings.Fields(string(b)) {
						switch f {
						case "mermaid":
							opts.Mermaid = true
						case "sql":
							opts.SQL = true
						default:
							t.Fatalf("unknown flag %q in %s/flags", f, src)
						}
					}
				}
				res, diags := gen.Generate(context.Background(), dir, env, []string{"."}, opts)
				want := filepath.Join(src, "want")
				got := map[string][]byte{}
				if len(diags) > 0 {
					var b bytes.Buffer
					gen.FormatDiagnostics(&b, dir, diags)
					got["errors.txt"] = b.Bytes()
				}
				var files []gen.File
				for _, r := range res {
					for _, f := range r.Files {
						rel, err := filepath.Rel(dir, f.Path)
						if err != nil || !filepath.IsLocal(rel) {
							t.Fatalf("generated file %s outside the package", f.Path)
						}
						got[rel] = f.Content
						files = append(files, f)
					}
				}
				results[i] = outcome{name: name, files: files}
				if *update {
					return // written below, once the code compiles
				}
				compareDir(t, want, got)
			})
		}
	})
	for _, r := range results {
		if len(r.files) > 0 {
			generated = append(generated, r)
		}
	}
	if t.Failed() && !*update {
		return
	}

	// Compile and vet every generated package at once.
	for _, o := range generated {
		for _, f := range o.files {
			if err := os.WriteFile(f.Path, f.Content, 0o666); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(generated) > 0 {
		args := []string{"vet"}
		for _, o := range generated {
			args = append(args, "./"+o.name)
		}
		cmd := exec.Command("go", args...) // only these: a diagnostic case need not compile
		cmd.Dir = tmp
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("generated code does not compile or vet:\n%s", out)
		}
	}

	if *update {
		for i, name := range cases {
			want := filepath.Join("testdata", name, "want")
			if err := os.RemoveAll(want); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(want, 0o777); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(tmp, name)
			for _, f := range results[i].files {
				rel, _ := filepath.Rel(dir, f.Path)
				writeFile(t, filepath.Join(want, rel), f.Content)
			}
			if len(results[i].files) == 0 {
				// Regenerate the diagnostics: cheaper to keep than to thread through.
				_, diags := gen.Generate(context.Background(), dir, env, []string{"."}, gen.Options{})
				var b bytes.Buffer
				gen.FormatDiagnostics(&b, dir, diags)
				writeFile(t, filepath.Join(want, "errors.txt"), b.Bytes())
			}
		}
	}
}

// compareDir compares got (file name to content) with the files in dir.
func compareDir(t *testing.T, dir string, got map[string][]byte) {
	t.Helper()
	want := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		want[e.Name()] = b
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		if diff := cmp.Diff(string(want[n]), string(got[n])); diff != "" {
			t.Errorf("%s/%s mismatch (-want +got; go test -update refreshes):\n%s", dir, n, diff)
		}
	}
}

// moduleRoot finds the directory of this module's go.mod above the test's
// working directory.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/quantumflow/qflow\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("cannot find the qflow module root above the working directory")
		}
		dir = parent
	}
}

// writeTempModule writes a go.mod and go.sum in dir for a module that uses
// this checkout of qflow (through a replace directive) with the same
// dependency versions, so that builds need no network.
func writeTempModule(t testing.TB, dir, path, root string) {
	t.Helper()
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(mod), "\n")
	gomod := fmt.Sprintf("module %s\n%s\nrequire github.com/quantumflow/qflow v0.0.0-00010101000000-000000000000\n\nreplace github.com/quantumflow/qflow => %s\n", path, rest, root)
	writeFile(t, filepath.Join(dir, "go.mod"), []byte(gomod))
	writeFile(t, filepath.Join(dir, "go.sum"), sum)
}

// testEnv is the environment for go commands run by the tests: no network,
// no workspace, module requirements completed from the module cache.
func testEnv() []string {
	return append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
}

func copyGoFiles(t testing.TB, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(to, e.Name()), b)
	}
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o666); err != nil {
		t.Fatal(err)
	}
}
