// vigil dashboard: the accounts table and one account's page, over the read API.
// The key lives in sessionStorage only; every node is built with textContent
// (no HTML from data); charts are uPlot, served from this origin.
"use strict";
(function () {
  const KEY = "vigil.read-key";
  const state = { sort: "health", order: "asc", days: 30, band: "", plan: "", tag: "", cursors: [null], page: 0 };
  const charts = {};
  window.vigilCharts = charts;
  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function status(text, isError) {
    $("status").textContent = text || "";
    $("status").classList.toggle("error", Boolean(isError));
  }
  function show(section) {
    for (const id of ["login", "list", "account"]) $(id).hidden = id !== section;
  }
  function pct(x, digits) { return x === null || x === undefined ? "–" : (x * 100).toFixed(digits === undefined ? 1 : digits) + " %"; }
  function num(x) { return x === null || x === undefined ? "–" : Number(x).toLocaleString("en-US"); }
  function today() { return new Date().toISOString().slice(0, 10); }
  function daysBefore(day, n) { const d = new Date(day + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() - n); return d.toISOString().slice(0, 10); }
  function bucketTime(bucket) {
    const [date, hour] = bucket.split("T");
    const [y, m, d] = date.split("-").map(Number);
    return Date.UTC(y, m - 1, d, hour ? Number(hour) : 0) / 1000;
  }

  class KeyRefused extends Error {}

  async function api(path) {
    const key = sessionStorage.getItem(KEY);
    if (!key) throw new KeyRefused("no key");
    const response = await fetch(path, { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(KEY);
      throw new KeyRefused("refused");
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = body.error ? body.error.message : "HTTP " + response.status;
      throw new Error(message + (body.request_id ? " (request " + body.request_id + ")" : ""));
    }
    return body;
  }

  function failed(error) {
    if (error instanceof KeyRefused) {
      show("login");
      status(error.message === "refused" ? "That key was refused: give a key with the read scope." : "Give a key with the read scope.", true);
      $("key").focus();
    } else {
      status(error.message, true);
    }
  }

  // ---------------------------------------------------------------- list
  function listQuery() {
    const to = today();
    const q = new URLSearchParams({ from: daysBefore(to, state.days - 1), to, sort: state.sort, order: state.order, limit: "25" });
    if (state.band) q.set("band", state.band);
    if (state.plan) q.set("plan", state.plan);
    if (state.tag) q.set("tag", state.tag);
    const cursor = state.cursors[state.page];
    if (cursor) q.set("cursor", cursor);
    return q;
  }

  function sparkline(container, values) {
    const xs = values.map((_, i) => i);
    const opts = {
      width: 120, height: 28, class: "spark-plot",
      legend: { show: false }, cursor: { show: false }, select: { show: false },
      axes: [{ show: false }, { show: false }],
      scales: { x: { time: false } },
      series: [{}, { stroke: "#24406e", width: 1, fill: "rgba(36,64,110,0.12)", points: { show: false } }],
    };
    const plot = new uPlot(opts, [xs, values], container);
    container.dataset.points = String(values.length);
    return plot;
  }

  async function loadList() {
    show("list");
    status("Loading accounts…");
    for (const th of document.querySelectorAll("#accounts th[data-sort]")) {
      th.setAttribute("aria-sort", th.dataset.sort === state.sort ? (state.order === "asc" ? "ascending" : "descending") : "none");
    }
    let body;
    try {
      body = await api("/v1/accounts?" + listQuery().toString());
    } catch (error) { failed(error); return; }
    const tbody = document.querySelector("#accounts tbody");
    tbody.replaceChildren();
    for (const a of body.accounts) {
      const s = a.summary;
      const tr = el("tr", null, "row");
      tr.tabIndex = 0;
      tr.dataset.account = a.account;
      tr.dataset.band = s.health.band;
      tr.dataset.calls = String(s.calls);
      const name = el("td");
      name.append(el("strong", a.account));
      name.append(el("div", a.registered ? a.name : "not registered", a.registered ? "caption" : "caption unregistered"));
      tr.append(name);
      tr.append(el("td", a.plan || "–"));
      const health = el("td");
      health.append(el("span", s.health.score, "chip " + s.health.band));
      health.title = s.health.penalties.map((p) => "−" + p.points + " points: " + p.reason).join("\n") || "no penalty";
      tr.append(health);
      tr.append(el("td", num(s.calls), "num"));
      tr.append(el("td", s.trend === null ? "new" : (s.trend >= 0 ? "+" : "") + pct(s.trend, 0), "num"));
      tr.append(el("td", pct(s.error_rate), "num"));
      tr.append(el("td", s.latency_p95_ms === null ? "–" : s.latency_p95_ms + " ms", "num"));
      tr.append(el("td", num(s.active_users), "num"));
      tr.append(el("td", pct(s.quota_share, 0), "num"));
      tr.append(el("td", s.last_seen || "–"));
      tr.append(el("td", num(a.open_tickets), "num"));
      tr.append(el("td", s.billing_status, s.billing_status === "failed" ? "failed" : ""));
      const spark = el("td");
      const box = el("div", null, "spark");
      spark.append(box);
      tr.append(spark);
      tr.addEventListener("click", () => openAccount(a.account));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") openAccount(a.account); });
      tbody.append(tr);
      sparkline(box, s.sparkline);
    }
    const first = state.page * 25 + 1;
    $("list-caption").textContent = body.total + " accounts · " + body.window.from + " to " + body.window.to +
      " (UTC) · sorted by " + state.sort.replace("_", " ") + (state.order === "asc" ? ", ascending" : ", descending");
    $("page-label").textContent = body.accounts.length ? first + "–" + (first + body.accounts.length - 1) + " of " + body.total : "no account";
    state.cursors[state.page + 1] = body.next_cursor;
    $("prev").disabled = state.page === 0;
    $("next").disabled = !body.next_cursor;
    status("");
  }

  function resetPages() { state.cursors = [null]; state.page = 0; }

  // ---------------------------------------------------------------- account
  function openAccount(account) { location.hash = "account=" + encodeURIComponent(account); }

  // Dashed red lines where alerts fired (unix seconds), drawn on the plot's canvas.
  function alertMarks(marks) {
    return {
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#b3261e";
          ctx.lineWidth = 2;
          ctx.setLineDash([6, 4]);
          for (const t of marks) {
            const x = u.valToPos(t, "x", true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          }
          ctx.restore();
        }],
      },
    };
  }

  function chart(id, title, series, data, marks) {
    const container = $(id);
    container.replaceChildren();
    if (charts[id]) charts[id].destroy();
    const width = Math.max(320, container.clientWidth || 520);
    // A series with `scale: "right"` gets its own axis on the right (units beside calls).
    const right = series.some((s) => s.scale === "right");
    const opts = {
      width, height: 200,
      scales: { x: { time: true } },
      series: [{}].concat(series.map((s) => ({ label: s.label, stroke: s.color, width: 2, fill: s.fill, spanGaps: false, scale: s.scale || "y" }))),
      axes: [{}, { size: 60, scale: "y" }].concat(right ? [{ size: 60, scale: "right", side: 1, grid: { show: false } }] : []),
      legend: { live: false },
      plugins: marks && marks.length ? [alertMarks(marks)] : [],
    };
    charts[id] = new uPlot(opts, data, container);
    const first = data[0][0], last = data[0][data[0].length - 1];
    container.dataset.alertMarks = String((marks || []).filter((t) => t >= first && t <= last + 86400).length);
    const points = data.slice(1).reduce((n, ys) => n + ys.filter((y) => y !== null && y !== undefined).length, 0);
    container.dataset.points = String(points);
    container.setAttribute("aria-label", title);
  }

  async function loadAccount(account) {
    show("account");
    status("Loading " + account + "…");
    const to = today();
    let a;
    try {
      a = await api("/v1/accounts/" + encodeURIComponent(account) + "?" + new URLSearchParams({ from: daysBefore(to, 89), to, granularity: "day" }));
    } catch (error) { failed(error); return; }
    const s = a.summary;
    $("account-title").textContent = a.account + (a.registered ? " · " + a.name : " · not registered");
    const meta = [a.plan ? "plan " + a.plan : "no plan", a.monthly_quota !== undefined && a.monthly_quota !== null ? "quota " + num(a.monthly_quota) + " units/month" : "no quota"];
    if (a.relationship_start) meta.push("customer since " + a.relationship_start);
    if (a.relationship_end) meta.push("relationship ends " + a.relationship_end);
    if (a.tags && a.tags.length) meta.push("tags " + a.tags.join(", "));
    $("account-meta").textContent = meta.join(" · ");
    const chip = $("health-chip");
    chip.textContent = s.health.score;
    chip.className = "chip " + s.health.band;
    const penalties = $("penalties");
    penalties.replaceChildren();
    if (!s.health.penalties.length) penalties.append(el("li", "Nothing pulls the score down."));
    for (const p of s.health.penalties) penalties.append(el("li", "−" + p.points + " points: " + p.reason));
    $("quota-month").textContent = s.billing_month;
    const meter = $("quota-meter");
    meter.value = Math.min(1, s.quota_share || 0);
    $("quota-label").textContent = s.quota_share === null ? num(s.units_billing_month) + " units (no quota set)" : num(s.units_billing_month) + " of " + num(a.monthly_quota) + " units (" + pct(s.quota_share, 0) + ")";
    const figures = $("figures");
    figures.replaceChildren();
    const rows = [["Calls", num(s.calls)], ["Trend", s.trend === null ? "new" : pct(s.trend, 0)], ["Error rate", pct(s.error_rate)],
      ["p50 / p95", (s.latency_p50_ms === null ? "–" : s.latency_p50_ms) + " / " + (s.latency_p95_ms === null ? "–" : s.latency_p95_ms) + " ms"],
      ["Active users", num(s.active_users)], ["Last seen", s.last_seen || "–"], ["Open tickets", num(a.open_tickets)], ["Billing", s.billing_status]];
    for (const [k, v] of rows) { figures.append(el("dt", k)); figures.append(el("dd", v)); }

    const xs = a.series.map((p) => bucketTime(p.bucket));
    const col = (name) => a.series.map((p) => p[name]);
    const fired = a.alerts.map((al) => Date.parse(al.fired_at) / 1000);
    chart("chart-usage", "calls and units; dashed lines: alerts fired", [{ label: "calls", color: "#24406e" }, { label: "units (right axis)", color: "#6b8e23", scale: "right" }], [xs, col("calls"), col("units")], fired);
    chart("chart-errors", "errors", [{ label: "4xx", color: "#a15c00" }, { label: "5xx", color: "#b3261e" }], [xs, col("errors_4xx"), col("errors_5xx")]);
    chart("chart-latency", "latency", [{ label: "p50 ms", color: "#24406e" }, { label: "p95 ms", color: "#b3261e" }], [xs, col("latency_p50_ms"), col("latency_p95_ms")]);
    chart("chart-users", "active users", [{ label: "users", color: "#1f7a3a", fill: "rgba(31,122,58,0.1)" }], [xs, col("active_users")]);

    const endpoints = document.querySelector("#endpoints tbody");
    endpoints.replaceChildren();
    for (const e of a.top_endpoints.endpoints) {
      const tr = el("tr"); tr.append(el("td", e.endpoint)); tr.append(el("td", num(e.calls), "num")); endpoints.append(tr);
    }
    if (!a.top_endpoints.endpoints.length) { const tr = el("tr"); tr.append(el("td", "no API calls")); endpoints.append(tr); }
    const events = document.querySelector("#events tbody");
    events.replaceChildren();
    for (const e of a.recent_events) {
      const tr = el("tr");
      tr.append(el("td", e.time.replace("T", " ").replace("Z", "")));
      tr.append(el("td", e.source === "support_ticket" ? "support" : "billing"));
      tr.append(el("td", e.reference));
      tr.append(el("td", e.status, e.status === "failed" ? "failed" : ""));
      tr.append(el("td", e.priority ? "priority " + e.priority : (e.amount ? e.amount + " " + e.currency : "")));
      events.append(tr);
    }
    if (!a.recent_events.length) { const tr = el("tr"); tr.append(el("td", "none")); events.append(tr); }
    const alerts = $("alerts");
    alerts.replaceChildren();
    if (!a.alerts.length) alerts.append(el("li", "No alert has fired for this account."));
    const when = (t) => t.replace("T", " ").replace(":00Z", "").replace("Z", "");
    for (const al of a.alerts) {
      const li = el("li", null, "alert " + al.state);
      li.append(el("span", al.severity, "severity " + al.severity));
      li.append(el("strong", " " + al.rule));
      li.append(el("span", ": " + (al.summary || al.kind)));
      li.append(el("span", " · fired " + when(al.fired_at) + (al.resolved_at ? " · resolved " + when(al.resolved_at) : " · firing"), "when"));
      alerts.append(li);
    }
    status("");
  }

  // ---------------------------------------------------------------- wiring
  function route() {
    if (!sessionStorage.getItem(KEY)) { show("login"); status("Give a key with the read scope."); return; }
    const match = location.hash.match(/^#account=(.+)$/);
    if (match) loadAccount(decodeURIComponent(match[1])); else loadList();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY, $("key").value.trim());
      $("key").value = "";
      route();
    });
    $("filters").addEventListener("submit", (e) => {
      e.preventDefault();
      if (!$("filters").reportValidity()) return;
      state.days = Number($("window-days").value);
      state.band = $("band").value;
      state.plan = $("plan").value.trim();
      state.tag = $("tag").value.trim();
      resetPages();
      loadList();
    });
    for (const th of document.querySelectorAll("#accounts th[data-sort]")) {
      th.tabIndex = 0;
      const sort = () => {
        if (state.sort === th.dataset.sort) state.order = state.order === "asc" ? "desc" : "asc";
        else { state.sort = th.dataset.sort; state.order = ["health", "account"].includes(state.sort) ? "asc" : "desc"; }
        resetPages();
        loadList();
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter") sort(); });
    }
    $("prev").addEventListener("click", () => { if (state.page > 0) { state.page -= 1; loadList(); } });
    $("next").addEventListener("click", () => { if (state.cursors[state.page + 1]) { state.page += 1; loadList(); } });
    $("back").addEventListener("click", () => { location.hash = ""; });
    $("forget-key").addEventListener("click", () => { sessionStorage.removeItem(KEY); route(); });
    window.addEventListener("hashchange", route);
    route();
  });
})();
