// Package localpg finds a PostgreSQL server for the examples and the tests,
// starting a throwaway one from the locally installed binaries when none is
// running.
//
// # Finding a server
//
// Find returns, in order of preference:
//
//   - the server named by DATABASE_URL, when it is set (and fails when that
//     server does not answer: an explicit setting is never second-guessed);
//   - the local server at 127.0.0.1 on port QFLOW_PGPORT (default 5432), as
//     the current OS user, root or postgres with trust authentication;
//   - a throwaway cluster made by Start.
//
// # Throwaway clusters
//
// Start runs initdb in a new temporary directory and starts postgres on a
// Unix socket in that directory, so it never collides with another server
// or another throwaway cluster. The binaries come from PATH or from the
// newest /usr/lib/postgresql/*/bin (Debian, Ubuntu), /usr/pgsql-*/bin (RHEL)
// or the Homebrew and source-install locations. PostgreSQL refuses to run as
// root: as root, the cluster belongs to the "postgres" user (or, without one,
// "nobody") and its processes run as that user.
//
// A small watchdog process (sh) holds the read end of a pipe whose write end
// only this process holds. When the pipe closes, because Stop was called or
// because this process exited in any way (even killed), the watchdog stops
// the server and removes the directory. So a test binary that starts a
// cluster and never calls Stop still leaves nothing behind.
//
// When neither a server nor the binaries are there, the error says what to
// install or set.
package localpg
