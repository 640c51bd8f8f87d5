package dashboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/quantumflow/qflow/flowdef"
	"github.com/quantumflow/qflow/internal/flowview"
	"github.com/quantumflow/qflow/runtime"
)

// page is what every template receives.
type page struct {
	Title    string
	Nav      string // the active section
	P        string // the prefix, for links
	CSRF     string
	ReadOnly bool
	Data     any
}

func (h *Handler) parseTemplates() error {
	funcs := template.FuncMap{
		"when": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				return v.Local().Format("2006-01-02 15:04:05")
			case *time.Time:
				if v == nil {
					return "-"
				}
				return v.Local().Format("2006-01-02 15:04:05")
			}
			return ""
		},
		"ago":     func(t time.Time) string { return flowview.Duration(time.Since(t)) },
		"dur":     flowview.Duration,
		"percent": func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
		"short":   func(id uuid.UUID) string { return id.String()[:8] },
		"rows": func(prefix string, runs []runtime.RunSummary) any {
			return struct {
				P    string
				Runs []runtime.RunSummary
			}{prefix, runs}
		},
		"query": func(kv ...string) template.URL {
			q := url.Values{}
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] != "" {
					q.Set(kv[i], kv[i+1])
				}
			}
			if len(q) == 0 {
				return ""
			}
			return template.URL("?" + q.Encode())
		},
	}
	base, err := template.New("base").Funcs(funcs).ParseFS(templateFS, "templates/base.html")
	if err != nil {
		return err
	}
	h.pages = map[string]*template.Template{}
	for _, name := range []string{"overview", "runs", "run", "flows", "flow", "workers"} {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return err
		}
		h.pages[name] = t
	}
	return nil
}

// render executes a page (or, with fragment, one of its named templates)
// into a buffer first, so a failure never sends half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, name, fragment string, p page) {
	p.P, p.CSRF, p.ReadOnly = h.opts.Prefix, h.csrf, h.opts.ReadOnly
	var b bytes.Buffer
	tmpl := "layout"
	if fragment != "" {
		tmpl = fragment
	}
	if err := h.pages[name].ExecuteTemplate(&b, tmpl, p); err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

func (h *Handler) cut(raw json.RawMessage) string { return flowview.Cut(raw, h.opts.MaxValueBytes) }

// Overview ---------------------------------------------------------------------

type overviewView struct {
	O        *runtime.Overview
	Queues   []runtime.QueueInfo
	Workers  []runtime.WorkerInfo
	Failures []runtime.RunSummary
	Oldest   string
}

func (h *Handler) overviewData(r *http.Request) (*overviewView, error) {
	ctx := r.Context()
	o, err := h.client.Overview(ctx, h.opts.Window)
	if err != nil {
		return nil, err
	}
	v := &overviewView{O: o, Oldest: "-"}
	if o.OldestQueuedAt != nil {
		v.Oldest = flowview.Duration(o.Now.Sub(*o.OldestQueuedAt))
	}
	if v.Queues, err = h.client.ListQueues(ctx); err != nil {
		return nil, err
	}
	if v.Workers, err = h.client.ListWorkers(ctx, runtime.ListWorkersParams{Limit: 20}); err != nil {
		return nil, err
	}
	if v.Failures, err = h.client.ListRuns(ctx, runtime.ListRunsParams{Status: runtime.StatusFailed, Limit: 5}); err != nil {
		return nil, err
	}
	return v, nil
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	v, err := h.overviewData(r)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	h.render(w, r, "overview", "", page{Title: "Overview", Nav: "overview", Data: v})
}

func (h *Handler) overviewLive(w http.ResponseWriter, r *http.Request) {
	v, err := h.overviewData(r)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	h.render(w, r, "overview", "live", page{Data: v})
}

// Runs -------------------------------------------------------------------------

type runsView struct {
	Runs   []runtime.RunSummary
	Flows  []string
	Flow   string
	Status string
	Next   string // the --after id of the next page, "" when none
	Prefix string
}

