// Qflowgen generates typed Go glue for QuantumFlow flows declared with
// //qflow: comment directives.
//
// Put a go:generate line in the package that declares the flow:
//
//	//go:generate go run github.com/quantumflow/qflow/cmd/qflowgen
//
// and run "go generate". Qflowgen loads the package (or the packages named
// on the command line; default "."), checks the flows its directives
// describe, reports every problem at once, and writes qflow_gen.go beside
// the package's sources. It writes nothing when there is any problem, and
// rewrites a file only when its bytes change.
//
// # Declaring a flow
//
//	package etl
//
//	//go:generate go run github.com/quantumflow/qflow/cmd/qflowgen
//
//	//qflow:flow etl retries=3 backoff=1s timeout=60s
//	type Input struct{ Source string }
//
//	//qflow:step
//	func Extract(ctx context.Context, in Input) ([]Record, error)
//
//	//qflow:step depends=Extract map
//	func Clean(ctx context.Context, r Record) (Row, error)
//
//	//qflow:step depends=Extract
//	func Count(ctx context.Context, recs []Record) (int, error)
//
//	//qflow:step depends=Clean,Count retries=5 timeout=30s
//	func Load(ctx context.Context, in Input, rows []Row, n int) (Summary, error)
//
// A directive is a line of a declaration's doc comment that starts with
// //qflow: (no space after the slashes, like //go:generate). Words are
// separated by spaces; options are key=value. A comment that looks meant
// as one but is not read as one, such as "// qflow:step" or "// QFlow:step",
// is a diagnostic (as go vet reports misspelled build tags), and so is an
// unknown directive name such as //qflow:stpe, with the likely meaning.
//
// # //qflow:flow NAME [retries=N | attempts=N] [backoff=DUR] [timeout=DUR] [idempotent] [concurrency=N] [cron="SPEC" [tz=ZONE] [missed=latest|all]]
//
// On a type declaration: declares flow NAME whose input is that type. NAME
// is the flow's slug (a lowercase letter, then lowercase letters, digits or
// underscores, at most 40 in all); the generated Go names use its exported
// form (etl_v2 gives EtlV2Flow, RunEtlV2, ...). A package may declare
// several flows. Options set the defaults of every step of the flow:
//
//	retries=N    how many times a failed task is tried again after its first
//	             attempt, 0..999: retries=3 allows 4 attempts in all
//	             (runtime StepOptions.Retries; retries=0 is runtime.NoRetries)
//	attempts=N   the same as attempts in all, counting the first, 1..1000:
//	             attempts=4 is retries=3 (give one of the two)
//	backoff=DUR  delay before the first retry, doubled for each later one (BaseDelay)
//	timeout=DUR  a handler's context is cancelled after DUR (Timeout)
//	idempotent   every step may safely run twice at once (Idempotent): workers
//	             optimising at the aggressive level hedge stragglers
//	             (runtime.WorkerOptions.Optimize)
//	concurrency=N
//	             at most N tasks of the flow, of all its steps together, run at
//	             once across every worker process, 1..10000 (Options.Concurrency
//	             of the FlowDef; not a default for the steps, which may have
//	             their own); see "Limits across workers" below
//
// DUR is a Go duration: 500ms, 30s, 5m, 1h30m. An option left out takes the
// runtime's default (2 retries, so 3 attempts; 1s; 60s).
//
// A schedule starts a run of the flow, with the zero input, at every tick:
//
//	cron="SPEC"     five crontab fields ("0 * * * *"), six with seconds first
//	                ("*/10 * * * * *"), or @hourly, @daily, @weekly, @monthly,
//	                @yearly, "@every 90s" (quotes are needed for spaces)
//	tz=ZONE         the IANA time zone the spec is read in (Europe/Berlin);
//	                UTC when left out
//	missed=POLICY   ticks missed while no worker ran: latest (the default)
//	                runs the latest once, all runs every one
//
// A spec that does not parse or a zone that does not exist is a diagnostic
// at the value. The generated <Flow>Schedule holds the schedule, and
// Register<Flow> declares it (runtime.Worker.Schedule), named after the
// flow: a worker that registers the flow creates the schedule when it
// starts, or updates it to the annotation. runtime.Client.Schedule gives a
// flow other schedules with other inputs; see the runtime documentation,
// "Cron schedules", for pausing, resuming, listing and deleting them.
//
// Before this release retries=N meant N attempts in all. When the
// qflow_gen.go being replaced was written under that meaning, qflowgen
// reports each retries=N instead of silently adding an attempt:
//
//	flow.go:9:16: retries=3 now means 3 retries after the first attempt (4 attempts in all); qflow_gen.go was generated when it meant 3 attempts in all: write attempts=3 to keep that, or attempts=4 to take the new meaning
//
// Once regenerated, retries=N may be written again with its new meaning.
//
// # //qflow:step [depends=A,B] [map] [name=SLUG] [flow=NAME] [when=FUNC] [optional] [retries=N | attempts=N] [backoff=DUR] [timeout=DUR] [delay=DUR] [priority=N] [idempotent] [concurrency=N] [rate=N/UNIT [burst=N]] [key=FIELD] [wait=SIGNAL [wait_timeout=DUR]] [subflow=FLOW]
//
// On a package-level function (not a method, not generic; it may be
// unexported, as the generated code lives in the same package): makes it a
// step.
//
//	depends=A,B  the steps whose outputs this step takes, by Go function name, in parameter order
//	map          run the step once per element of its only dependency's output (a slice),
//	             or, with no dependency, of the flow input (which must then be a slice)
//	name=SLUG    the step's slug; default: the function name in snake_case (LoadRows: load_rows)
//	flow=NAME    the step's flow; required when the package declares more than one flow
//	when=FUNC    a condition: a function of the package taking the step's parameters
//	             after ctx and returning bool; when it returns false the step is
//	             skipped (see "Conditional and optional steps"). Not on a map step
//	optional     when the step fails after its retries, the run goes on as if it had
//	             been skipped, and the failure is kept on the step
//	retries=N, attempts=N, backoff=DUR, timeout=DUR
//	             override the flow's options for this step
//	delay=DUR    hold the step's tasks back for DUR after it becomes ready (StartDelay)
//	priority=N   the step's claim priority, a whole number that fits in 32 bits
//	             (default 0; StepOptions.Priority): among ready tasks of the
//	             flow, workers claim the highest claim priority first, where a
//	             task's claim priority is its step's plus its run's
//	             (runtime.StartOptions.Priority). It is not part of the shape
//	             hash: changing it keeps the flow version and takes effect for
//	             tasks queued once the new definition is stored
//	idempotent   the step may safely run twice at once for the same task
//	             (StepOptions.Idempotent): a worker optimising at the
//	             aggressive level (runtime.WorkerOptions.Optimize) starts a
//	             second copy of a straggler and takes the first success. Not
//	             part of the shape hash
//	concurrency=N
//	             at most N of the step's tasks run at once across every worker
//	             process, 1..10000 (StepOptions.Concurrency)
//	rate=N/UNIT  the step's tasks start at most N per UNIT across every worker:
//	             s, m or h (rate=50/s, rate=600/m, rate=10/h), or a Go duration
//	             (rate=5/10s) (StepOptions.Rate)
//	burst=N      with rate=: at most N starts at once after a quiet spell
//	             (default 1: evenly spaced); in any stretch of time d at most
//	             N + d×rate tasks start
//	key=FIELD    with concurrency= or rate=: the limits hold per value of FIELD
//	             of the step's input (StepOptions.Key): see below
//	wait=SIGNAL  the step starts only once its run has received signal SIGNAL
//	             (StepDef.Wait; runtime.Client.Signal), a name with the rules
//	             of a slug; its last parameter is the signal's payload, of
//	             any JSON type, and the generated Signal<Flow><Signal>(ctx, c,
//	             runID, payload) sends it. Not on a map step. Steps of a flow
//	             that wait for the same signal take the same payload type
//	wait_timeout=DUR
//	             with wait=: when the signal has not come DUR after the step
//	             began to wait, the run fails, or with optional the step is
//	             skipped (StepDef.WaitTimeout). timeout= stays the
//	             handler's own timeout, counted from when its task starts
//	subflow=FLOW the step runs flow FLOW, another //qflow:flow of this
//	             package, as a child run and returns its output: the
//	             generated handler is runtime.Subflow("FLOW", nil), and the
//	             function is a typed declaration whose body is never called
//	             (it may be panic("subflow") or return zero values). It takes
//	             ctx and one parameter, of exactly FLOW's input type: the flow
//	             input (no dependency), its one dependency's output, or, for
//	             a map step, the element. It returns (<Flow>Output, error),
//	             FLOW's generated output type (the name may be undefined
//	             until the first generation), or a struct with the same JSON
//	             fields. Steps that take its output may name <Flow>Output
//	             too (also as *<Flow>Output or []<Flow>Output). Not with
//	             wait=; not naming the step's own flow, nor a flow that
//	             runs it in turn (a cycle of subflows).
//	             Register FLOW on some worker too (Register<Flow>): the
//	             parent's Register does not, nor does Run<Flow>Local
//
// The slug "run" is reserved (the flow input travels under that key).
//
// # Limits across workers
//
// concurrency=, rate= and key= are enforced by the engine when workers
// claim tasks, in the database, so they hold however many worker processes
// on however many machines run the flow. A task held back is not claimed:
// it costs no attempt, and it starts as soon as its limit allows (workers
// are told when a rate's next start comes, and are woken when a place
// frees). Like priority=, limits are not part of the shape hash: changing
// them keeps the flow version, and storing the new definition applies them
// to the version at once, queued tasks included.
//
// key=FIELD names a field of the step's first parameter after ctx: the flow
// input, a dependency's output, or a map step's element. A path of fields
// reaches into nested structs (key=Customer.ID); a path may start with a
// parameter's name to use another parameter (key=in.Region, key=owner.Email
// with a parameter named owner), and a map step over strings may name its
// parameter alone (key=id: the element itself). Each field must be one
// encoding/json writes (exported, not tagged json:"-", inside structs
// without their own MarshalJSON or MarshalText; embedded structs are
// flattened as encoding/json does), and the last must be a string (or a
// pointer to one); JSON names from struct tags are honoured. qflowgen turns
// the name into the JSON path the engine reads in each task's input
// (StepOptions.Key: ".run.region", ".id"), so methods cannot be keys: the
// engine computes a task's key in SQL when it queues the task, where no Go
// code runs. Each problem is a diagnostic at the key:
//
//	flow.go:24:32: key=CustomerID: Order has no field CustomerID
//	flow.go:27:32: key=Id: Order has no field Id (did you mean ID?)
//	flow.go:30:32: key=N names a value of type int; a key must be a string
//	flow.go:33:32: key=Key: Key is a method of Order, and key= names a field: the engine reads keys from the task's JSON input, where methods are not
//
// as are concurrency=0 ("want a whole number of tasks from 1 to 10000"),
// rate=fast ("want N/s, N/m, N/h or N/DURATION"), burst= without rate=,
// and key= without concurrency= or rate=. A flow takes concurrency= only.
//
// Parameters, in order:
//
//   - ctx context.Context;
//   - optionally the flow input, of exactly the flow's input type (not for map steps);
//   - one parameter per dependency that has an output, in depends= order, of
//     exactly the type that dependency returns, or []T when the dependency
//     is a map step returning T (its outputs in element order); or a
//     pointer to that type (the type itself when it is a pointer) to take
//     the dependency's skip (see below);
//   - with wait=, last, the signal's payload.
//
// A map step takes exactly ctx and one element: T, where the slice it maps
// over is []T. Results are (T, error), or error alone for a step without
// output (such a step may be a dependency, for ordering, but passes no
// parameter). Inputs and outputs travel as JSON, so their types must
// survive encoding/json: no channels, functions, complex numbers, non-empty
// interfaces, maps with unsupported key types, or structs without exported
// fields (unless the type implements json.Marshaler or
// encoding.TextMarshaler). An unexported field of a struct declared in the
// package would lose its value between steps, so it is a diagnostic at the
// field; tag it `json:"-"` to say it is left out on purpose:
//
//	type Order struct {
//		ID    string
//		cache map[string]int `json:"-"` // rebuilt by each step, never sent
//	}
//
// # Conditional and optional steps
//
//	func IsSpam(m Mail, v Verdict) bool { return v.Spam }
//
//	//qflow:step depends=Classify when=IsSpam
//	func Quarantine(ctx context.Context, m Mail, v Verdict) (string, error)
//
//	//qflow:step depends=Quarantine
//	func Alert(ctx context.Context, ticket string) error
//
//	//qflow:step depends=Classify optional
//	func Enrich(ctx context.Context, v Verdict) (Extra, error)
//
//	//qflow:step depends=Classify,Quarantine,Enrich
//	func Report(ctx context.Context, v Verdict, ticket *string, extra *Extra) (string, error)
//
// A step with when=FUNC is skipped when FUNC returns false: the worker
// calls FUNC with the step's inputs before the handler, which then never
// runs, and the step has no output. FUNC is a plain function, not a
// method, with exactly the step's parameters after ctx (same types, same
// order, no context) and one bool result; anything else is a diagnostic at
// FUNC's declaration (or at the parameter or result at fault), with a note
// at the when= that names it. A step with optional that fails after its
// retries (or with a permanent error) is skipped too, with its failure
// kept on the step and its task; the run goes on.
//
// A step that depends on a step that may be skipped (a conditional or
// optional step, or one skipped with its own dependencies) is skipped with
// it, unless it takes that dependency as a pointer: *T for a dependency
// returning T (or T itself when T is a pointer), nil when the dependency
// was skipped. Above, Alert is skipped with Quarantine, and Report always
// runs, with nil for what was skipped. The generator works out which steps
// may be skipped: the pointers it finds are the steps' AcceptsSkipped in
// <Flow>Flow, and a leaf step that may be skipped is a pointer in
// <Flow>Output (nil when skipped: the run's output has no key for it). A
// map step cannot take a skip (it runs once per element of its
// dependency's output), so it is skipped with its dependency; a pointer
// element is a diagnostic saying so. A dependency without output passes no
// parameter, so its dependents are skipped with it. A run whose steps all
// completed or were skipped completes; run views show skipped steps with
// status "skipped" (runtime.StatusSkipped).
//
// # What is generated
//
// One qflow_gen.go per package, starting with "// Code generated by
// qflowgen. DO NOT EDIT.", holding for each flow, with <Flow> the exported
// form of its name:
//
//   - <Flow>Flow, the runtime.FlowDef, whose doc comment holds a Mermaid
//     diagram of the flow, and <Flow>ShapeHash, its shape hash computed at
//     generate time;
//   - <Flow>Output, the run's output: one field per leaf step with an output
//     (a pointer, nil when skipped, for a leaf that may be skipped);
//   - for each conditional step, qflow<Step>When, its condition evaluated
//     on the task's input (runtime.WhenFunc), which <Flow>Flow sets as the
//     step's StepDef.When;
//   - Register<Flow>(w *runtime.Worker) error, registering the step handlers
//     (each decodes its task's input, calls the step and encodes its output;
//     an input that does not decode fails the task permanently);
//   - Start<Flow>(ctx, c, in, opts...) and Start<Flow>Tx(ctx, c, tx, in,
//     opts...), which start a run (the latter inside the caller's pgx
//     transaction) and return a *<Flow>Run;
//   - Run<Flow>(ctx, c, in, opts...), start and wait, and
//     Run<Flow>Local(ctx, c, in, opts...), which runs the flow with
//     in-process workers (runtime.Client.RunLocalWith);
//   - opts is a trailing opts ...*runtime.StartOptions on all four: leave it
//     out (the call is as short as without options) or give one, passed to
//     the runtime unchanged (timeout, retries, sequential, events, and any
//     field StartOptions gains later, without regenerating); more than one
//     is an error;
//   - <Flow>Run, a handle: Wait(ctx) returns <Flow>Output, Cancel(ctx)
//     cancels the run, View(ctx) reads its typed view, and ID is its id;
//     <Flow>RunByID(ctx, c, id) re-attaches to a run by id from any process
//     (an id that is no run of the flow fails with runtime.ErrRunNotFound);
//   - Get<Flow>Run(ctx, c, id) returning *<Flow>RunView: the run's state
//     (runtime.RunInfo), its typed Input, its Output (nil until it
//     completed) and Steps, a <Flow>RunSteps with one field per step:
//     runtime.StepView[T] (status, task and attempt counts, error, times,
//     and Output of the step function's result type T, []T for a map step)
//     or runtime.StepInfo for a step without output. A value that does not
//     decode is an error naming the step and the Go type;
//   - compile-time guards: when a step's signature no longer matches the
//     generated code, the build fails naming _qflowRerunGoGenerate_<Step>:
//     rerun go generate.
//
// # Diagnostics
//
// Problems are printed to standard error, sorted, one per line as
// "file:line:col: message" with paths relative to the working directory and
// the column at the word at fault; explanations follow on lines indented by
// a tab (the hops of a dependency cycle, where the other side of a type
// mismatch is declared). After 10 problems qflowgen prints "too many errors"
// and stops. Names that are probably typos get a hint: a depends= name one
// or two edits from a step's function name ends in "(did you mean
// Transform?)".
//
// # Flags
//
//	-check
//		write nothing; print "qflowgen: FILE is stale: rerun go generate" for
//		each file that differs from what would be generated and exit 1 (for CI)
//	-mermaid
//		also write qflow_<flow>.mmd, a Mermaid flowchart of each flow
//	-sql
//		also write qflow_<flow>.sql, an idempotent SQL migration that registers
//		each flow's shape (SELECT qflow.define_flow(slug, shape_hash,
//		definition, normalised steps))
//	-tags list
//		comma-separated build tags to apply when loading the packages
//	-v
//		print the name of each file written
//
// # Exit status
//
// 0 when all is well, 1 when there are diagnostics (or, with -check, stale
// files), 2 for a usage error.
//
// The work is done by package github.com/quantumflow/qflow/gen, which can
// be called as a library.
package main
