package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"qflowgen": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestNoEngineDependency keeps the generator free of the engine: qflowgen
// needs the flow model (package flowdef), not the database driver, the
// runtime or its migrations.
func TestNoEngineDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/quantumflow/qflow/flowdef") {
		t.Fatalf("go list -deps found no flowdef in:\n%s", out) // the list is not what this test thinks it is
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/jackc/") || d == "github.com/quantumflow/qflow/runtime" ||
			strings.HasPrefix(d, "github.com/quantumflow/qflow/runtime/") || d == "github.com/quantumflow/qflow/migrations" {
			t.Errorf("qflowgen depends on %s", d)
		}
	}
}

// TestScripts runs testdata/scripts/*.txtar at the module root. Each script
// runs in a module (example.com/app, written by Setup unless the archive
// holds a go.mod) that replaces github.com/quantumflow/qflow with this
// checkout, found through $QFLOW_ROOT; go commands use the shared module and
// build caches with GOPROXY=off, so nothing touches the network.
func TestScripts(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	goEnv := map[string]string{}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOROOT"} {
		out, err := exec.Command("go", "env", k).Output()
		if err != nil {
			t.Fatal(err)
		}
		goEnv[k] = strings.TrimSpace(string(out))
	}
	_, requires, _ := strings.Cut(string(mod), "\n")
	gomod := fmt.Sprintf("module example.com/app\n%s\nrequire github.com/quantumflow/qflow v0.0.0-00010101000000-000000000000\n\nreplace github.com/quantumflow/qflow => %s\n", requires, root)

	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join(root, "testdata", "scripts"),
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("QFLOW_UPDATE_SCRIPTS") != "",
		Setup: func(e *testscript.Env) error {
			for k, v := range goEnv {
				e.Setenv(k, v)
			}
			e.Setenv("QFLOW_ROOT", root)
			e.Setenv("GOFLAGS", "-mod=mod")
			e.Setenv("GOPROXY", "off")
			e.Setenv("GOWORK", "off")
			e.Setenv("GOTOOLCHAIN", "local")
			if _, err := os.Stat(filepath.Join(e.WorkDir, "go.mod")); err == nil {
				return nil
			}
			if err := os.WriteFile(filepath.Join(e.WorkDir, "go.mod"), []byte(gomod), 0o666); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(e.WorkDir, "go.sum"), bytes.Clone(sum), 0o666)
		},
	})
}
