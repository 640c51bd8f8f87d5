package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/runtime"
)

// env is what a command runs with: its context, outputs and environment.
type env struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	name   string // "qflow runs show", for messages
}

// usageError makes run print the command's usage line and exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// command is one verb (or noun and verb) of qflow.
type command struct {
	name  string // "runs show"
	args  string // "[flags] ID"
	short string
	long  string
	flags func(fs *flag.FlagSet) // defines the command's own flags
	run   func(e *env, fs *flag.FlagSet, args []string) error
}

var commands []*command

func init() {
	commands = []*command{
		cmdMigrate, cmdFlows, cmdFlowsShow, cmdFlowsStats, cmdRuns, cmdRunsShow, cmdCancel, cmdResume, cmdPrune, cmdCheck,
		cmdSchedules, cmdSchedulesSet, cmdSchedulesPause, cmdSchedulesResume, cmdSchedulesDelete,
		cmdWorkers, cmdQueues, cmdEvents, cmdServe,
	}
}

// run is main with its arguments, outputs and environment passed in; it
// returns the exit code: 0 ok, 1 error, 2 usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		mainUsage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return help(args[1:], stdout, stderr)
	}
	// Flags may also come before the command ("qflow --database-url URL
	// runs"): they are parsed with the command's own.
	lead, args := leadingFlags(args)
	if len(args) == 0 {
		mainUsage(stderr)
		return 2
	}
	cmd, rest := lookup(args)
	rest = append(lead, rest...)
	if cmd == nil {
		fmt.Fprintf(stderr, "qflow %s: unknown command\nRun 'qflow help' for usage.\n", strings.Join(args[:min(len(args), 2)], " "))
		return 2
	}
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, getenv: getenv, name: "qflow " + cmd.name}
	fs := flag.NewFlagSet(e.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cmd.flags(fs)
	pos, err := parseInterleaved(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(stdout, cmd)
		return 0
	}
	if err == nil {
		err = cmd.run(e, fs, pos)
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue) || isFlagError(err):
		fmt.Fprintf(stderr, "%s: %v\nusage: qflow %s %s\nRun 'qflow help %s' for details.\n", e.name, err, cmd.name, cmd.args, cmd.name)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", e.name, err)
		return 1
	}
}

// leadingFlags splits off the flags before the command name. Only
// --database-url takes a value as a separate argument; the other flags are
// booleans or written --name=value.
func leadingFlags(args []string) (lead, rest []string) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-" {
		a := args[0]
		lead, args = append(lead, a), args[1:]
		if (a == "--database-url" || a == "-database-url") && len(args) > 0 {
			lead, args = append(lead, args[0]), args[1:]
		}
	}
	return lead, args
}

// flagError marks an error from flag parsing (a usage error).
type flagError struct{ error }

func isFlagError(err error) bool {
	var fe flagError
	return errors.As(err, &fe)
}

// parseInterleaved parses flags placed before, between or after the
// positional arguments ("runs show ID --json").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, flagError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// lookup finds the command named by the first one or two words of args.
func lookup(args []string) (*command, []string) {
	if len(args) >= 2 {
		two := args[0] + " " + args[1]
		switch two {
		case "runs list":
			return cmdRuns, args[2:]
		case "flows list":
			return cmdFlows, args[2:]
		case "schedules list":
			return cmdSchedules, args[2:]
		case "runs cancel":
			return cmdCancel, args[2:]
		case "runs resume":
			return cmdResume, args[2:]
		}
		for _, c := range commands {
			if c.name == two {
				return c, args[2:]
			}
		}
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c, args[1:]
		}
	}
	return nil, nil
}

func mainUsage(w io.Writer) {
	fmt.Fprint(w, `Qflow is the operator's command for QuantumFlow.

Usage:

	qflow <command> [flags] [arguments]

The commands are:

`)
	for _, c := range commands {
		fmt.Fprintf(w, "\t%-14s %s\n", c.name, c.short)
	}
	fmt.Fprint(w, `
The database is named by --database-url or, without it, DATABASE_URL.
Every listing takes --json.

Use "qflow help <command>" for more information about a command.
`)
}

func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		mainUsage(stdout)
		return 0
	}
	cmd, rest := lookup(args)
	if cmd == nil || len(rest) > 0 {
		fmt.Fprintf(stderr, "qflow help %s: unknown help topic. Run 'qflow help'.\n", strings.Join(args, " "))
		return 2
	}
	printCommandHelp(stdout, cmd)
	return 0
}

func printCommandHelp(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "usage: qflow %s %s\n\n%s\n", cmd.name, cmd.args, strings.TrimSpace(cmd.long))
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	cmd.flags(fs)
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// Shared flags ---------------------------------------------------------------

func dbFlag(fs *flag.FlagSet) {
	fs.String("database-url", "", "PostgreSQL connection string (default $DATABASE_URL)")
}

func jsonFlag(fs *flag.FlagSet) {
	fs.Bool("json", false, "print JSON instead of a table")
}

func boolFlag(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Value.String() == "true"
}

func stringFlag(fs *flag.FlagSet, name string) string {
	if f := fs.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// connect opens a pool on the database named by --database-url or
// DATABASE_URL. The connection string is never printed: it may hold a
// password.
func (e *env) connect(fs *flag.FlagSet, maxConns int32) (*pgxpool.Pool, *runtime.Client, error) {
	url := stringFlag(fs, "database-url")
	if url == "" {
		url = e.getenv("DATABASE_URL")
	}
	if url == "" {
		return nil, nil, errors.New("no database: set DATABASE_URL or pass --database-url")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, nil, errors.New("cannot parse the database URL (not shown: it may hold a password)")
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.RuntimeParams["application_name"] = "qflow"
	pool, err := pgxpool.NewWithConfig(e.ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	if err := pool.Ping(e.ctx); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	return pool, runtime.NewClient(pool, &runtime.ClientOptions{Logger: e.logger()}), nil
}

// logger is for the runtime's own lines: warnings and errors only, on
// standard error.
func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// friendly adds what to do to errors an operator can fix.
func friendly(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" && strings.Contains(pe.Message, "qflow.") {
		return fmt.Errorf("%w\n\tthe database has no QuantumFlow schema: run 'qflow migrate'", err)
	}
	return err
}

// Output ---------------------------------------------------------------------

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes aligned columns; call flush when done.
func (e *env) table(header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	if len(header) > 0 {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	return tw
}

func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(header) > 0 {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	return tw
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
