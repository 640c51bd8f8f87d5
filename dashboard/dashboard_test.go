package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quantumflow/qflow/dashboard"
	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
)

// env is a real database with a failed, a completed and an open run, and a
// dashboard on it.
type env struct {
	client              *runtime.Client
	failed, done, open  uuid.UUID
	srv                 *httptest.Server
	h                   *dashboard.Handler
	logs                *bytes.Buffer
	reportDef, waitFlow runtime.FlowDef
}

func reportFlow(t testing.TB) (runtime.FlowDef, map[string]runtime.Handler) {
	def, err := runtime.NewFlow("report").
		Options(runtime.StepOptions{Retries: 1, BaseDelay: 10 * time.Millisecond}).
		Step("fetch", runtime.StepDef{TakesInput: true}).
		MapStep("score", "fetch", runtime.StepOptions{}).
		Step("total", runtime.StepDef{DependsOn: []string{"score"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	return def, map[string]runtime.Handler{
		"fetch": func(ctx context.Context, task *runtime.Task) (json.RawMessage, error) {
			var in struct {
				Run struct{ Items json.RawMessage }
			}
			if err := json.Unmarshal(task.Input, &in); err != nil {
				return nil, runtime.Permanent(err)
			}
			return in.Run.Items, nil
		},
		"score": func(ctx context.Context, task *runtime.Task) (json.RawMessage, error) {
			if string(task.Input) == `"bad"` {
				return nil, errors.New(`score: <script>alert("x")</script> refused`)
			}
			return task.Input, nil
		},
		"total": func(ctx context.Context, task *runtime.Task) (json.RawMessage, error) {
			return json.RawMessage(`"done"`), nil
		},
	}
}

func newEnv(t *testing.T, opts *dashboard.Options) *env {
	t.Helper()
	db := pgtest.New(t)
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	e := &env{client: runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet}), logs: &bytes.Buffer{}}
	t.Cleanup(e.client.Close)
	def, handlers := reportFlow(t)
	e.reportDef = def
	w := runtime.NewWorker(db.Pool, &runtime.WorkerOptions{Logger: quiet, PollInterval: 50 * time.Millisecond})
	if err := w.Register(def, handlers); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	big := strings.Repeat("x", 20000)
	h1, err := e.client.StartFlow(ctx, def, map[string]any{"items": []string{"a", "b"}, "blob": big}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := e.client.StartFlow(ctx, def, map[string]any{"items": []string{"a", "bad"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.Wait(ctx); !errors.Is(err, runtime.ErrRunFailed) {
		t.Fatalf("run 2: %v", err)
	}
	stop()
	if err := <-wdone; err != nil {
		t.Fatal(err)
	}
	e.done, e.failed = h1.ID, h2.ID
	e.waitFlow, _ = runtime.NewFlow("waiting").Step("hold", runtime.StepDef{TakesInput: true}).Build()
	h3, err := e.client.StartFlow(ctx, e.waitFlow, map[string]string{"note": "<b>hi</b>"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.open = h3.ID

	if opts == nil {
		opts = &dashboard.Options{}
	}
	opts.Logger = slog.New(slog.NewTextHandler(e.logs, nil))
	e.h, err = dashboard.New(e.client, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.h.Close)
	mux := http.NewServeMux()
	if opts.Prefix != "" {
		mux.Handle(opts.Prefix+"/", e.h)
	} else {
		mux.Handle("/", e.h)
	}
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) get(t *testing.T, path string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(e.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestDashboardPages(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct {
		path string
		want []string
	}{
		{"/", []string{"Overview", `<span class="num">1</span><span class="lbl">failed</span>`, "failure rate", "50.0%", "Recent failures", "waiting", e.failed.String()[:8]}},
		{"/overview/live", []string{"live workers"}},
		{"/runs", []string{e.done.String()[:8], e.failed.String()[:8], e.open.String()[:8]}},
		{"/runs?status=failed", []string{e.failed.String()[:8]}},
		{"/runs/" + e.failed.String(), []string{`<svg class="dag"`, `id="node-score"`, `data-status="failed"`, "attempts 2/2", "Last error", `data-live="run"`}},
		{"/runs/" + e.done.String(), []string{`data-status="completed"`, `&#34;done&#34;`}},
		{"/runs/" + e.open.String(), []string{`id="cancel-run"`, `name="csrf"`, "running for", `id="run-unserved"`}},
		{"/runs/" + e.done.String(), []string{`data-status="completed"`}},
		{"/runs/" + e.open.String() + "/live", []string{`id="node-hold"`}},
		{"/flows", []string{"report", "waiting", "v1"}},
		{"/flows/report", []string{"flowchart TD", "s_fetch -- each --&gt; s_score", `<svg class="dag"`, "10ms"}},
		{"/workers", []string{"stopped", "report_1", "waiting_1"}},
		{"/assets/app.js", []string{"EventSource"}},
		{"/assets/app.css", []string{"svg.dag"}},
	} {
		code, body, hdr := e.get(t, c.path)
		if code != 200 {
			t.Errorf("GET %s: %d %s\n%s", c.path, code, body, e.logs)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: no %q in the page", c.path, w)
			}
		}
		if !strings.Contains(hdr.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: CSP %q", c.path, hdr.Get("Content-Security-Policy"))
		}
	}
	// Bad requests get a clear status, not a 500.
	for path, want := range map[string]int{
		"/runs/not-a-uuid":                     400,
		"/runs/" + uuid.New().String():         404,
		"/runs?status=bogus":                   400,
		"/runs?flow=DROP%20TABLE":              400,
		"/flows/nosuch":                        404,
		"/flows/..%2f..":                       404,
		"/runs?after=x":                        400,
		"/events?run=nope":                     400,
		"/nowhere":                             404,
		"/runs/" + e.done.String() + "/cancel": 405,
	} {
		if code, body, _ := e.get(t, path); code != want {
			t.Errorf("GET %s: %d %q; want %d", path, code, body, want)
		}
	}
}

// TestDashboardEscapesAndCaps: values are escaped by the templates and cut
// to MaxValueBytes.
func TestDashboardEscapesAndCaps(t *testing.T) {
	e := newEnv(t, &dashboard.Options{MaxValueBytes: 300})
	_, body, _ := e.get(t, "/runs/"+e.failed.String())
	if strings.Contains(body, `<script>alert`) {
		t.Error("an error's HTML reached the page unescaped")
	}
	if !strings.Contains(body, `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; refused`) {
		t.Error("the escaped error is missing")
	}
	_, body, _ = e.get(t, "/runs/"+e.done.String())
	if strings.Contains(body, strings.Repeat("x", 301)) {
		t.Error("a 20,000-byte input was not cut to 300 bytes")
	}
	if !strings.Contains(body, "(19.6 KiB)") {
		t.Error("the cut input does not say its full size")
	}
	_, body, _ = e.get(t, "/runs/"+e.open.String())
	if strings.Contains(body, "<b>hi</b>") || !strings.Contains(body, `\u003cb\u003ehi\u003c/b\u003e`) && !strings.Contains(body, "&lt;b&gt;hi&lt;/b&gt;") {
		t.Error("the open run's input is not escaped")
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func TestDashboardCancelCSRF(t *testing.T) {
	e := newEnv(t, nil)
	_, page, _ := e.get(t, "/runs/"+e.open.String())
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token in the run page")
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(form url.Values, hdr map[string]string) int {
		req, _ := http.NewRequest("POST", e.srv.URL+"/runs/"+e.open.String()+"/cancel", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	status := func() string {
		r, err := e.client.GetRun(context.Background(), e.open)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	if code := post(nil, nil); code != 403 {
		t.Errorf("POST without a token: %d; want 403", code)
	}
	if code := post(url.Values{"csrf": {strings.Repeat("0", 64)}}, nil); code != 403 {
		t.Errorf("POST with a wrong token: %d; want 403", code)
	}
	if code := post(url.Values{"csrf": {m[1]}}, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}); code != 403 {
		t.Errorf("cross-site POST with the token: %d; want 403", code)
	}
	if s := status(); s != "started" {
		t.Fatalf("refused requests changed the run: %s", s)
	}
	if code := post(url.Values{"csrf": {m[1]}}, map[string]string{"Sec-Fetch-Site": "same-origin"}); code != 303 {
		t.Errorf("POST with the token: %d; want 303", code)
	}
	if s := status(); s != "cancelled" {
		t.Errorf("after cancel: %s", s)
	}
	_, page, _ = e.get(t, "/runs/"+e.open.String())
	if strings.Contains(page, `id="cancel-run"`) || !strings.Contains(page, `data-status="cancelled"`) {
		t.Error("a cancelled run still offers a cancel button or does not say cancelled")
	}
}

func TestDashboardReadOnly(t *testing.T) {
	e := newEnv(t, &dashboard.Options{ReadOnly: true})
	_, page, _ := e.get(t, "/runs/"+e.open.String())
	if strings.Contains(page, "cancel-run") || strings.Contains(page, `name="csrf"`) {
		t.Error("read-only page shows a cancel form")
	}
	if !strings.Contains(page, "read-only") {
		t.Error("read-only page does not say so")
	}
	resp, err := http.PostForm(e.srv.URL+"/runs/"+e.open.String()+"/cancel", url.Values{"csrf": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("read-only POST: %d; want 403", resp.StatusCode)
	}
	if r, _ := e.client.GetRun(context.Background(), e.open); r.Status != "started" {
		t.Errorf("read-only dashboard changed the run: %s", r.Status)
	}
}

func TestDashboardAuth(t *testing.T) {
	const token = "tok-8f3a1c-do-not-log"
	e := newEnv(t, &dashboard.Options{Token: token, BasicUser: "ops", BasicPassword: "pw-7d1e-secret"})
	do := func(path string, set func(*http.Request)) *http.Response {
		req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
		if set != nil {
			set(req)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := do("/", nil); r.StatusCode != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("no credentials: %d %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
	if r := do("/assets/app.js", nil); r.StatusCode != 401 {
		t.Errorf("assets without credentials: %d", r.StatusCode)
	}
	if r := do("/", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }); r.StatusCode != 200 {
		t.Errorf("bearer token: %d", r.StatusCode)
	}
	if r := do("/", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }); r.StatusCode != 401 {
		t.Errorf("wrong bearer token: %d", r.StatusCode)
	}
	if r := do("/", func(r *http.Request) { r.SetBasicAuth("ops", "pw-7d1e-secret") }); r.StatusCode != 200 {
		t.Errorf("basic auth: %d", r.StatusCode)
	}
	if r := do("/", func(r *http.Request) { r.SetBasicAuth("ops", "wrong") }); r.StatusCode != 401 {
		t.Errorf("wrong basic auth: %d", r.StatusCode)
	}
	// A browser opens ?token= once: it gets a cookie and a URL without the token.
	r := do("/runs?status=failed&token="+token, nil)
	if r.StatusCode != 303 || r.Header.Get("Location") != "/runs?status=failed" {
		t.Fatalf("?token=: %d to %q", r.StatusCode, r.Header.Get("Location"))
	}
	var c *http.Cookie
	for _, k := range r.Cookies() {
		if k.Name == "qflow_token" {
			c = k
		}
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("token cookie: %+v", c)
	}
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(e.srv.URL)
	jar.SetCookies(u, []*http.Cookie{c})
	resp, err := (&http.Client{Jar: jar}).Get(e.srv.URL + "/runs/" + e.failed.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("with the cookie: %d", resp.StatusCode)
	}
	// Secrets appear in no page and no log line.
	do("/runs/"+uuid.New().String()+"?token=wrong-"+token, nil)
	for name, s := range map[string]string{"page": string(body), "log": e.logs.String()} {
		for _, secret := range []string{token, "pw-7d1e-secret"} {
			if strings.Contains(s, secret) {
				t.Errorf("the %s holds a secret", name)
			}
		}
	}
}

func TestCheckAddr(t *testing.T) {
	for _, c := range []struct {
		addr string
		opts *dashboard.Options
		ok   bool
	}{
		{"127.0.0.1:8080", nil, true},
		{"[::1]:8080", nil, true},
		{"localhost:8080", nil, true},
		{"0.0.0.0:8080", nil, false},
		{":8080", nil, false},
		{"192.168.1.5:8080", &dashboard.Options{}, false},
		{"0.0.0.0:8080", &dashboard.Options{Token: "t"}, true},
		{"0.0.0.0:8080", &dashboard.Options{BasicUser: "u", BasicPassword: "p"}, true},
		{"0.0.0.0:8080", &dashboard.Options{BasicUser: "u"}, false},
		{"nonsense", nil, false},
	} {
		err := dashboard.CheckAddr(c.addr, c.opts)
		if (err == nil) != c.ok {
			t.Errorf("CheckAddr(%q, %+v) = %v", c.addr, c.opts, err)
		}
		if !c.ok && c.addr != "nonsense" && !errors.Is(err, dashboard.ErrNoAuth) {
			t.Errorf("CheckAddr(%q): %v is not ErrNoAuth", c.addr, err)
		}
	}
	if _, err := dashboard.New(nil, &dashboard.Options{BasicUser: "u"}); err == nil {
		t.Error("New accepted a basic-auth user without a password")
	}
}

// TestDashboardEventsStream reads the server-sent events of a run while it
// is cancelled.
func TestDashboardEventsStream(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/events?run="+e.open.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); !strings.HasPrefix(line, "retry:") {
		t.Fatalf("first line %q", line)
	}
	// An event of another run must not reach this stream.
	other, err := e.client.StartFlow(ctx, e.waitFlow, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.CancelRun(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.client.CancelRun(ctx, e.open); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		if strings.Contains(line, other.ID.String()) {
			t.Fatal("another run's event reached a run's stream")
		}
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, "workflow_cancelled") {
			if !strings.Contains(line, e.open.String()) {
				t.Fatalf("event %q", line)
			}
			break
		}
	}
}

// TestDashboardPrefix mounts the dashboard under /qflow in another mux.
func TestDashboardPrefix(t *testing.T) {
	e := newEnv(t, &dashboard.Options{Prefix: "/qflow"})
	code, body, _ := e.get(t, "/qflow/runs/"+e.failed.String())
	if code != 200 {
		t.Fatalf("GET /qflow/runs/ID: %d", code)
	}
	for _, w := range []string{`href="/qflow/assets/app.css"`, `data-prefix="/qflow"`, `href="/qflow/flows/report?version=1"`} {
		if !strings.Contains(body, w) {
			t.Errorf("no %q", w)
		}
	}
	if code, _, _ := e.get(t, "/runs"); code != 404 {
		t.Errorf("GET /runs outside the prefix: %d", code)
	}
}
