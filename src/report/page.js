// The HTML report's script: loads data.js (window.PORTSYNTH_REPORT) with a
// <script> element, which works from file:// where fetch() does not, renders
// every section from it, and loads it again every RELOAD_MS until the run
// has ended. Data reaches the page as text only: textContent, createTextNode
// and setAttribute of plain attributes; never as markup.
(function () {
  "use strict";
  const RELOAD_MS = 2500;
  const SVG = "http://www.w3.org/2000/svg";
  const view = { sortKey: "", sortUp: true, filter: "", status: "", data: null, renders: 0 };

  function load() {
    document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
    const old = document.getElementById("report-data");
    if (old) old.remove();
    const script = document.createElement("script");
    script.id = "report-data";
    script.src = "data.js?t=" + Date.now();
    script.onload = function () {
      const data = window.PORTSYNTH_REPORT;
      if (data) {
        view.data = data;
        render();
      }
      again(data);
    };
    script.onerror = function () { again(null); };
    document.head.appendChild(script);
  }

  function again(data) {
    if (data && data.run.ended) {
      document.body.dataset.state = "ended";
      return;
    }
    setTimeout(load, RELOAD_MS);
  }

  // An element with attributes and children (strings become text nodes).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttributes(node, attrs);
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, title) {
    const node = document.createElementNS(SVG, tag);
    setAttributes(node, attrs);
    if (title) {
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = title;
      node.append(tip);
    }
    return node;
  }

  function svgText(x, y, text) {
    const node = svg("text", { x: x, y: y });
    node.textContent = text;
    return node;
  }

  function setAttributes(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) throw new Error("no event attributes from data");
      node.setAttribute(key, String(value));
    }
  }

  function seconds(value) {
    if (value === null || value === undefined) return "";
    const s = Math.round(value);
    if (s < 60) return value < 10 ? value.toFixed(1) + " s" : s + " s";
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
    return (h ? h + " h " : "") + m + " min " + (h ? "" : rest + " s");
  }

  function gib(bytes) {
    return ((bytes || 0) / 1073741824).toFixed(1);
  }

  function time(ms) {
    return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "";
  }

  function statusBadge(status) {
    return el("span", { class: "status " + status, "data-status": status }, String(status).replace(/_/g, " "));
  }

  function logLink(port) {
    return port.log ? el("a", { href: port.log, class: "log-link" }, "log") : "";
  }

  function render() {
    const data = view.data;
    renderHeader(data);
    renderSlots(data);
    renderFailures(data);
    renderDiff(data);
    renderPorts(data);
    renderSkipped(data);
    renderTimeline(data);
    renderPhases(data);
    renderHistory(data);
    renderNotices(data);
    view.renders += 1;
    document.body.dataset.renders = String(view.renders);
    document.body.dataset.state = data.run.ended ? "ended" : "running";
  }

  function renderHeader(data) {
    const run = data.run, counts = run.counts;
    document.getElementById("run-command").textContent = run.command;
    const status = document.getElementById("run-status");
    status.textContent = run.status;
    status.className = "status " + run.status;
    document.getElementById("run-id").textContent = "run " + run.id + ", started " + time(run.started_ms);
    const progress = document.getElementById("run-progress");
    progress.max = Math.max(1, run.planned);
    progress.value = run.ended ? progress.max : Math.min(run.done, run.planned);
    const figures = [
      ["built", counts.success], ["failed", counts.failed], ["running", counts.running],
      ["skipped", counts.skipped], ["not buildable", counts.not_buildable], ["ignored", counts.ignored],
      ["up to date", counts.up_to_date], ["interrupted", counts.interrupted],
      ["done", run.done + " / " + run.planned], ["elapsed", seconds(run.elapsed_seconds)],
    ];
    if (run.eta_seconds !== null && run.eta_seconds !== undefined) figures.push(["ETA", seconds(run.eta_seconds)]);
    if (run.workers) figures.push(["workers", run.workers]);
    if (run.jobs) figures.push(["jobs", run.jobs_used + " / " + run.jobs]);
    if (run.load1 !== null && run.load1 !== undefined) figures.push(["load", run.load1.toFixed(2)]);
    if (run.swap_used !== null && run.swap_used !== undefined) figures.push(["swap", Math.round(run.swap_used * 100) + " %"]);
    if (run.memory_budget) figures.push(["memory", gib(run.memory_expected) + " / " + gib(run.memory_budget) + " GiB expected"]);
    document.getElementById("run-figures").replaceChildren(
      ...figures.map(([name, value]) => el("div", { "data-figure": name }, el("dt", {}, name), el("dd", {}, value))));
    document.getElementById("run-waiting").textContent = run.waiting ? "waiting: " + run.waiting : "";
    document.getElementById("updated").textContent =
      (run.ended ? "final, written " : "live, updated ") + time(run.updated_ms);
  }

  function renderSlots(data) {
    const rows = data.slots.map((slot) => slot.origin
      ? el("tr", { "data-slot": slot.slot, "data-origin": slot.origin },
          el("td", { class: "num" }, slot.slot), el("td", {}, slot.origin), el("td", {}, slot.phase || ""),
          el("td", { class: "num" }, seconds(slot.seconds)), el("td", { class: "num" }, slot.lines ?? ""))
      : el("tr", { "data-slot": slot.slot, class: "idle" },
          el("td", { class: "num" }, slot.slot), el("td", { colspan: 4 }, data.run.ended ? "done" : "idle")));
    document.querySelector("#slots tbody").replaceChildren(...rows);
  }

  function renderFailures(data) {
    const failed = data.ports.filter((p) => p.status === "failed" || p.status === "not_buildable" || p.status === "interrupted");
    const items = failed.map((port) => el("div", { class: "failure", "data-origin": port.origin },
      el("h3", {}, port.origin, " ", statusBadge(port.status), " ", port.phase ? "in phase " + port.phase : "", " ", logLink(port)),
      el("p", { class: "reason" }, port.reason || ""),
      port.log_tail.length ? el("pre", { class: "log-tail" }, port.log_tail.join("\n")) : null));
    document.getElementById("failures").replaceChildren(
      ...(items.length ? items : [el("p", { class: "empty" }, "No failures.")]));
  }

  function renderDiff(data) {
    const box = document.getElementById("diff");
    if (!data.run.ended) return;
    const diff = data.diff;
    if (!diff) {
      box.replaceChildren(el("p", { class: "empty" }, "No earlier run that built something to compare with."));
      return;
    }
    const list = (id, title, items, line) => [
      el("h3", {}, title + " (" + items.length + ")"),
      el("ul", { id: id, class: "diff-list" }, ...items.map((item) => el("li", { "data-origin": item.origin || item }, ...line(item)))),
    ];
    box.replaceChildren(
      el("p", {}, "Run " + diff.new.id + " against run " + diff.old.id + " (" + diff.old.command + ", " + time(diff.old.started_ms) + ")"),
      ...list("diff-new-failures", "New failures", diff.new_failures, (f) => [
        el("strong", {}, f.origin), " in phase " + (f.phase || "-") + ": " + (f.reason || ""),
        el("br"), "changed since its last success: " + (f.inputs_changed || "unknown")]),
      ...list("diff-fixed", "Fixed", diff.fixed, (o) => [o]),
      ...list("diff-newly-skipped", "Newly skipped", diff.newly_skipped, (s) => [el("strong", {}, s.origin), " " + (s.reason || "")]),
      ...list("diff-still-failing", "Still failing", diff.still_failing, (o) => [o]),
      ...list("diff-durations", "Durations that moved", diff.durations, (d) => [
        el("strong", {}, d.origin), " " + seconds(d.old_s) + " → " + seconds(d.new_s)]));
  }

  // The table's order until a column is chosen: failures first, then what
  // runs, then the rest; each in the order the run told of them.
  const STATUS_RANK = ["failed", "not_buildable", "interrupted", "running", "skipped", "ignored", "success", "up_to_date"];

  function sortValue(port, key) {
    const value = port[key];
    return value === null || value === undefined ? "" : value;
  }

  function renderPorts(data) {
    let ports = data.ports.map((port, index) => Object.assign({ order: index }, port));
    const needle = view.filter.toLowerCase();
    if (needle) {
      ports = ports.filter((p) => [p.origin, p.reason, p.why, p.phase, p.status, p.pkgname]
        .some((text) => text && String(text).toLowerCase().includes(needle)));
    }
    if (view.status) ports = ports.filter((p) => p.status === view.status);
    const key = view.sortKey;
    ports.sort((a, b) => {
      if (!key) return STATUS_RANK.indexOf(a.status) - STATUS_RANK.indexOf(b.status) || a.order - b.order;
      const x = sortValue(a, key), y = sortValue(b, key);
      const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return (view.sortUp ? order : -order) || a.order - b.order;
    });
    const rows = ports.map((p) => el("tr", { "data-origin": p.origin, "data-status": p.status },
      el("td", {}, p.origin), el("td", {}, statusBadge(p.status)), el("td", {}, p.phase || ""),
      el("td", { class: "num" }, seconds(p.seconds)), el("td", { class: "num" }, p.make_jobs ?? ""),
      el("td", { class: "num" }, p.slot ?? ""), el("td", {}, p.why || ""), el("td", {}, p.reason || ""),
      el("td", {}, logLink(p))));
    document.querySelector("#ports tbody").replaceChildren(...rows);
    document.getElementById("ports-shown").textContent = ports.length + " of " + data.ports.length + " ports";
    for (const th of document.querySelectorAll("#ports th[data-key]")) {
      th.classList.toggle("sorted-up", th.dataset.key === key && view.sortUp);
      th.classList.toggle("sorted-down", th.dataset.key === key && !view.sortUp);
    }
  }

  function renderSkipped(data) {
    const skipped = data.ports.filter((p) => p.status === "skipped" || p.status === "ignored");
    const items = skipped.map((p) => el("li", { "data-origin": p.origin },
      el("strong", {}, p.origin), " ", statusBadge(p.status), " ", p.reason || "",
      p.skip_chain.length ? el("div", { class: "chain-links" }, p.skip_chain.join(" → ")) : null));
    document.getElementById("skipped").replaceChildren(...(items.length ? items : [el("li", { class: "empty" }, "None.")]));
  }

  // One row per slot, one bar per build from its start to its end (or now).
  function renderTimeline(data) {
    const builds = data.ports.filter((p) => p.started_ms && p.slot);
    const box = document.getElementById("timeline");
    if (!builds.length) {
      box.replaceChildren(el("p", { class: "empty" }, "No build started yet."));
      return;
    }
    const start = Math.min(data.run.started_ms || Infinity, ...builds.map((p) => p.started_ms));
    const end = Math.max(data.run.updated_ms, ...builds.map((p) => p.ended_ms || data.run.updated_ms));
    const span = Math.max(1, end - start);
    const slots = Array.from(new Set(data.slots.map((s) => s.slot).concat(builds.map((p) => p.slot)))).sort((a, b) => a - b);
    const [left, width, row] = [60, 940, 26];
    const height = slots.length * row + 30;
    const chart = svg("svg", { viewBox: "0 0 1000 " + height, role: "img", "aria-label": "builds per slot over time" });
    slots.forEach((slot, i) => {
      chart.append(svgText(4, i * row + 18, "slot " + slot));
      chart.append(svg("line", { class: "axis", x1: left, x2: left + width, y1: (i + 1) * row, y2: (i + 1) * row }));
    });
    for (const p of builds) {
      const x = left + ((p.started_ms - start) / span) * width;
      const w = Math.max(2, (((p.ended_ms || data.run.updated_ms) - p.started_ms) / span) * width);
      const y = slots.indexOf(p.slot) * row + 4;
      const classes = "bar " + p.status + (p.critical ? " critical" : "");
      chart.append(svg("rect", { class: classes, x: x.toFixed(1), y: y, width: w.toFixed(1), height: row - 8, rx: 2, "data-origin": p.origin },
        p.origin + " (" + p.status + ", " + seconds(p.seconds) + ")" + (p.critical ? ", on the critical path" : "")));
    }
    chart.append(svgText(left, height - 6, "0 s … " + seconds(span / 1000)));
    const path = data.critical_path.length ? "Critical path: " + data.critical_path.join(" → ") : "";
    box.replaceChildren(chart, el("p", { id: "critical-path" }, path));
  }

  // Distinct colors, given to the phases in the order they first appear.
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#8c564b"];

  function phaseColor(names, name) {
    return PALETTE[names.indexOf(name) % PALETTE.length];
  }

  function renderPhases(data) {
    const built = data.ports.filter((p) => p.phases.length);
    const box = document.getElementById("phases");
    if (!built.length) {
      box.replaceChildren(el("p", { class: "empty" }, "No build has finished yet."));
      return;
    }
    const total = (p) => p.phases.reduce((sum, phase) => sum + phase.seconds, 0);
    const longest = Math.max(...built.map(total), 0.001);
    const names = Array.from(new Set(built.flatMap((p) => p.phases.map((phase) => phase.phase))));
    const legend = el("p", { class: "phase-legend" }, ...names.map((name) => {
      const swatch = el("i");
      swatch.style.background = phaseColor(names, name);
      return el("span", {}, swatch, name);
    }));
    const rows = built.sort((a, b) => total(b) - total(a)).map((p) => {
      const bar = el("div", { class: "phase-bar" }, ...p.phases.map((phase) => {
        const part = el("span", { title: phase.phase + ": " + seconds(phase.seconds), "data-phase": phase.phase });
        part.style.width = ((phase.seconds / longest) * 100).toFixed(2) + "%";
        part.style.background = phaseColor(names, phase.phase);
        return part;
      }));
      return el("div", { class: "phase-row", "data-origin": p.origin }, el("span", {}, p.origin), bar, el("span", { class: "num" }, seconds(total(p))));
    });
    box.replaceChildren(legend, ...rows);
  }

  // Bars: each run's duration; the red line: its failures (own scale).
  function renderHistory(data) {
    const runs = data.history.filter((r) => r.seconds !== null).slice().reverse();
    const box = document.getElementById("history");
    if (!runs.length) {
      box.replaceChildren(el("p", { class: "empty" }, "No finished run yet."));
      return;
    }
    const [left, top, width, height] = [50, 10, 930, 140];
    const longest = Math.max(...runs.map((r) => r.seconds), 1);
    const most = Math.max(...runs.map((r) => r.failed), 1);
    const step = width / runs.length;
    const chart = svg("svg", { viewBox: "0 0 1000 190", role: "img", "aria-label": "run durations and failures" });
    chart.append(svg("line", { class: "axis", x1: left, x2: left + width, y1: top + height, y2: top + height }));
    const points = [];
    runs.forEach((r, i) => {
      const h = (r.seconds / longest) * height;
      const x = left + i * step + step * 0.15;
      const current = r.id === data.run.id;
      chart.append(svg("rect", { class: "duration" + (current ? " current" : ""), x: x.toFixed(1), y: (top + height - h).toFixed(1),
        width: (step * 0.7).toFixed(1), height: h.toFixed(1), "data-run": r.id },
        r.command + ", " + time(r.started_ms) + ": " + seconds(r.seconds) + ", " + r.built + " built, " + r.failed + " failed (" + r.status + ")"));
      const cx = left + i * step + step / 2, cy = top + height - (r.failed / most) * height;
      points.push(cx.toFixed(1) + "," + cy.toFixed(1));
      chart.append(svg("circle", { class: "failure-dot", cx: cx.toFixed(1), cy: cy.toFixed(1), r: 3 }, r.failed + " failed"));
    });
    chart.append(svg("polyline", { class: "failures", points: points.join(" ") }));
    chart.append(svgText(2, top + 10, seconds(longest)), svgText(2, top + height, "0"),
      svgText(left, 185, "bars: duration of the last " + runs.length + " runs (oldest left); red: failed ports (max " + most + ")"));
    box.replaceChildren(chart);
  }

  function renderNotices(data) {
    const items = data.notices.map((n) => el("li", {}, n));
    document.getElementById("notices").replaceChildren(...(items.length ? items : [el("li", { class: "empty" }, "None.")]));
  }

  function wireControls() {
    document.getElementById("port-filter").addEventListener("input", (e) => {
      view.filter = e.target.value;
      if (view.data) renderPorts(view.data);
    });
    document.getElementById("status-filter").addEventListener("change", (e) => {
      view.status = e.target.value;
      if (view.data) renderPorts(view.data);
    });
    for (const th of document.querySelectorAll("#ports th[data-key]")) {
      th.addEventListener("click", () => {
        view.sortUp = view.sortKey === th.dataset.key ? !view.sortUp : true;
        view.sortKey = th.dataset.key;
        if (view.data) renderPorts(view.data);
      });
    }
  }

  wireControls();
  load();
})();
