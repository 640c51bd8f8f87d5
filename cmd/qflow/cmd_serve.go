package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/quantumflow/qflow/dashboard"
)

var cmdServe = &command{
	name:  "serve",
	args:  "[--addr HOST:PORT] [--read-only] [--token-env VAR] [--basic-auth-env VAR] [--prefix /path]",
	short: "serve the web dashboard",
	long: `
Serve runs the web dashboard: an overview of runs, throughput, failure rate,
queues and workers; runs with filters; each run's DAG with its steps'
states updating live; flows with their versions and diagrams; workers.

It listens on 127.0.0.1:8080 by default. To listen on any other interface it
requires credentials, and refuses to start without them: a token (browsers
open /?token=... once, scripts send "Authorization: Bearer ...") read from
the environment variable named by --token-env (default QFLOW_DASHBOARD_TOKEN),
or basic-auth credentials "user:password" read from the variable named by
--basic-auth-env (default QFLOW_DASHBOARD_BASIC_AUTH). Credentials come from
the environment, not flags, so they do not show in process listings; they
are never printed or logged, and neither is the connection string.

Cancel buttons are POST forms with a CSRF token; --read-only hides them and
refuses every state change.`,
	flags: func(fs *flag.FlagSet) {
		dbFlag(fs)
		fs.String("addr", "127.0.0.1:8080", "address to listen on")
		fs.Bool("read-only", false, "hide the cancel buttons and refuse state changes")
		fs.String("token-env", "QFLOW_DASHBOARD_TOKEN", "environment variable holding the access token")
		fs.String("basic-auth-env", "QFLOW_DASHBOARD_BASIC_AUTH", "environment variable holding user:password for basic auth")
		fs.String("prefix", "", "serve under this path prefix (behind a reverse proxy)")
	},
	run: func(e *env, fs *flag.FlagSet, args []string) error {
		if len(args) > 0 {
			return usagef("unexpected argument %q", args[0])
		}
		opts := &dashboard.Options{
			ReadOnly: boolFlag(fs, "read-only"),
			Prefix:   strings.TrimRight(stringFlag(fs, "prefix"), "/"),
			Token:    e.getenv(stringFlag(fs, "token-env")),
			Logger:   slog.New(slog.NewTextHandler(e.stderr, nil)),
		}
		if ba := e.getenv(stringFlag(fs, "basic-auth-env")); ba != "" {
			user, pass, ok := strings.Cut(ba, ":")
			if !ok || user == "" || pass == "" {
				return fmt.Errorf("$%s: want user:password", stringFlag(fs, "basic-auth-env"))
			}
			opts.BasicUser, opts.BasicPassword = user, pass
		}
		addr := stringFlag(fs, "addr")
		if err := dashboard.CheckAddr(addr, opts); err != nil {
			return err
		}
		pool, client, err := e.connect(fs, 8)
		if err != nil {
			return err
		}
		defer pool.Close()
		h, err := dashboard.New(client, opts)
		if err != nil {
			return err
		}
		defer h.Close()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		if opts.Prefix != "" {
			mux.Handle(opts.Prefix+"/", h)
		} else {
			mux.Handle("/", h)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		fmt.Fprintf(e.stderr, "qflow serve: dashboard on http://%s%s/ (interrupt to stop)\n", ln.Addr(), opts.Prefix)
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return err
		case <-e.ctx.Done():
		}
		h.Close() // ends the live event streams so Shutdown need not wait for them
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	},
}
