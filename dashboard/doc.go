// Package dashboard is QuantumFlow's web dashboard: an http.Handler that
// shows the engine's state and lets an operator cancel runs. `qflow serve`
// serves it; a program can mount it in its own server:
//
//	h, err := dashboard.New(client, &dashboard.Options{Prefix: "/qflow", Token: os.Getenv("QFLOW_DASHBOARD_TOKEN")})
//	if err != nil { ... }
//	defer h.Close()
//	mux.Handle("/qflow/", h)
//
// # Pages
//
//   - Overview: runs by status, runs started and finished, throughput and
//     failure rate over the last hour, queue depth per flow version, live
//     workers, recent failures. It refreshes itself as events arrive.
//   - Runs, filtered by flow and status, paged.
//   - A run: its DAG drawn as an SVG with each step's state, then each
//     step's input (as the engine builds it), output, error, attempts and
//     map tasks. The page follows the run's events over server-sent events
//     and redraws without reloading. A Cancel button (POST) cancels it.
//   - Flows with their versions; a flow version's steps, options, DAG and
//     Mermaid source.
//   - Workers and queues.
//
// Everything is rendered on the server with html/template; the stylesheet
// and a small script are embedded. Nothing is fetched from elsewhere.
//
// # Security
//
//   - Authentication: with Options.Token set, requests need the token as a
//     bearer token, or a browser opens any page once with ?token=... and
//     gets an HttpOnly, SameSite=Strict cookie; with BasicUser and
//     BasicPassword set, HTTP basic auth. CheckAddr refuses a listening
//     address other than loopback when neither is set.
//   - State changes are POST only, carry a CSRF token that is checked in
//     constant time, and are refused across origins
//     (http.CrossOriginProtection). ReadOnly hides them and refuses them.
//   - Values (inputs, outputs, errors) are escaped by html/template and cut
//     to MaxValueBytes. Pages send a Content-Security-Policy that allows
//     only the dashboard's own script and styles.
//   - No page and no log line holds the connection string, the token or the
//     password; logs name the path of a failed request, never its query.
package dashboard