const runsPage = 50

func (h *Handler) runs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := runtime.ListRunsParams{Flow: q.Get("flow"), Status: q.Get("status"), Limit: runsPage + 1}
	switch p.Status {
	case "", runtime.StatusStarted, runtime.StatusCompleted, runtime.StatusFailed, runtime.StatusCancelled:
	default:
		h.fail(w, r, http.StatusBadRequest, fmt.Errorf("status: want started, completed, failed or cancelled"))
		return
	}
	if p.Flow != "" && !runtime.ValidSlug(p.Flow) {
		h.fail(w, r, http.StatusBadRequest, fmt.Errorf("flow: not a flow slug"))
		return
	}
	if a := q.Get("after"); a != "" {
		id, err := uuid.Parse(a)
		if err != nil {
			h.fail(w, r, http.StatusBadRequest, fmt.Errorf("after: not a run id"))
			return
		}
		p.After = id
	}
	runs, err := h.client.ListRuns(r.Context(), p)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	v := &runsView{Flow: p.Flow, Status: p.Status}
	if len(runs) > runsPage {
		runs = runs[:runsPage]
		v.Next = runs[runsPage-1].ID.String()
	}
	v.Runs = runs
	flows, err := h.client.ListFlows(r.Context())
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	seen := map[string]bool{}
	for _, f := range flows {
		if !seen[f.Slug] {
			seen[f.Slug] = true
			v.Flows = append(v.Flows, f.Slug)
		}
	}
	h.render(w, r, "runs", "", page{Title: "Runs", Nav: "runs", Data: v})
}

// A run --------------------------------------------------------------------------

type runView struct {
	Run       *runtime.Run
	SVG       template.HTML
	Steps     []stepView
	Duration  string
	Input     string
	Output    string
	Error     string
	Live      bool // the run has not finished
	CanCancel bool
}

type stepView struct {
	Slug        string
	Status      string
	Map         bool
	Deps        []string
	TakesInput  bool
	Tasks       string
	Attempts    int
	MaxAttempts int
	Duration    string
	Input       string
	Output      string
	Error       string
	Skip        string // why the step was skipped (flowview.SkipReason), "" unless it was
	TaskRows    []taskView
	MoreTasks   int
}

type taskView struct {
	Index    int
	Status   string
	Attempts int
	Duration string
	Input    string
	Output   string
	Error    string
}

const maxTaskRows = 50

