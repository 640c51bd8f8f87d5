package localpg

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// envChild makes the test binary act as a process that starts a cluster,
// prints its directory and URL, and waits to be killed.
const envChild = "LOCALPG_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		c, err := Start(context.Background())
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(c.Dir())
		fmt.Println(c.URL())
		select {} // until killed
	}
	os.Exit(m.Run())
}

func needBinaries(t *testing.T) {
	t.Helper()
	if _, err := findBinDir(); err != nil {
		t.Skip(err)
	}
}

func query(t *testing.T, url, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func waitGone(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists", dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStartStop starts a cluster, uses it, and checks Stop removes it.
func TestStartStop(t *testing.T) {
	needBinaries(t)
	c, err := Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if got := query(t, c.URL(), `SELECT current_user || ' ' || current_setting('listen_addresses') || '|' || current_setting('fsync')`); got != "postgres |off" {
		t.Errorf("got %q, want the postgres superuser, no TCP, fsync off", got)
	}
	query(t, c.URL(), `SELECT 'created' FROM (SELECT 1) x, LATERAL (SELECT pg_catalog.pg_backend_pid()) y`)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
		t.Errorf("after Stop, %s: %v (want it removed)", c.Dir(), err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	var nilCluster *Cluster
	if err := nilCluster.Stop(); err != nil {
		t.Errorf("nil Stop: %v", err)
	}
}

// TestCleanupWhenOwnerDies kills (SIGKILL) a process that started a
// cluster and checks the watchdog stops the server and removes it.
func TestCleanupWhenOwnerDies(t *testing.T) {
	needBinaries(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	var lines []string
	for len(lines) < 2 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 2 || strings.HasPrefix(lines[0], "error:") {
		t.Fatalf("child: %q", lines)
	}
	dir, url := lines[0], lines[1]
	if got := query(t, url, `SELECT 'up'`); got != "up" {
		t.Fatal(got)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitGone(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, url); err == nil {
		conn.Close(ctx)
		t.Error("server still answers after its owner died")
	}
}

// TestFindFallsBack points the default address at a port where nothing
// listens: Find starts a throwaway cluster and says why.
func TestFindFallsBack(t *testing.T) {
	needBinaries(t)
	t.Setenv(EnvURL, "")
	t.Setenv(EnvPort, "1")
	url, c, err := Find(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if c == nil {
		t.Fatal("Find used a server on port 1?")
	}
	if !strings.Contains(c.Reason, "127.0.0.1:1") {
		t.Errorf("Reason = %q", c.Reason)
	}
	if got := query(t, url, `SELECT 'ok'`); got != "ok" {
		t.Fatal(got)
	}
	for range 2 { // creates, then finds
		dbURL, err := EnsureDatabase(context.Background(), url, "qflow example")
		if err != nil {
			t.Fatal(err)
		}
		if got := query(t, dbURL, `SELECT current_database()`); got != "qflow example" {
			t.Fatalf("connected to %q", got)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u@h:5/postgres?sslmode=disable":     "postgres://u@h:5/other%20db?sslmode=disable",
		"postgres://u@/postgres?host=%2Ftmp%2Fx&port=5": "postgres://u@/other%20db?host=%2Ftmp%2Fx&port=5",
		"host=localhost user=u dbname=postgres":         `host=localhost user=u dbname=postgres dbname='other db'`,
	} {
		got, err := WithDatabase(in, "other db")
		if err != nil || got != want {
			t.Errorf("WithDatabase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestFindExplicitURL: a DATABASE_URL that does not answer is an error,
// never silently replaced.
func TestFindExplicitURL(t *testing.T) {
	t.Setenv(EnvURL, "postgres://nobody@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	_, c, err := Find(context.Background())
	if err == nil || c != nil {
		c.Stop()
		t.Fatalf("Find = %v, %v; want an error", c, err)
	}
	if !strings.Contains(err.Error(), EnvURL) {
		t.Errorf("error %q does not name %s", err, EnvURL)
	}
}

// TestBadPort rejects a malformed QFLOW_PGPORT.
func TestBadPort(t *testing.T) {
	t.Setenv(EnvURL, "")
	t.Setenv(EnvPort, "fivefour")
	if _, _, err := Find(context.Background()); err == nil || !strings.Contains(err.Error(), EnvPort) {
		t.Fatalf("err = %v", err)
	}
}

// TestNoBinaries: with nothing to run, the error says what to install.
func TestNoBinaries(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := searchBinDir([]string{t.TempDir() + "/*/bin"})
	if err == nil {
		t.Fatal("found binaries in an empty directory")
	}
	for _, want := range []string{"initdb", "apt-get install postgresql", EnvBin} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	t.Setenv(EnvBin, t.TempDir())
	if _, err := findBinDir(); err == nil || !strings.Contains(err.Error(), EnvBin) {
		t.Errorf("findBinDir with an empty %s: %v", EnvBin, err)
	}
}

// TestTempBase: as root the cluster goes where its owner can reach.
func TestTempBase(t *testing.T) {
	own, err := clusterOwner()
	if err != nil {
		t.Skip(err)
	}
	private := t.TempDir() // 0700, ours
	t.Setenv("TMPDIR", "/tmp/"+strings.Repeat("x", 80))
	if got := tempBase(own); got != "/tmp" {
		t.Errorf("long TMPDIR: base %q, want /tmp", got)
	}
	if !own.switchTo {
		return
	}
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", private)
	if got := tempBase(own); got != "/tmp" {
		t.Errorf("TMPDIR %s that %s cannot enter: base %q, want /tmp", private, own, got)
	}
}
