// QuantumFlow dashboard: live updates over server-sent events. The server
// renders everything; this script only re-fetches the live fragment of the
// page (#live) when an event arrives, so nothing reloads.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource || !window.fetch) return;
  var prefix = document.body.getAttribute("data-prefix") || "";
  var kind = live.getAttribute("data-live");
  var run = live.getAttribute("data-run");
  var src, frag, minGap;
  if (kind === "run") {
    src = prefix + "/events?run=" + encodeURIComponent(run);
    frag = prefix + "/runs/" + encodeURIComponent(run) + "/live";
    minGap = 100;
  } else if (kind === "overview") {
    src = prefix + "/events";
    frag = prefix + "/overview/live";
    minGap = 1000;
  } else {
    return;
  }
  var timer = null, inflight = false, again = false, last = 0;

  function openSteps() {
    var open = {};
    live.querySelectorAll("details.step[open]").forEach(function (d) { open[d.id] = true; });
    return open;
  }

  function refresh() {
    timer = null;
    if (inflight) { again = true; return; }
    inflight = true;
    last = Date.now();
    var keep = openSteps();
    fetch(frag, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        live.innerHTML = html;
        Object.keys(keep).forEach(function (id) {
          var d = document.getElementById(id);
          if (d) d.open = true;
        });
        live.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {})
      .then(function () {
        inflight = false;
        if (again) { again = false; schedule(); }
      });
  }

  function schedule() {
    if (timer) return;
    timer = setTimeout(refresh, Math.max(0, minGap - (Date.now() - last)));
  }

  var es = new EventSource(src);
  es.addEventListener("qflow", schedule);
  es.addEventListener("gap", schedule);
  var dropped = false;
  es.onerror = function () { dropped = true; };
  es.onopen = function () { if (dropped) { dropped = false; schedule(); } };
  // Catch up with anything that happened between rendering and subscribing.
  schedule();
})();