func (h *Handler) runData(r *http.Request) (*runView, int, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return nil, http.StatusBadRequest, errors.New("not a run id")
	}
	run, err := h.client.GetRun(r.Context(), id)
	if errors.Is(err, runtime.ErrRunNotFound) {
		return nil, http.StatusNotFound, fmt.Errorf("no run %s", id)
	}
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	def, err := h.client.GetFlowVersion(r.Context(), run.Flow, run.FlowVersion)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	now := time.Now()
	d, _ := flowview.Span(&run.StartedAt, run.FinishedAt, now)
	v := &runView{Run: run, Duration: flowview.Duration(d), Input: h.cut(run.Input), Output: h.cut(run.Output),
		Error: flowview.CutText(run.Error, h.opts.MaxValueBytes), Live: run.Status == runtime.StatusStarted}
	v.CanCancel = v.Live && !h.opts.ReadOnly
	states := map[string]runtime.StepState{}
	for _, s := range run.Steps {
		states[s.Step] = s
	}
	nodes := map[string]nodeState{}
	for _, layer := range flowview.Layers(def) {
		for _, slug := range layer {
			var sd runtime.StepDef
			for _, s := range def.Steps {
				if s.Slug == slug {
					sd = s
				}
			}
			st := states[slug]
			sv := stepView{Slug: slug, Status: st.Status, Map: sd.Map, Deps: sd.DependsOn, TakesInput: sd.TakesInput,
				MaxAttempts: flowview.Effective(def, sd).MaxAttempts, Tasks: "-", Duration: "-",
				Output: h.cut(st.Output), Error: flowview.CutText(st.Error, h.opts.MaxValueBytes), Skip: flowview.SkipReason(sd, states)}
			if sd, ok := flowview.Span(st.StartedAt, st.FinishedAt, now); ok {
				sv.Duration = flowview.Duration(sd)
			}
			note := st.Status
			var elems []json.RawMessage
			if st.TaskCount != nil {
				done := 0
				for _, t := range st.Tasks {
					if t.Status == runtime.StatusCompleted {
						done++
					}
					sv.Attempts = max(sv.Attempts, t.Attempts)
				}
				sv.Tasks = fmt.Sprintf("%d/%d", done, *st.TaskCount)
				if sd.Map {
					note += " · " + sv.Tasks
				}
			}
			if sd.Map {
				elems = mapElements(run, states, sd)
			} else if st.Status != runtime.StatusCreated && (st.Status != runtime.StatusSkipped || len(st.Tasks) > 0) {
				// (a step skipped with a dependency never had an input)
				sv.Input = h.cut(stepInput(run, states, sd))
			}
			if sd.Map {
				for i, t := range st.Tasks {
					if i == maxTaskRows {
						sv.MoreTasks = len(st.Tasks) - i
						break
					}
					tv := taskView{Index: t.Index, Status: t.Status, Attempts: t.Attempts, Duration: "-",
						Output: h.cut(t.Output), Error: flowview.CutText(t.Error, h.opts.MaxValueBytes)}
					if t.Index < len(elems) {
						tv.Input = h.cut(elems[t.Index])
					}
					if d, ok := flowview.Span(t.StartedAt, t.FinishedAt, now); ok {
						tv.Duration = flowview.Duration(d)
					}
					sv.TaskRows = append(sv.TaskRows, tv)
				}
			}
			nodes[slug] = nodeState{Status: st.Status, Note: note}
			v.Steps = append(v.Steps, sv)
		}
	}
	v.SVG = dagSVG(def, nodes)
	return v, 0, nil
}

// stepInput rebuilds a single step's input as the engine hands it to the
// handler: the flow input under "run" when the step takes it, and each
// dependency's output under the dependency's slug (none for a skipped
// dependency).
func stepInput(run *runtime.Run, states map[string]runtime.StepState, sd runtime.StepDef) json.RawMessage {
	in := map[string]json.RawMessage{}
	if sd.TakesInput {
		in[flowdef.InputKey] = run.Input
	}
	for _, d := range sd.DependsOn {
		if out := states[d].Output; len(out) > 0 {
			in[d] = out
		}
	}
	b, _ := json.Marshal(in)
	return b
}

// mapElements returns the array a map step runs over: its dependency's
// output, or the flow input.
func mapElements(run *runtime.Run, states map[string]runtime.StepState, sd runtime.StepDef) []json.RawMessage {
	src := run.Input
	if len(sd.DependsOn) == 1 {
		src = states[sd.DependsOn[0]].Output
	}
	var elems []json.RawMessage
	json.Unmarshal(src, &elems)
	return elems
}

func (h *Handler) run(w http.ResponseWriter, r *http.Request) {
	v, code, err := h.runData(r)
	if err != nil {
		h.fail(w, r, code, err)
		return
	}
	h.render(w, r, "run", "", page{Title: "Run " + v.Run.ID.String()[:8], Nav: "runs", Data: v})
}

func (h *Handler) runLive(w http.ResponseWriter, r *http.Request) {
	v, code, err := h.runData(r)
	if err != nil {
		h.fail(w, r, code, err)
		return
	}
	h.render(w, r, "run", "live", page{Data: v})
}

