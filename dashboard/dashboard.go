package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

// Options configure a dashboard. A nil *Options means all defaults: no
// authentication (serve it on loopback only), cancel buttons shown, mounted
// at the root.
type Options struct {
	// Prefix is the path the handler is mounted under, such as "/qflow"
	// (no trailing slash); "" for the root. Links are built with it and
	// requests are expected to carry it.
	Prefix string
	// ReadOnly hides the cancel buttons and refuses every state change.
	ReadOnly bool
	// Token, when set, is required with every request (see the package
	// documentation).
	Token string
	// BasicUser and BasicPassword, when both set, require HTTP basic auth.
	// With Token also set, either is accepted.
	BasicUser, BasicPassword string
	// MaxValueBytes cuts every input, output and error shown (default 2048).
	MaxValueBytes int
	// Window is the period of the overview's recent figures (default 1h).
	Window time.Duration
	// Logger receives a line per failed request (default slog.Default()).
	Logger *slog.Logger
}

// Handler serves the dashboard. Create it with New; Close stops its event
// listener and ends the live streams.
type Handler struct {
	client *runtime.Client
	opts   Options
	log    *slog.Logger
	csrf   string
	mux    *http.ServeMux
	pages  map[string]*template.Template
	live   *hub
	cop    *http.CrossOriginProtection
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// ErrNoAuth is returned by CheckAddr for a non-loopback address without
// credentials.
var ErrNoAuth = errors.New("dashboard: listening beyond this machine needs a token or basic-auth credentials")

// CheckAddr returns ErrNoAuth when addr (host:port) is not a loopback
// address and opts sets neither a token nor basic-auth credentials. An empty
// host (":8080") listens on every interface and needs credentials.
func CheckAddr(addr string, opts *Options) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("dashboard: address %q: %w", addr, err)
	}
	if opts != nil && (opts.Token != "" || (opts.BasicUser != "" && opts.BasicPassword != "")) {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: refusing to listen on %q; set a token (QFLOW_DASHBOARD_TOKEN) or basic auth (QFLOW_DASHBOARD_BASIC_AUTH), or listen on 127.0.0.1", ErrNoAuth, addr)
}

// New returns a dashboard for client. opts may be nil.
func New(client *runtime.Client, opts *Options) (*Handler, error) {
	h := &Handler{client: client}
	if opts != nil {
		h.opts = *opts
	}
	h.opts.Prefix = strings.TrimRight(h.opts.Prefix, "/")
	if h.opts.Prefix != "" && !strings.HasPrefix(h.opts.Prefix, "/") {
		return nil, fmt.Errorf("dashboard: prefix %q must start with /", h.opts.Prefix)
	}
	if (h.opts.BasicUser == "") != (h.opts.BasicPassword == "") {
		return nil, errors.New("dashboard: basic auth needs both a user and a password")
	}
	if h.opts.MaxValueBytes <= 0 {
		h.opts.MaxValueBytes = 2048
	}
	if h.opts.Window <= 0 {
		h.opts.Window = time.Hour
	}
	h.log = h.opts.Logger
	if h.log == nil {
		h.log = slog.Default()
	}
	var b [32]byte
	rand.Read(b[:])
	h.csrf = hex.EncodeToString(b[:])
	if err := h.parseTemplates(); err != nil {
		return nil, err
	}
	h.live = newHub(client.Pool(), h.log)
	h.cop = http.NewCrossOriginProtection()

	assets, _ := fs.Sub(assetFS, "assets")
	m := http.NewServeMux()
	m.Handle("GET /assets/", http.StripPrefix("/assets/", cacheAssets(http.FileServerFS(assets))))
	m.HandleFunc("GET /{$}", h.overview)
	m.HandleFunc("GET /overview/live", h.overviewLive)
	m.HandleFunc("GET /runs", h.runs)
	m.HandleFunc("GET /runs/{id}", h.run)
	m.HandleFunc("GET /runs/{id}/live", h.runLive)
	m.HandleFunc("POST /runs/{id}/cancel", h.cancel)
	m.HandleFunc("GET /flows", h.flows)
	m.HandleFunc("GET /flows/{slug}", h.flow)
	m.HandleFunc("GET /workers", h.workers)
	m.HandleFunc("GET /events", h.events)
	h.mux = m
	return h, nil
}

// Close stops the dashboard's event listener and ends the live streams
// (server-sent events) it serves. Pages still render afterwards.
func (h *Handler) Close() { h.live.close() }

// ServeHTTP authenticates the request, then serves the page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	if !h.authenticate(w, r) {
		return
	}
	path := r.URL.Path
	if h.opts.Prefix != "" {
		rest, ok := strings.CutPrefix(path, h.opts.Prefix)
		if !ok {
			http.NotFound(w, r)
			return
		}
		if rest == "" {
			http.Redirect(w, r, h.opts.Prefix+"/", http.StatusFound)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = rest
		r2.URL.RawPath = ""
		r = r2
	}
	if r.Method == http.MethodPost {
		if err := h.cop.Check(r); err != nil {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

const tokenCookie = "qflow_token"

// authenticate checks the credentials; on failure it answers and returns
// false. A valid ?token= sets the cookie and redirects to the same URL
// without it, so the token does not stay in the address bar or history.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) bool {
	token, basic := h.opts.Token != "", h.opts.BasicUser != ""
	if !token && !basic {
		return true
	}
	if token {
		if q := r.URL.Query().Get("token"); q != "" && equal(q, h.opts.Token) {
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: h.opts.Token, Path: h.opts.Prefix + "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			u := *r.URL
			q := u.Query()
			q.Del("token")
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return false
		}
		if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(a, h.opts.Token) {
			return true
		}
		if c, err := r.Cookie(tokenCookie); err == nil && equal(c.Value, h.opts.Token) {
			return true
		}
	}
	if basic {
		if u, p, ok := r.BasicAuth(); ok && equal(u, h.opts.BasicUser) && equal(p, h.opts.BasicPassword) {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="qflow", charset="UTF-8"`)
	}
	http.Error(w, "unauthorized: open the dashboard with ?token=... or sign in", http.StatusUnauthorized)
	return false
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func cacheAssets(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// fail logs a failed request by path (never the query, which may carry a
// token) and answers with a short message.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, code int, err error) {
	if code >= 500 {
		h.log.Error("dashboard: request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		http.Error(w, "internal error (see the server's log)", code)
		return
	}
	http.Error(w, err.Error(), code)
}

// link builds a path under the prefix with an optional query.
func (h *Handler) link(path string, q url.Values) string {
	s := h.opts.Prefix + path
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}
