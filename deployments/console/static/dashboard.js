// The router's dashboard: polls GET v1/console/state every second with the
// cursors of its last answer and applies what changed (series points by slot,
// routing rows, new recent turns). The admin key lives in sessionStorage and
// travels only in the Authorization header. No library: charts are SVG.
"use strict";

(() => {
  const KEY_STORAGE = "nemo-admin-key";
  const POLL_MS = 1000;
  const MAX_TURNS = 200;
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (selector) => document.querySelector(selector);
  const model = {
    cursor: "", turnsCursor: 0, meta: null, generation: 0,  // generation: bumped when the turn filter changes
    series: new Map(),    // "group\u0000endpoint" ("" endpoint: the group's own) -> Map(slot -> point)
    routing: new Map(),   // endpoint -> row (object)
    preferred: {}, alerts: [], turns: [],
  };
  const view = { groups: new Map(), rows: new Map(), selectedSeq: null };
  let timer = null;
  let polling = false;

  // -- small helpers ----------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    return node;
  }

  const ms = (s) => (s === null || s === undefined ? "–" : s < 10 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`);
  const pct = (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(1)} %`);
  const usd = (x) => (x === null || x === undefined ? "–" : x < 0.01 ? `$${x.toFixed(5)}` : `$${x.toFixed(3)}`);
  const fields = (names, values) => Object.fromEntries(names.map((name, i) => [name, values[i]]));
  const seriesKey = (group, endpoint) => `${group}\u0000${endpoint === null ? "*" : endpoint}`;

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  // -- login ------------------------------------------------------------------

  function adminKey() {
    return sessionStorage.getItem(KEY_STORAGE);
  }

  function showLogin(message) {
    stop();
    $("#board").hidden = true;
    $("#logout").hidden = true;
    $("#login").hidden = false;
    const error = $("#login-error");
    error.hidden = !message;
    error.textContent = message || "";
    setText($("#live"), "not connected");
  }

  function showBoard() {
    $("#login").hidden = true;
    $("#board").hidden = false;
    $("#logout").hidden = false;
  }

  $("#login").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = event.target.elements.key.value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    event.target.reset();
    start();
  });

  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    showLogin("");
  });

  // -- polling ----------------------------------------------------------------

  function start() {
    stop();
    model.cursor = "";
    model.turnsCursor = 0;
    model.turns = [];
    showBoard();
    poll();
  }

  function stop() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  function filters() {
    const form = $("#filters").elements;
    const out = {};
    for (const name of ["model", "endpoint", "status", "conversation"]) {
      const value = form[name].value.trim();
      if (value) out[name] = value;
    }
    return out;
  }

  async function api(path, params) {
    const key = adminKey();
    if (!key) return { status: 401 };
    const query = new URLSearchParams(params).toString();
    const response = await fetch(`v1/console/${path}${query ? "?" + query : ""}`, {
      headers: { Authorization: `Bearer ${key}` }, cache: "no-store",
    });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    return { status: response.status, body };
  }

  async function poll() {
    if (polling) return;
    polling = true;
    const generation = model.generation;
    let delay = POLL_MS;
    try {
      const params = { since: model.cursor, turns_since: String(model.turnsCursor), limit: String(MAX_TURNS), ...filters() };
      const { status, body } = await api("state", params);
      if (status === 401 || status === 403) {
        sessionStorage.removeItem(KEY_STORAGE);
        showLogin(body && body.error ? body.error.message : "That key is not the admin key.");
        return;
      }
      if (generation !== model.generation) {
        delay = 0;  // asked with the filter before its change: ask again now
      } else if (status !== 200 || !body) {
        setText($("#live"), `no answer (${status}); retrying`);
      } else {
        apply(body);
        render();
        setText($("#live"), `live · ${new Date().toLocaleTimeString()}`);
      }
    } catch (error) {
      setText($("#live"), "connection lost; retrying");
    } finally {
      polling = false;
    }
    if (adminKey()) timer = setTimeout(poll, delay);
  }

  function apply(answer) {
    if (answer.reset) {
      model.series.clear();
      model.routing.clear();
      model.turns = [];
      view.rows.clear();  // a new hub numbers its turns afresh
    }
    model.meta = answer;
    for (const entry of answer.series) {
      const key = seriesKey(entry.group, entry.endpoint);
      if (!model.series.has(key)) model.series.set(key, new Map());
      const points = model.series.get(key);
      for (const values of entry.points) points.set(values[0], fields(answer.point_fields, values));
    }
    for (const points of model.series.values()) {
      for (const slot of points.keys()) if (slot < answer.oldest_slot) points.delete(slot);
    }
    for (const [name, values] of Object.entries(answer.routing)) {
      model.routing.set(name, fields(answer.routing_fields, values));
    }
    if (answer.preferred !== null) model.preferred = answer.preferred;
    model.alerts = answer.alerts;
    const fresh = answer.turns.map((values) => fields(answer.turn_fields, values));
    model.turns = fresh.concat(model.turns).slice(0, MAX_TURNS);
    model.cursor = answer.cursor;
    model.turnsCursor = answer.turns_cursor;
  }

  // -- what the window says about one series ----------------------------------

  function summary(group, endpoint) {
    const points = model.series.get(seriesKey(group, endpoint));
    const meta = model.meta;
    const out = { turns: 0, errors: 0, fallbacks: 0, hedged: 0, cache_hits: 0, failed_attempts: 0, latest: null, points: [] };
    if (!points || !meta) return out;
    const minuteFrom = meta.now_slot - Math.ceil(60 / meta.slot_s) + 1;
    const sorted = [...points.values()].sort((a, b) => a.slot - b.slot);
    for (const point of sorted) {
      if (point.slot >= minuteFrom) {
        out.turns += point.turns;
        out.errors += point.errors;
        out.fallbacks += point.fallbacks;
        out.hedged += point.hedged;
        out.cache_hits += point.cache_hits;
        out.failed_attempts += point.failed_attempts || 0;
      }
      if (point.turns > 0) out.latest = point;
    }
    out.points = sorted;
    out.perMinute = out.turns * 60 / Math.min(60, (meta.now_slot - meta.oldest_slot + 1) * meta.slot_s);
    out.errorRate = out.turns ? out.errors / out.turns : null;
    return out;
  }

  // -- charts -----------------------------------------------------------------

  const CHART_W = 420;
  const CHART_H = 80;

  function chart(title) {
    const root = svg("svg", { viewBox: `0 0 ${CHART_W} ${CHART_H}`, class: "chart", role: "img" });
    const label = svg("title");
    label.textContent = title;
    root.append(label);
    root.append(svg("line", { x1: 0, y1: CHART_H - 0.5, x2: CHART_W, y2: CHART_H - 0.5, class: "axis" }));
    const p50 = svg("polyline", { class: "p50", fill: "none" });
    const p99 = svg("polyline", { class: "p99", fill: "none" });
    const top = svg("text", { x: 2, y: 10, class: "scale" });
    root.append(p50, p99, top);
    return { root, p50, p99, top };
  }

  function drawChart(parts, points, p50Field, p99Field) {
    const meta = model.meta;
    const first = meta.oldest_slot;
    const span = Math.max(1, meta.now_slot - first);
    const values = points.flatMap((p) => [p[p50Field], p[p99Field]]).filter((v) => v !== null);
    const max = Math.max(0.05, ...values) * 1.15;
    const line = (field) => points
      .filter((p) => p[field] !== null)
      .map((p) => `${(((p.slot - first) / span) * (CHART_W - 4) + 2).toFixed(1)},${(CHART_H - 2 - (p[field] / max) * (CHART_H - 14)).toFixed(1)}`)
      .join(" ");
    parts.p50.setAttribute("points", line(p50Field));
    parts.p99.setAttribute("points", line(p99Field));
    setText(parts.top, ms(max));
  }

  // -- groups and endpoints ---------------------------------------------------

  function groupsAndEndpoints() {
    const groups = new Map();
    const add = (group, endpoint) => {
      if (!groups.has(group)) groups.set(group, new Set());
      if (endpoint !== null) groups.get(group).add(endpoint);
    };
    for (const [name, row] of model.routing) add(row.group, name);
    for (const key of model.series.keys()) {
      const [group, endpoint] = key.split("\u0000");
      add(group, endpoint === "*" ? null : endpoint);
    }
    return groups;
  }

  function groupCard(group) {
    const title = el("h3", {}, el("span", { class: "name", text: group }), el("span", { class: "preferred-note muted" }));
    const stats = el("div", { class: "stats" });
    const ttft = chart(`${group}: time to first token, p50 and p99`);
    const total = chart(`${group}: total latency, p50 and p99`);
    const charts = el("div", { class: "charts" },
      el("figure", {}, ttft.root, el("figcaption", { text: "TTFT p50 / p99" })),
      el("figure", {}, total.root, el("figcaption", { text: "total p50 / p99" })));
    const head = el("tr", {}, ...["Endpoint", "Breaker", "In flight", "Score", "TTFT p50", "TTFT p99", "Total p99",
      "Turns/min", "Errors", "Failed attempts", "Fallbacks", "Hedges", "Cache hits", "TTFT p99 trend"].map((t) => el("th", { text: t })));
    const body = el("tbody");
    const card = el("article", { class: "group", "data-group": group }, title, stats, charts,
      el("table", { class: "endpoints" }, el("thead", {}, head), body));
    return { card, stats, ttft, total, body, note: title.querySelector(".preferred-note"), endpoints: new Map() };
  }

  function endpointRow(group, endpoint) {
    const cells = {};
    const row = el("tr", { "data-endpoint": endpoint });
    for (const name of ["name", "breaker", "in_flight", "score", "ttft_p50", "ttft_p99", "total_p99", "per_min",
      "errors", "failed_attempts", "fallbacks", "hedged", "cache_hits"]) {
      cells[name] = el("td", { class: name });
      row.append(cells[name]);
    }
    const spark = svg("svg", { viewBox: "0 0 120 24", class: "spark" });
    const line = svg("polyline", { class: "p99", fill: "none" });
    spark.append(line);
    row.append(el("td", {}, spark));
    setText(cells.name, endpoint === "" ? "(none served)" : endpoint);
    return { row, cells, line };
  }

  function renderGroups() {
    const container = $("#groups");
    const groups = groupsAndEndpoints();
    for (const group of [...groups.keys()].sort()) {
      if (!view.groups.has(group)) {
        view.groups.set(group, groupCard(group));
        container.append(view.groups.get(group).card);
      }
      const card = view.groups.get(group);
      const s = summary(group, null);
      const latest = s.latest || {};
      card.stats.replaceChildren(...[
        ["turns/min", s.perMinute === undefined ? "–" : s.perMinute.toFixed(1)],
        ["error rate", pct(s.errorRate)], ["failed attempts", String(s.failed_attempts)],
        ["fallbacks", String(s.fallbacks)], ["hedges", String(s.hedged)],
        ["cache hits", String(s.cache_hits)], ["TTFT p50", ms(latest.ttft_p50_s)], ["TTFT p99", ms(latest.ttft_p99_s)],
        ["total p99", ms(latest.total_p99_s)],
      ].map(([label, value]) => el("div", { class: "stat" }, el("span", { class: "value", text: value }), el("span", { class: "label", text: label }))));
      drawChart(card.ttft, s.points, "ttft_p50_s", "ttft_p99_s");
      drawChart(card.total, s.points, "total_p50_s", "total_p99_s");
      const preferred = model.preferred[group];
      setText(card.note, preferred ? `routing prefers ${preferred}` : "");
      card.card.dataset.preferred = preferred || "";
      card.card.dataset.points = String(s.points.length);
      for (const endpoint of [...groups.get(group)].sort()) {
        if (!card.endpoints.has(endpoint)) {
          card.endpoints.set(endpoint, endpointRow(group, endpoint));
          card.body.append(card.endpoints.get(endpoint).row);
        }
        renderEndpoint(group, endpoint, card.endpoints.get(endpoint), preferred);
      }
    }
  }

  function renderEndpoint(group, endpoint, parts, preferred) {
    const routing = model.routing.get(endpoint) || {};
    const s = summary(group, endpoint);
    const latest = s.latest || {};
    const c = parts.cells;
    setText(c.breaker, routing.breaker || "–");
    c.breaker.dataset.state = routing.breaker || "";
    setText(c.in_flight, routing.in_flight === undefined ? "–" : String(routing.in_flight));
    setText(c.score, routing.score === null || routing.score === undefined ? "–" : routing.score.toPrecision(3));
    setText(c.ttft_p50, ms(latest.ttft_p50_s));
    setText(c.ttft_p99, ms(latest.ttft_p99_s));
    c.ttft_p99.dataset.seconds = latest.ttft_p99_s === undefined || latest.ttft_p99_s === null ? "" : String(latest.ttft_p99_s);
    setText(c.total_p99, ms(latest.total_p99_s));
    setText(c.per_min, s.perMinute === undefined ? "–" : s.perMinute.toFixed(1));
    setText(c.errors, pct(s.errorRate));
    setText(c.failed_attempts, String(s.failed_attempts));
    setText(c.fallbacks, String(s.fallbacks));
    setText(c.hedged, String(s.hedged));
    setText(c.cache_hits, String(s.cache_hits));
    parts.row.classList.toggle("preferred", endpoint === preferred);
    parts.row.classList.toggle("open", routing.breaker === "open");
    const values = s.points.map((p) => p.ttft_p99_s).filter((v) => v !== null);
    const max = Math.max(0.05, ...values);
    const first = model.meta.oldest_slot;
    const span = Math.max(1, model.meta.now_slot - first);
    parts.line.setAttribute("points", s.points.filter((p) => p.ttft_p99_s !== null)
      .map((p) => `${(((p.slot - first) / span) * 118 + 1).toFixed(1)},${(23 - (p.ttft_p99_s / max) * 21).toFixed(1)}`).join(" "));
  }

  // -- alerts, filters, turns ---------------------------------------------------

  function renderAlerts() {
    const list = $("#alerts");
    if (!model.alerts.length) {
      list.replaceChildren(el("li", { class: "muted", text: "no alert is firing" }));
      return;
    }
    list.replaceChildren(...model.alerts.map((a) => el("li", { class: "firing", text: `${a.rule} · ${a.model_group}` })));
  }

  function fillSelect(select, values) {
    const have = new Set([...select.options].map((o) => o.value));
    for (const value of values) if (!have.has(value)) select.append(el("option", { value, text: value }));
  }

  function renderFilters() {
    const groups = groupsAndEndpoints();
    const form = $("#filters").elements;
    fillSelect(form.model, [...groups.keys()].sort());
    fillSelect(form.endpoint, [...new Set([...groups.values()].flatMap((set) => [...set]))].filter((e) => e).sort());
  }

  function renderTurns() {
    const body = $("#turns tbody");
    const rows = model.turns.map((turn) => {
      let row = view.rows.get(turn.seq);
      if (!row) {
        const tokens = turn.prompt_tokens === null && turn.completion_tokens === null ? "–" : `${turn.prompt_tokens ?? "?"} + ${turn.completion_tokens ?? "?"}`;
        row = el("tr", { "data-seq": String(turn.seq), class: `status-${turn.status}` },
          el("td", { text: new Date(turn.time_s * 1000).toLocaleTimeString() }),
          el("td", { class: "conversation", text: turn.conversation || "" }),
          el("td", { class: "model", text: turn.model_group }),
          el("td", { class: "endpoint", text: turn.endpoint || "–" }),
          el("td", { text: ms(turn.ttft_s) }), el("td", { text: ms(turn.total_s) }),
          el("td", { text: tokens }), el("td", { text: usd(turn.cost_usd) }),
          el("td", { class: "fallbacks", text: String(turn.fallbacks) }),
          el("td", { class: "status", text: turn.status === "ok" ? "ok" : `${turn.status} ${turn.http_status}` }));
        view.rows.set(turn.seq, row);
      }
      row.classList.toggle("selected", turn.seq === view.selectedSeq);
      return row;
    });
    body.replaceChildren(...rows);
    for (const seq of [...view.rows.keys()]) if (!model.turns.length || seq < model.turns[model.turns.length - 1].seq) view.rows.delete(seq);
    const meta = model.meta;
    const notes = [];
    if (meta.turns_skipped) notes.push(`${meta.turns_skipped} more not shown`);
    if (meta.turns_missed) notes.push(`${meta.turns_missed} older left the buffer`);
    setText($("#turns-note"), notes.join(" · "));
  }

  $("#filters").addEventListener("input", () => {
    model.generation += 1;
    model.turnsCursor = 0;
    model.turns = [];
    view.rows.clear();
    $("#turns tbody").replaceChildren();
    stop();
    poll();
  });
  $("#filters").addEventListener("submit", (event) => event.preventDefault());

  $("#turns tbody").addEventListener("click", async (event) => {
    const row = event.target.closest("tr[data-seq]");
    if (!row) return;
    view.selectedSeq = Number(row.dataset.seq);
    for (const other of $("#turns tbody").children) other.classList.toggle("selected", other === row);
    const { status, body } = await api("turn", { seq: row.dataset.seq });
    showDetail(status, body);
  });

  function showDetail(status, turn) {
    const panel = $("#turn-detail");
    panel.hidden = false;
    if (status !== 200 || !turn) {
      setText($("#detail-title"), "");
      $("#detail-fields").replaceChildren(el("dd", { text: turn && turn.error ? turn.error.message : `not available (${status})` }));
      $("#attempts tbody").replaceChildren();
      return;
    }
    setText($("#detail-title"), turn.request_id);
    const facts = [["model", turn.model_group], ["endpoint", turn.endpoint || "–"], ["status", `${turn.status} ${turn.http_status}`],
      ["error", turn.error_type || "–"], ["conversation", turn.conversation || "–"], ["TTFT", ms(turn.ttft_s)], ["total", ms(turn.total_s)],
      ["hedged", turn.hedged ? "yes" : "no"], ["cache hit", turn.cache_hit ? "yes" : "no"], ["cost", usd(turn.cost_usd)]];
    $("#detail-fields").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    $("#attempts tbody").replaceChildren(...turn.attempts.map((a, i) => el("tr", { class: `outcome-${a.outcome}` },
      el("td", { text: String(i + 1) }), el("td", { class: "endpoint", text: a.endpoint }), el("td", { class: "outcome", text: a.outcome }),
      el("td", { text: a.http_status === null ? "–" : String(a.http_status) }), el("td", { text: ms(a.duration_s) }))));
  }

  function render() {
    const meta = model.meta;
    setText($("#window-note"),
      `charts: last ${Math.round(meta.window_s)} s in ${meta.slot_s} s slots · counts and rates: last minute · p50/p99: latest slot`);
    renderAlerts();
    renderGroups();
    renderFilters();
    renderTurns();
  }

  if (adminKey()) start();
  else showLogin("");
})();
