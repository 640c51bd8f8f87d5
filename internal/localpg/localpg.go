package localpg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/quantumflow/qflow/migrations"
)

// Environment variables Find and Start read.
const (
	// EnvURL names the server to use; when set, nothing else is tried.
	EnvURL = "DATABASE_URL"
	// EnvPort is the port of the default local server (default 5432). Point
	// it at a port where nothing listens to force a throwaway cluster.
	EnvPort = "QFLOW_PGPORT"
	// EnvBin is the directory holding initdb, pg_ctl and postgres; when set,
	// no other directory is searched.
	EnvBin = "QFLOW_PGBIN"
)

// DefaultPort is the port of the default local server when EnvPort is unset.
const DefaultPort = "5432"

// superuser is the role initdb creates in a throwaway cluster.
const superuser = "postgres"

// Cluster is a throwaway PostgreSQL cluster made by Start. Its zero value
// is not usable; a nil *Cluster is a valid receiver for Stop.
type Cluster struct {
	// Reason says why Find started this cluster instead of using a running
	// server; it is empty when the cluster came from Start.
	Reason string

	dir      string // temporary directory: data/, the socket, postgres.log
	binDir   string
	url      string
	watchdog *exec.Cmd
	pipe     *os.File // write end of the watchdog's stdin; closing it stops the cluster

	once    sync.Once
	stopErr error
}

// URL returns a connection string for the cluster's maintenance database
// (postgres) as its superuser, over the cluster's Unix socket.
func (c *Cluster) URL() string { return c.url }

// Dir returns the cluster's temporary directory (removed by Stop).
func (c *Cluster) Dir() string { return c.dir }

// BinDir returns the directory of the PostgreSQL binaries the cluster runs.
func (c *Cluster) BinDir() string { return c.binDir }

// Stop stops the server and removes the cluster's directory, waiting for
// both. It is safe to call more than once and on a nil *Cluster. A process
// that exits without calling Stop has the same done for it by the
// watchdog, just without waiting.
func (c *Cluster) Stop() error {
	if c == nil {
		return nil
	}
	c.once.Do(func() {
		c.pipe.Close()
		done := make(chan error, 1)
		go func() { done <- c.watchdog.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				c.stopErr = fmt.Errorf("localpg: stop cluster in %s: %w", c.dir, err)
			}
		case <-time.After(60 * time.Second):
			c.stopErr = fmt.Errorf("localpg: stop cluster in %s: timed out", c.dir)
		}
	})
	return c.stopErr
}

// Find returns a connection string for a PostgreSQL server, trying
// DATABASE_URL, then the local server at 127.0.0.1:QFLOW_PGPORT, then a
// throwaway cluster (see the package documentation). The cluster is nil
// unless Find started one; the caller stops it (Stop on nil is a no-op).
func Find(ctx context.Context) (string, *Cluster, error) {
	if u := os.Getenv(EnvURL); u != "" {
		if err := ping(ctx, u); err != nil {
			return "", nil, fmt.Errorf("localpg: %s is set, but that server does not answer: %w", EnvURL, err)
		}
		return u, nil, nil
	}
	port := os.Getenv(EnvPort)
	if port == "" {
		port = DefaultPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", nil, fmt.Errorf("localpg: %s=%q is not a port number", EnvPort, port)
	}
	var errs []string
	for _, name := range localUsers() {
		u := (&url.URL{Scheme: "postgres", User: url.User(name), Host: "127.0.0.1:" + port, Path: "/postgres", RawQuery: "sslmode=disable"}).String()
		err := ping(ctx, u)
		if err == nil {
			return u, nil, nil
		}
		errs = append(errs, fmt.Sprintf("as %s: %v", name, err))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			break // nothing answers: other users will not fare better
		}
	}
	reason := fmt.Sprintf("no usable PostgreSQL server at 127.0.0.1:%s (%s)", port, strings.Join(errs, "; "))
	c, err := Start(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("%s, and no throwaway cluster either: %w\n"+
			"Set %s to a server where you may CREATE DATABASE, start one on 127.0.0.1:%s, or install PostgreSQL", reason, err, EnvURL, port)
	}
	c.Reason = reason
	return c.URL(), c, nil
}