// cancel cancels a run: POST only, same origin, with the CSRF token, and
// not in read-only mode. It redirects back to the run's page.
func (h *Handler) cancel(w http.ResponseWriter, r *http.Request) {
	if h.opts.ReadOnly {
		h.fail(w, r, http.StatusForbidden, errors.New("read-only dashboard: state changes are disabled"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if !equal(r.PostFormValue("csrf"), h.csrf) {
		h.fail(w, r, http.StatusForbidden, errors.New("missing or wrong CSRF token: reload the page and try again"))
		return
	}
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, errors.New("not a run id"))
		return
	}
	if err := h.client.CancelRun(r.Context(), id); errors.Is(err, runtime.ErrRunNotFound) {
		h.fail(w, r, http.StatusNotFound, fmt.Errorf("no run %s", id))
		return
	} else if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	http.Redirect(w, r, h.link("/runs/"+id.String(), nil), http.StatusSeeOther)
}

// Flows -----------------------------------------------------------------------------

type flowGroup struct {
	Slug     string
	Versions []runtime.FlowInfo
}

func (h *Handler) flows(w http.ResponseWriter, r *http.Request) {
	flows, err := h.client.ListFlows(r.Context())
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	var groups []flowGroup
	for _, f := range flows {
		if len(groups) == 0 || groups[len(groups)-1].Slug != f.Slug {
			groups = append(groups, flowGroup{Slug: f.Slug})
		}
		g := &groups[len(groups)-1]
		g.Versions = append(g.Versions, f)
	}
	for _, g := range groups {
		sort.Slice(g.Versions, func(i, j int) bool { return g.Versions[i].Version > g.Versions[j].Version })
	}
	h.render(w, r, "flows", "", page{Title: "Flows", Nav: "flows", Data: groups})
}

type flowView struct {
	Def      *runtime.FlowDef
	Info     runtime.FlowInfo
	Versions []runtime.FlowInfo
	SVG      template.HTML
	Mermaid  string
	Steps    []flowStep
}

type flowStep struct {
	runtime.StepDef
	Eff  flowview.Options
	Kind string // flowview.Kind
	Deps string // flowview.DependsOn, comma and space separated
}

func (h *Handler) flow(w http.ResponseWriter, r *http.Request) {
	slug := r.PathValue("slug")
	if !runtime.ValidSlug(slug) {
		h.fail(w, r, http.StatusNotFound, errors.New("no such flow"))
		return
	}
	version, _ := strconv.Atoi(r.URL.Query().Get("version"))
	def, err := h.client.GetFlowVersion(r.Context(), slug, version)
	if errors.Is(err, runtime.ErrUnknownFlow) {
		h.fail(w, r, http.StatusNotFound, fmt.Errorf("no flow %q", slug))
		return
	}
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	flows, err := h.client.ListFlows(r.Context())
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	v := &flowView{Def: def}
	hash := def.ShapeHash()
	for _, f := range flows {
		if f.Slug == slug {
			v.Versions = append(v.Versions, f)
			if f.ShapeHash == hash {
				v.Info = f
			}
		}
	}
	nodes := map[string]nodeState{}
	for _, s := range def.Steps {
		kind := flowview.Kind(s)
		nodes[s.Slug] = nodeState{Status: "def", Note: kind}
		v.Steps = append(v.Steps, flowStep{s, flowview.Effective(def, s), kind, strings.ReplaceAll(flowview.DependsOn(s), ",", ", ")})
	}
	v.SVG = dagSVG(def, nodes)
	if v.Mermaid, err = flowview.Mermaid(def); err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	h.render(w, r, "flow", "", page{Title: "Flow " + slug, Nav: "flows", Data: v})
}

// Workers --------------------------------------------------------------------------

type workersView struct {
	Workers []runtime.WorkerInfo
	Queues  []runtime.QueueInfo
	Now     time.Time
}

func (h *Handler) workers(w http.ResponseWriter, r *http.Request) {
	ws, err := h.client.ListWorkers(r.Context(), runtime.ListWorkersParams{All: true, Limit: 200})
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	qs, err := h.client.ListQueues(r.Context())
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	h.render(w, r, "workers", "", page{Title: "Workers", Nav: "workers", Data: &workersView{Workers: ws, Queues: qs, Now: time.Now()}})
}
