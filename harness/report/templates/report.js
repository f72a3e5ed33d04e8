/* vlh report: draws the plotly figures and the turn views from the JSON block #vlh-data.
   Agent-provided text only ever reaches the page through textContent, or escaped before plotly sees it. */
(function () {
  "use strict";
  var PERF = window.performance;
  function mark(name) { if (PERF && PERF.mark) { PERF.mark(name); } }
  mark("vlh:script");
  var D = JSON.parse(document.getElementById("vlh-data").textContent);
  mark("vlh:data");
  var CONFIG = {displaylogo: false, responsive: true};

  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function fmt(v, nd) { return (v === null || v === undefined) ? "\u2014" : Number(v).toFixed(nd || 0); }

  /* Charts are drawn lazily, one per task so the page stays responsive: the ones on the first screen right after
     the first layout, the others when they scroll into view (IntersectionObserver), or else one by one in idle
     time; printing draws every chart that is left first (window.vlhDrawAll does the same on demand).
     Performance marks: "vlh:first-screen" (every chart in the first viewport drawn), "vlh:all-drawn", and a
     measure "vlh:draw <chart>" per chart. */
  var jobs = [];
  function addJob(box, name, draw) {
    var job = {box: box, name: name, draw: draw, promise: null};
    job.done = new Promise(function (ok, fail) { job.ok = ok; job.fail = fail; });
    jobs.push(job);
  }
  function runJob(job) {
    if (!job.promise) {
      mark("vlh:start " + job.name);
      try {
        job.promise = Promise.resolve(job.draw());
      } catch (err) {
        job.promise = Promise.reject(err);
      }
      if (PERF && PERF.measure) { PERF.measure("vlh:draw " + job.name, "vlh:start " + job.name); }
      job.promise.then(job.ok, job.fail);
    }
    return job.promise;
  }
  function drawAll() { return Promise.all(jobs.map(runJob)); }
  window.vlhDrawAll = drawAll;
  window.addEventListener("beforeprint", drawAll);  // plotly draws synchronously: printed with every chart

  var queue = [], busy = false, observer = null, background = false;
  var idle = window.requestIdleCallback ? function (f) { window.requestIdleCallback(f, {timeout: 500}); }
                                        : function (f) { setTimeout(f, 1); };
  function pump() {  // one chart per task: the ones scrolled into view first, then (after the first screen) the rest
    if (busy) { return; }
    var next = null;
    while (queue.length && !next) { next = queue.shift(); if (next.promise) { next = null; } }
    if (next) {
      busy = true;
      setTimeout(function () { busy = false; runJob(next); pump(); }, 0);
      return;
    }
    var rest = background ? jobs.filter(function (j) { return !j.promise; })[0] : null;
    if (!rest) { return; }
    busy = true;
    idle(function () {
      busy = false;
      if (!queue.length && !rest.promise) { runJob(rest); }
      pump();
    });
  }
  function startDrawing() {
    if (!jobs.length) { return; }
    if (!window.IntersectionObserver) { drawAll(); return; }
    var first = true;
    observer = new IntersectionObserver(function (entries) {
      var seen = entries.filter(function (e) { return e.isIntersecting; }).map(function (e) {
        return jobs.filter(function (j) { return j.box === e.target; })[0];
      });
      if (first) {  // the first screen: drawn now, in this task (after the first layout)
        first = false;
        var vh = window.innerHeight;
        var now = seen.filter(function (j) {
          var r = j.box.getBoundingClientRect();
          return r.top < vh && r.bottom > 0;
        });
        Promise.all(now.map(runJob)).then(function () {
          mark("vlh:first-screen");
          window.__vlhFirstScreen = true;
          background = window.__vlhLazyOnly !== true;  // tests set __vlhLazyOnly: only scrolling draws
          pump();
        });
        seen = seen.filter(function (j) { return now.indexOf(j) < 0; });
      }
      seen.forEach(function (j) { if (!j.promise) { queue.push(j); } });
      pump();
    }, {rootMargin: "200px 0px"});
    jobs.forEach(function (j) { observer.observe(j.box); });
  }

  document.querySelectorAll("[data-figure]").forEach(function (div) {
    var f = D.figures[div.getAttribute("data-figure")];
    if (!f) { div.textContent = "no data for this chart"; return; }
    if (f.layout && f.layout.height) { div.style.minHeight = f.layout.height + "px"; }  // no shift when drawn
    addJob(div, div.id || div.getAttribute("data-figure"), function () {
      return Plotly.newPlot(div, f.data, f.layout, CONFIG).then(function (gd) {
        if (div.id === "fig-waterfall") {
          gd.on("plotly_click", function (ev) {
            var g = D.groups[Math.round(ev.points[0].x) - 1];  // bars at x = 1…n (outlines: within ±½)
            if (g) { showTurn(g[Math.floor(g.length / 2)]); }
          });
        }
        return gd;
      });
    });
  });

  var T = D.turns ? D.turns.cols : null;
  var NAMES = D.turns ? D.turns.names : [];
  var C = D.colors || {};

  function spansOf(i) {  // [[key, start ms, ms, source, kind], ...] of turn i
    var S = D.turns.spans, out = [], cum = 0;
    for (var j = S.off[i]; j < S.off[i + 1]; j++) {
      out.push([NAMES[S.k[j]], Math.round((cum + S.ds[j]) * 10) / 10, S.ms[j], NAMES[S.src[j]], S.kinds[S.k[j]]]);
      cum += S.ms[j];
    }
    return out;
  }
  function eventsOf(i) {  // [[name, t ms, ± ms, source, raw], ...] of turn i
    var E = D.turns.events, raw = E.raw[String(i)] || [], out = [];
    for (var j = E.off[i]; j < E.off[i + 1]; j++) {
      out.push([NAMES[E.n[j]], E.t[j], E.u[j], NAMES[E.src[j]], raw[j - E.off[i]]]);
    }
    return out;
  }

  function spanColor(key, kind) {
    if (kind === "residual") { return C.residual; }
    if (kind === "unattributed") { return C.unattributed; }
    if (C.stages && C.stages[key]) { return C.stages[key]; }
    var h = 0;
    for (var k = 0; k < key.length; k++) { h = (h * 31 + key.charCodeAt(k)) >>> 0; }
    return C.extra[h % C.extra.length];
  }

  function statusKind(s) {
    if (s === "ok" || s === "no_response") { return s; }
    return s.indexOf("error") === 0 ? "error" : "other";
  }

  function turnFigure(i, wave) {
    var data = [], shapes = [], ann = [];
    var hasWave = !!(wave && !wave.error);
    var layout = {
      height: hasWave ? 440 : 230, margin: {l: 70, r: 10, t: 24, b: 44}, showlegend: false, hovermode: "closest",
      barmode: "overlay", uniformtext: {mode: "hide", minsize: 9},
      xaxis: {title: {text: "ms after the end of user speech (0)"}, zeroline: false},
      yaxis: {domain: hasWave ? [0, 0.3] : [0, 1], type: "category", categoryorder: "array",
              categoryarray: ["stages", "events"], fixedrange: true}
    };
    var lo = T.us_start[i] !== null ? T.us_start[i] : -500, hi = T.a_end[i] !== null ? T.a_end[i] : (T.ttfa[i] || 0) + 500;
    if (hasWave) {
      layout.yaxis2 = {domain: [0.36, 0.66], range: [-1, 1], title: {text: "ear"}, fixedrange: true, zeroline: false};
      layout.yaxis3 = {domain: [0.70, 1], range: [-1, 1], title: {text: "mic"}, fixedrange: true, zeroline: false};
      [["mic", "y3", "#4e79a7"], ["ear", "y2", "#59a14f"]].forEach(function (c) {
        var mins = wave[c[0]][0], maxs = wave[c[0]][1], xs = [], ys = [], k;
        for (k = 0; k < maxs.length; k++) { xs.push(wave.start_ms + (k + 0.5) * wave.bin_ms); ys.push(maxs[k]); }
        for (k = mins.length - 1; k >= 0; k--) { xs.push(wave.start_ms + (k + 0.5) * wave.bin_ms); ys.push(mins[k]); }
        data.push({type: "scatter", mode: "lines", x: xs, y: ys, yaxis: c[1], fill: "toself", fillcolor: c[2],
                   line: {color: c[2], width: 0.5}, hoverinfo: "skip", name: c[0]});
      });
      lo = Math.min(lo, wave.start_ms);
      hi = Math.max(hi, wave.start_ms + wave.bin_ms * wave.mic[1].length);
    }
    var spans = spansOf(i);
    var st = {y: [], x: [], base: [], text: [], hovertext: [], color: []};
    spans.forEach(function (s) {  // one bar trace for all stages (a trace per stage cost ⅓ of the chart's draw)
      var key = s[0], src = s[3], kind = s[4];
      var label = (C.labels && C.labels[key]) || key;
      if (s[2] < 0) { return; }  // a negative span is never a bar: turnInfo lists it with its value
      st.y.push("stages");
      st.x.push(s[2]);
      st.base.push(s[1]);
      st.text.push(esc(label));
      st.hovertext.push(esc(label) + ": " + fmt(s[2], 1) + " ms (" + esc(src) + ")");
      st.color.push(spanColor(key, kind));
    });
    if (st.x.length) {
      data.push({type: "bar", orientation: "h", y: st.y, x: st.x, base: st.base, width: 0.7, text: st.text,
                 hovertext: st.hovertext, marker: {color: st.color, line: {color: "#ffffff", width: 1}},
                 textposition: "inside", insidetextanchor: "middle", textangle: 0,
                 hovertemplate: "%{hovertext}<extra></extra>"});
    }
    var ovl = T.ovl_stage[i], ovlMs = T.ovl_ms[i];
    if (ovl && ovlMs !== null && ovlMs > 0) {  // the parallel stage placed second: what ran beside the first
      var other = ovl === "stt" ? "turn_detection" : "stt", start = null;
      spans.forEach(function (s) { if (s[0] === other && start === null) { start = s[1]; } });
      if (start !== null) {
        var ol = (C.labels && C.labels[ovl]) || ovl, oth = (C.labels && C.labels[other]) || other;
        data.push({type: "bar", orientation: "h", y: ["stages"], x: [ovlMs], base: [start], width: 0.18,
                   offset: 0.36, marker: {color: spanColor(ovl, "stage"), pattern: {shape: "/", size: 4}},
                   hovertemplate: esc(ol) + ": " + fmt(ovlMs, 1) + " ms overlapped beside " + esc(oth) +
                                  " (not summed)<extra></extra>"});
      }
    }
    var ev = eventsOf(i);
    if (ev.length) {
      data.push({type: "scatter", mode: "markers", y: ev.map(function () { return "events"; }),
                 x: ev.map(function (e) { return e[1]; }),
                 error_x: {type: "data", array: ev.map(function (e) { return e[2] || 0; }), visible: true, width: 4},
                 text: ev.map(function (e) { return esc(e[0]) + " (" + esc(e[3]) + ")"; }),
                 marker: {color: "#333333", size: 7, symbol: "diamond"},
                 hovertemplate: "%{text}: %{x:.1f} \u00b1 %{error_x.array:.1f} ms<extra></extra>"});
    }
    var marks = [[T.us_start[i], "user speech start", "#4e79a7"], [0, "user speech end", "#4e79a7"],
                 [T.ttfa[i], "agent audio start (ear)", "#59a14f"], [T.a_end[i], "agent audio end", "#59a14f"]];
    marks.forEach(function (m, k) {
      if (m[0] === null || m[0] === undefined) { return; }
      shapes.push({type: "line", xref: "x", yref: "paper", x0: m[0], x1: m[0], y0: 0, y1: 1,
                   line: {color: m[2], width: 1.5, dash: k === 1 || k === 2 ? "solid" : "dot"}});
      ann.push({x: m[0], y: 1, xref: "x", yref: "paper", yanchor: "bottom", showarrow: false, text: m[1],
                font: {size: 10, color: m[2]}});
    });
    layout.shapes = shapes;
    layout.annotations = ann;
    layout.xaxis.range = [lo - 100, hi + 100];
    return {data: data, layout: layout};
  }

  function turnInfo(i) {
    var box = el("div", "turn-info");
    var p = el("p");
    p.appendChild(el("b", null, "said: "));
    p.appendChild(el("span", "said", T.text[i]));
    box.appendChild(p);
    var q = el("p", null, "status " + T.status[i] + " \u00b7 TTFA " + fmt(T.ttfa[i], 1) + " ms \u00b7 provider TTFT " +
                fmt(T.ttft[i], 1) + " ms \u00b7 gap " + fmt(T.gap[i], 1) + " ms \u00b7 unattributed " +
                fmt(T.unattributed[i], 1) + " ms \u00b7 residual " + fmt(T.residual[i], 1) + " ms");
    box.appendChild(q);
    if (T.ovl_stage[i] && T.ovl_ms[i] !== null) {
      var ovl = T.ovl_stage[i], oth = ovl === "stt" ? "turn_detection" : "stt";
      box.appendChild(el("p", "overlap", ((C.labels && C.labels[ovl]) || ovl) + " ran " + fmt(T.ovl_ms[i], 1) +
                         " ms beside " + ((C.labels && C.labels[oth]) || oth) + " (overlapped, not summed)"));
    }
    spansOf(i).forEach(function (s) {
      if (s[2] < 0) {
        box.appendChild(el("p", "flag negative-span", "anomaly: " + s[0] + " " + fmt(s[2], 1) +
                           " ms (a negative duration: not drawn as a bar)"));
      }
    });
    if (T.error[i]) { box.appendChild(el("p", "error", "error: " + T.error[i])); }
    if (T.invisible[i]) { box.appendChild(el("p", "flag", "provider TTFT measured at an invisible (reasoning) token")); }
    if (T.anomalies[i]) {
      var ul = el("ul", "flag");
      T.anomalies[i].split(";").forEach(function (a) { if (a.trim()) { ul.appendChild(el("li", null, a.trim())); } });
      box.appendChild(el("p", "flag", "anomalies:"));
      box.appendChild(ul);
    }
    return box;
  }

  function eventTable(i) {
    var ev = eventsOf(i);
    if (!ev.length) { return el("p", "note", "no reconciled telemetry events for this turn"); }
    var t = el("table", "events"), head = el("tr");
    ["event", "ms after user speech end", "\u00b1 ms", "source", "raw"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    t.appendChild(head);
    ev.forEach(function (e) {
      var tr = el("tr");
      tr.appendChild(el("td", null, e[0]));
      tr.appendChild(el("td", null, fmt(e[1], 1)));
      tr.appendChild(el("td", null, fmt(e[2], 1)));
      tr.appendChild(el("td", null, e[3]));
      tr.appendChild(el("td", "raw", e[4] === undefined ? "" : e[4]));
      t.appendChild(tr);
    });
    var d = el("details");
    d.appendChild(el("summary", null, "telemetry events (" + ev.length + ")"));
    d.appendChild(t);
    return d;
  }

  function recordingLink(i) {
    var R = D.turns.recordings, href = R.paths[R.idx[i]];
    if (!R.exists[R.idx[i]]) { return el("span", "note", "recording " + href + " is not in the run folder"); }
    var off = T.us_end_s[i] !== null ? Math.max(0, T.us_end_s[i] - 2) : null;
    var a = el("a", null, "full recording");
    a.setAttribute("href", href + (off !== null ? "#t=" + off.toFixed(2) : ""));
    return a;
  }

  function turnBody(container, i) {  // the card's text, player and event table; returns the empty chart box
    container.replaceChildren();
    var wave = D.turns.waves[String(i)];
    container.appendChild(turnInfo(i));
    var fig = el("div", "fig turn-fig");
    container.appendChild(fig);
    var media = el("p", "media");
    if (wave && !wave.error) {
      var audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "metadata";
      audio.src = wave.audio;
      media.appendChild(audio);
      media.appendChild(document.createTextNode(" " + fmt(wave.duration_s, 1) + " s clip (mic left, ear right) \u00b7 "));
      var a = el("a", null, "full recording");
      a.setAttribute("href", wave.recording);
      media.appendChild(a);
      if (wave.note) { media.appendChild(el("span", "note", " " + wave.note)); }
    } else {
      if (wave && wave.error) { media.appendChild(el("span", "note", wave.error + " \u00b7 ")); }
      else { media.appendChild(el("span", "note", "no waveform embedded for this turn (only the featured turns carry sound) \u00b7 ")); }
      media.appendChild(recordingLink(i));
    }
    container.appendChild(media);
    container.appendChild(eventTable(i));
    fig.style.minHeight = (wave && !wave.error ? 440 : 230) + "px";  // turnFigure's height: no shift when drawn
    return fig;
  }

  function drawTurnFigure(fig, i) {
    var f = turnFigure(i, D.turns.waves[String(i)]);
    return Plotly.newPlot(fig, f.data, f.layout, CONFIG);
  }

  function drawTurn(container, i) { return drawTurnFigure(turnBody(container, i), i); }

  function showTurn(i) {
    var box = document.getElementById("turn-detail");
    if (!box) { return; }
    box.hidden = false;
    box.setAttribute("data-row", String(i));
    document.getElementById("turn-detail-title").textContent =
      "call " + T.call[i] + " turn " + T.turn[i] + " \u2014 " + T.status[i] +
      (T.ttfa[i] !== null ? ", TTFA " + fmt(T.ttfa[i], 0) + " ms" : "");
    drawTurn(box.querySelector(".turn-body"), i).then(function () {
      box.scrollIntoView({block: "start"});
    });
  }
  window.vlhShowTurn = showTurn;

  var state = {filter: "all", sort: null, dir: 1, page: 0, size: 50};

  function selected() {
    var idx = [], i;
    for (i = 0; i < T.call.length; i++) {
      var k = statusKind(T.status[i]);
      if (state.filter === "all" || state.filter === k || (state.filter === "anomaly" && T.anomalies[i])) { idx.push(i); }
    }
    if (state.sort) {
      var col = T[state.sort], dir = state.dir;
      idx.sort(function (a, b) {
        var x = col[a], y = col[b];
        if (x === y) { return a - b; }
        if (x === null) { return 1; }
        if (y === null) { return -1; }
        return (x < y ? -1 : 1) * dir;
      });
    }
    return idx;
  }

  function renderTable() {
    var tbody = document.querySelector("#turn-table tbody");
    if (!tbody) { return; }
    var idx = selected(), pages = Math.max(1, Math.ceil(idx.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    var from = state.page * state.size, to = Math.min(idx.length, from + state.size);
    tbody.replaceChildren();
    for (var n = from; n < to; n++) {
      var i = idx[n], tr = el("tr");
      tr.setAttribute("data-row", String(i));
      tr.className = "status-" + statusKind(T.status[i]);
      [T.call[i], T.turn[i], T.status[i], fmt(T.ttfa[i], 1), fmt(T.ttft[i], 1), fmt(T.gap[i], 1)].forEach(function (v) {
        tr.appendChild(el("td", null, v));
      });
      tr.appendChild(el("td", "said", T.text[i]));
      var flags = [];
      if (T.anomalies[i]) { flags.push("anomaly"); }
      if (T.invisible[i]) { flags.push("invisible TTFT"); }
      if (T.stutter[i]) { flags.push("stutter"); }
      if (D.turns.waves[String(i)]) { flags.push("\u266a"); }
      tr.appendChild(el("td", "flags", flags.join(", ")));
      tr.addEventListener("click", showTurn.bind(null, i));
      tbody.appendChild(tr);
    }
    var pager = document.getElementById("turn-pager");
    pager.replaceChildren();
    var prev = el("button", null, "\u2190"), next = el("button", null, "\u2192");
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
    prev.addEventListener("click", function () { state.page -= 1; renderTable(); });
    next.addEventListener("click", function () { state.page += 1; renderTable(); });
    pager.appendChild(prev);
    pager.appendChild(el("span", null, " rows " + (idx.length ? from + 1 : 0) + "\u2013" + to + " of " + idx.length + " "));
    pager.appendChild(next);
  }

  if (T) {
    (D.turns.featured || []).forEach(function (f) {
      var card = document.querySelector('.turn-card[data-row="' + f[1] + '"] .turn-body');
      if (card) {
        var fig = turnBody(card, f[1]);
        addJob(fig, "turn " + f[1], drawTurnFigure.bind(null, fig, f[1]));
      }
    });
    var filter = document.getElementById("turn-filter");
    if (filter) {
      filter.addEventListener("change", function () { state.filter = filter.value; state.page = 0; renderTable(); });
    }
    document.querySelectorAll("#turn-table th[data-sort]").forEach(function (th) {
      th.addEventListener("click", function () {
        var k = th.getAttribute("data-sort");
        state.dir = state.sort === k ? -state.dir : 1;
        state.sort = k;
        renderTable();
      });
    });
    renderTable();
  }

  startDrawing();
  Promise.all(jobs.map(function (j) { return j.done; })).then(function () {
    mark("vlh:all-drawn");
    if (observer) { observer.disconnect(); }
    window.__vlhFirstScreen = true;
    window.__vlhReady = true;
    document.body.setAttribute("data-ready", "1");
  }, function (err) {
    window.__vlhReady = "error";
    console.error("vlh report: a chart failed: " + err);
  });
}());