// localUsers are the roles tried on the default local server, in order.
func localUsers() []string {
	names := []string{}
	if u, err := user.Current(); err == nil && u.Username != "" && !strings.ContainsAny(u.Username, `\/@: `) {
		names = append(names, u.Username)
	}
	for _, n := range []string{"root", "postgres"} {
		if len(names) == 0 || names[0] != n {
			names = append(names, n)
		}
	}
	return names
}

func ping(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	return conn.Close(context.Background())
}

// Start creates and starts a throwaway cluster (see the package
// documentation). Call Stop when done; if the process exits first, the
// cluster is removed anyway.
func Start(ctx context.Context) (*Cluster, error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	own, err := clusterOwner()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tempBase(own), "qflow-pg-")
	if err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	if err := own.chown(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := own.command(ctx, dir, filepath.Join(bin, "initdb"),
		"-D", data, "-U", superuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("localpg: initdb (as %s) failed: %v\n%s", own, err, strings.TrimSpace(string(out)))
	}
	// A private socket directory: no TCP, no port to collide on. Durability
	// is pointless for a cluster that is deleted on exit.
	conf := fmt.Sprintf("\n# localpg: throwaway cluster\nlisten_addresses = ''\nport = %s\nunix_socket_directories = '%s'\n"+
		"fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n",
		DefaultPort, strings.ReplaceAll(dir, "'", "''"))
	if err := appendFile(filepath.Join(data, "postgresql.conf"), conf); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("localpg: %w", err)
	}

	c := &Cluster{dir: dir, binDir: bin}
	// The watchdog first, so that from here on any exit cleans up.
	r, w, err := os.Pipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("localpg: %w", err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		sh = "/bin/sh"
	}
	c.watchdog = own.command(context.Background(), dir, sh, "-c", watchdogScript, "localpg-watchdog",
		filepath.Join(bin, "pg_ctl"), data, dir)
	c.watchdog.Stdin = r
	if err := c.watchdog.Start(); err != nil {
		r.Close()
		w.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("localpg: start watchdog: %w", err)
	}
	r.Close()
	c.pipe = w

	logFile := filepath.Join(dir, "postgres.log")
	start := own.command(ctx, dir, filepath.Join(bin, "pg_ctl"), "start", "-w", "-t", "60", "-D", data, "-l", logFile)
	if out, err := start.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logFile)
		c.Stop()
		return nil, fmt.Errorf("localpg: pg_ctl start (as %s) failed: %v\n%s\n%s", own, err,
			strings.TrimSpace(string(out)), strings.TrimSpace(string(log)))
	}
	c.url = (&url.URL{Scheme: "postgres", User: url.User(superuser), Path: "/postgres",
		RawQuery: url.Values{"host": {dir}, "port": {DefaultPort}, "sslmode": {"disable"}}.Encode()}).String()
	if err := ping(ctx, c.url); err != nil {
		c.Stop()
		return nil, fmt.Errorf("localpg: cluster started but does not answer: %w", err)
	}
	return c, nil
}

// tempBase is the directory for clusters: the system's temporary
// directory, unless the socket path there would be too long for PostgreSQL
// (about 100 bytes) or the cluster's owner cannot reach it; then /tmp.
func tempBase(own owner) string {
	base := os.TempDir()
	if len(base) > 64 || !own.canReach(base) {
		return "/tmp"
	}
	return base
}

// watchdogScript waits for its standard input to close (the parent closed
// the pipe or exited), then stops the server and removes the directory.
// Arguments: pg_ctl, the data directory, the cluster directory.
const watchdogScript = `trap '' HUP INT
cat >/dev/null
"$1" stop -D "$2" -m immediate -w -t 30 >/dev/null 2>&1
rm -rf "$3"
`

func appendFile(name, s string) error {
	f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// installHint says what to install to get the PostgreSQL server binaries.
const installHint = "install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; " +
	"Fedora/RHEL: dnf install postgresql-server; macOS: brew install postgresql), " +
	"or set " + EnvBin + " to the directory holding initdb, pg_ctl and postgres"

// binGlobs are searched, newest version first, when PATH has no initdb.
var binGlobs = []string{
	"/usr/lib/postgresql/*/bin",
	"/usr/pgsql-*/bin",
	"/usr/local/pgsql/bin",
	"/opt/homebrew/opt/postgresql*/bin",
	"/usr/local/opt/postgresql*/bin",
	"/opt/homebrew/bin",
	"/usr/local/bin",
}

func findBinDir() (string, error) {
	if d := os.Getenv(EnvBin); d != "" {
		if !hasServerBinaries(d) {
			return "", fmt.Errorf("localpg: %s=%s does not hold initdb, pg_ctl and postgres", EnvBin, d)
		}
		return d, nil
	}
	return searchBinDir(binGlobs)
}

func searchBinDir(globs []string) (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if d := filepath.Dir(p); hasServerBinaries(d) {
			return d, nil
		}
	}
	var dirs []string
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		dirs = append(dirs, m...)
	}
	sort.SliceStable(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if hasServerBinaries(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("localpg: no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or under %s: %s",
		strings.Join(globs, ", "), installHint)
}

var versionRE = regexp.MustCompile(`\d+(\.\d+)?`)

func versionOf(dir string) float64 {
	v, _ := strconv.ParseFloat(versionRE.FindString(dir), 64)
	return v
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// childEnv is the environment of the PostgreSQL commands: ours without
// libpq's PG* variables, which could point them elsewhere.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}

// WithDatabase returns the connection string url with its database
// replaced by name. It handles URLs and keyword/value strings.
func WithDatabase(u, name string) (string, error) {
	if !strings.Contains(u, "://") {
		return u + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name) + "'", nil // the last setting wins
	}
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("localpg: parse connection URL: %w", err)
	}
	p.Path = "/" + name
	p.RawPath = ""
	return p.String(), nil
}

// EnsureDatabase creates database name on the server of url unless it
// exists, and returns a connection string for it.
func EnsureDatabase(ctx context.Context, u, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", fmt.Errorf("localpg: look up database %s: %w", name, err)
	}
	if !exists {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		var pgErr *pgconn.PgError
		if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") { // 42P04: created meanwhile
			return "", fmt.Errorf("localpg: create database %s: %w", name, err)
		}
	}
	return WithDatabase(u, name)
}

// ForProgram is how the example programs find their database: Find, then,
// when a throwaway cluster was started, a line on announce saying so, and,
// unless DATABASE_URL named the server, database name on it (created when
// missing) so the program's tables stay out of the maintenance database.
// stop stops the cluster, if any; call it when the program ends.
func ForProgram(ctx context.Context, name string, announce io.Writer) (url string, stop func(), err error) {
	url, cluster, err := Find(ctx)
	if err != nil {
		return "", nil, err
	}
	stop = func() { cluster.Stop() }
	if cluster != nil {
		fmt.Fprintf(announce, "%s.\nStarted a throwaway PostgreSQL cluster in %s (removed on exit).\n", cluster.Reason, cluster.Dir())
	}
	if os.Getenv(EnvURL) == "" {
		admin := url
		if url, err = EnsureDatabase(ctx, admin, name); err != nil {
			stop()
			return "", nil, err
		}
		if err := renewIfStale(ctx, admin, url, name, announce); err != nil {
			stop()
			return "", nil, err
		}
	}
	return url, stop, nil
}

// renewIfStale drops and recreates the program's own database when an
// earlier pre-release build migrated it (migrations.Stale): its runs are
// example runs, and the current engine cannot use them.
func renewIfStale(ctx context.Context, adminURL, u, name string, announce io.Writer) error {
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	stale, err := migrations.Stale(ctx, conn)
	conn.Close(context.Background())
	if err != nil || !stale {
		return err
	}
	fmt.Fprintf(announce, "Database %s held the schema of an earlier pre-release build; recreating it.\n", name)
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("localpg: drop stale database %s: %w", name, err)
	}
	_, err = EnsureDatabase(ctx, adminURL, name)
	return err
}
