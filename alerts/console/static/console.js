"use strict";
// Tocsin duty console: one page, hash routes (#/ overview, #/alert/<fingerprint>), no framework.
const LEVEL = { blue: "蓝色", yellow: "黄色", orange: "橙色", red: "红色" };
const HAZARD = { hydro: "水文气象", hazmat: "危化品", fire: "火灾", seismic: "地震" };
const RELEASE = { auto: "已自动发布", pending: "待审批", escalated: "待审批（已上报）", approve: "已批准发布",
  reject: "已驳回", timed_release: "超时自动发布", forced: "升级后发布", held: "待审批" };
const ACTION = { held: "公众渠道等待审批", approve: "批准发布", reject: "驳回发布", note: "备注", escalated: "超时上报值班领导",
  timed_release: "超时自动发布", timed_hold: "超时继续等待", superseded: "被新修订取代", forced: "升级为必须立即发布" };
const OUTCOME = { accepted: "已受理", duplicate: "重复（已受理）", rejected: "被拒绝", gave_up: "放弃", suppressed: "已静默", held: "等待审批" };
const HEALTH = { faulty: "故障", offline: "离线", stale: "数据陈旧", unknown: "未知", reporting: "正常上报", online: "在线" };
const DEVICE_ROWS_PER_GROUP = 200;
const state = { me: null, alerts: [], firstSeen: {}, latency: {}, es: null, mapData: null, showReporting: false };
window.tocsinLatency = state.latency; // issue-to-display times (ms) by message identifier, read by the browser tests

const $ = (sel, root = document) => root.querySelector(sel);
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}
const lvl = (l) => h("span", { class: `lvl ${l}` }, LEVEL[l] || l);
const fmt = (iso) => new Date(iso).toLocaleString("zh-CN", { hour12: false });
function age(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 60 ? `${s.toFixed(0)} 秒` : s < 3600 ? `${(s / 60).toFixed(0)} 分钟` : `${(s / 3600).toFixed(1)} 小时`;
}

async function api(path, opts = {}) {
  const headers = { Accept: "application/json", "X-Tocsin-Console": "1", ...(opts.headers || {}) };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.method && opts.method !== "GET" && state.me) headers["X-CSRF-Token"] = state.me.csrf;
  const resp = await fetch(path, { credentials: "same-origin", ...opts, headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401) { showLogin(); }
  return { status: resp.status, data };
}

// ------------------------------------------------------------------ login
function showLogin() {
  if (state.es) { state.es.close(); state.es = null; }
  state.me = null;
  $("#login").hidden = false; $("#overview").hidden = true; $("#alert").hidden = true; $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#login-name").focus();
}
$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  const r = await fetch("/console/login", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: f.name.value, password: f.password.value }) });
  if (r.status !== 200) {
    $("#login-error").textContent = r.status === 429 ? "失败次数过多，请稍后再试" : "用户名或密码错误";
    return;
  }
  f.password.value = ""; $("#login-error").textContent = "";
  await start();
});
$("#logout").addEventListener("click", async () => { await api("/console/logout", { method: "POST" }); showLogin(); });

async function start() {
  const r = await api("/console/api/session");
  if (r.status !== 200) return;
  state.me = r.data;
  $("#login").hidden = true; $("#logout").hidden = false;
  $("#who").textContent = `${state.me.name}（${{ viewer: "查看员", operator: "值班员", supervisor: "值班领导" }[state.me.role] || state.me.role}）`;
  connect();
  route();
}

// ------------------------------------------------------------------ live list (server-sent events)
function connect() {
  if (state.es) state.es.close();
  const es = new EventSource("/console/api/stream");
  state.es = es;
  es.addEventListener("open", () => { $("#conn").textContent = "实时"; $("#conn").className = "conn ok"; });
  es.addEventListener("error", () => { $("#conn").textContent = "重连中…"; $("#conn").className = "conn"; });
  es.addEventListener("alerts", (ev) => {
    const msg = JSON.parse(ev.data);
    state.alerts = msg.alerts;
    const now = Date.now();
    for (const a of msg.alerts) {
      if (!(a.identifier in state.latency)) state.latency[a.identifier] = now - Date.parse(a.sent);
    }
    renderList();
    if (!$("#overview").hidden) loadMap();
    // the open warning's page is redrawn only when that warning changed (not for every other one)
    const open = currentFingerprint();
    const mine = open && msg.alerts.find((a) => a.fingerprint === open);
    const sig = mine ? JSON.stringify([mine.identifier, mine.acknowledged, mine.release]) : "";
    if (mine && sig !== state.openSig) { state.openSig = sig; refreshAlert(open, true); }
  });
}

function renderList() {
  const tbody = $("#alerts tbody");
  tbody.replaceChildren();
  for (const a of state.alerts) {
    const rel = a.release || "auto";
    const tr = h("tr", { class: a.level, tabindex: "0", "data-fingerprint": a.fingerprint, "data-identifier": a.identifier,
        onclick: () => openAlert(a.fingerprint), onkeydown: (e) => { if (e.key === "Enter") openAlert(a.fingerprint); } },
      h("td", {}, lvl(a.level)), h("td", {}, HAZARD[a.hazard] || a.hazard), h("td", {}, a.headline),
      h("td", {}, a.area.desc), h("td", {}, fmt(a.sent)), h("td", {}, age(a.sent)),
      h("td", { class: rel === "pending" || rel === "escalated" ? "pending" : "" },
        RELEASE[rel] || rel, a.acknowledged ? ` · 已确认（${a.acknowledged_by}）` : " · 未确认"));
    tbody.append(tr);
  }
  $("#count").textContent = `（${state.alerts.length}）`;
}
function openAlert(fp) { location.hash = `#/alert/${encodeURIComponent(fp)}`; }
function currentFingerprint() {
  const m = location.hash.match(/^#\/alert\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

// ------------------------------------------------------------------ map (SVG, no tiles)
async function loadMap() {
  const r = await api("/console/api/map");
  if (r.status !== 200) return;
  state.mapData = r.data;
  drawMap();
}
function drawMap() {
  const d = state.mapData, box = $("#map");
  if (!d) return;
  const pts = [];
  const rings = d.outline ? d.outline.features.map((f) => f.geometry.coordinates[0]) : [];
  rings.forEach((ring) => ring.forEach((p) => pts.push(p)));
  d.devices.forEach((v) => pts.push([v.lon, v.lat]));
  if (!pts.length) { box.textContent = "无辖区数据"; return; }
  const lons = pts.map((p) => p[0]), lats = pts.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...lons), Math.max(...lons), Math.min(...lats), Math.max(...lats)];
  const k = Math.cos(((y0 + y1) / 2) * Math.PI / 180), W = 520, pad = 16;
  const s = Math.min((W - 2 * pad) / ((x1 - x0) * k || 1), (W - 2 * pad) / ((y1 - y0) || 1));
  const H = Math.max(200, (y1 - y0) * s + 2 * pad);
  const X = (lon) => pad + (lon - x0) * k * s, Y = (lat) => H - pad - (lat - y0) * s;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [a, v] of Object.entries(attrs)) e.setAttribute(a, v);
    if (text) { const t = document.createElementNS(NS, "title"); t.textContent = text; e.append(t); }
    svg.append(e); return e;
  };
  const colour = { blue: "#1565c0", yellow: "#f9c600", orange: "#f57c00", red: "#d50000" };
  const districtAlert = d.areas.filter((a) => a.code.length <= 6).sort((a, b) => rank(b.level) - rank(a.level))[0];
  rings.forEach((ring) => el("polygon", { points: ring.map((p) => `${X(p[0])},${Y(p[1])}`).join(" "),
    fill: districtAlert ? colour[districtAlert.level] : "#eef3f7", "fill-opacity": districtAlert ? 0.15 : 1,
    stroke: "#37474f", "stroke-width": 1.5 }, d.outline.features[0].properties.name));
  const byId = Object.fromEntries(d.devices.map((v) => [v.id, v]));
  for (const a of d.areas) {
    for (const ring of a.polygons || []) {  // the boundaries of the areas warned: [[lat, lon], ...]
      el("polygon", { points: ring.map((p) => `${X(p[1])},${Y(p[0])}`).join(" "), fill: colour[a.level],
        "fill-opacity": 0.2, stroke: colour[a.level], "stroke-width": 2, "data-area": a.fingerprint }, a.headline);
    }
    if (a.circle) {  // [lat, lon, radius km] of the alert area
      const [clat, clon, km] = a.circle;
      el("circle", { cx: X(clon), cy: Y(clat), r: Math.max(6, (km / 111.2) * s), fill: colour[a.level],
        "fill-opacity": 0.2, stroke: colour[a.level], "stroke-width": 2, "data-area": a.fingerprint }, a.headline);
      continue;
    }
    if ((a.polygons || []).length) continue;
    for (const id of a.devices) {
      const v = byId[id];
      if (v) el("circle", { cx: X(v.lon), cy: Y(v.lat), r: 16, fill: colour[a.level], "fill-opacity": 0.35, stroke: colour[a.level] }, a.headline);
    }
  }
  const dot = { online: "#2e7d32", reporting: "#2e7d32", offline: "#616161", stale: "#9e9d24", faulty: "#6a1b9a", unknown: "#b0bec5" };
  for (const v of d.devices) {
    el("circle", { cx: X(v.lon), cy: Y(v.lat), r: 5, fill: dot[v.state] || "#999", stroke: "#fff", "data-device": v.id },
      `${v.id}（${HAZARD[v.family] || v.family}）${HEALTH[v.state] || v.state}`);
  }
  box.replaceChildren(svg);
}
const rank = (l) => ({ blue: 1, yellow: 2, orange: 3, red: 4 }[l] || 0);

// ------------------------------------------------------------------ device states (faulty, offline, stale first)
async function loadDevices() {
  const r = await api("/console/api/devices");
  if (r.status !== 200 || !r.data) return;
  const d = r.data, tbody = $("#devices tbody");
  const counts = d.counts || {};
  $("#device-counts").replaceChildren(...Object.keys(counts).map((k) =>
    h("span", { class: `hc ${k}`, "data-state": k }, `${HEALTH[k] || k} ${counts[k]}`)));
  if (!d.available) { tbody.replaceChildren(h("tr", {}, h("td", { colspan: 6 }, "设备状态未接入"))); return; }
  const rows = [];
  let group = null, shown = 0;
  for (const v of d.devices) {
    if (v.state !== group) {
      group = v.state; shown = 0;
      const folded = group === "reporting" && !state.showReporting;
      rows.push(h("tr", { class: "group", "data-group": group }, h("th", { colspan: 6, scope: "rowgroup" },
        `${HEALTH[group] || group}（${counts[group] || 0}）`,
        group === "reporting" ? h("button", { type: "button", id: "toggle-reporting", class: "link",
          onclick: () => { state.showReporting = !state.showReporting; loadDevices(); } }, folded ? "展开" : "收起") : null)));
    }
    if (group === "reporting" && !state.showReporting) continue;
    if (++shown > DEVICE_ROWS_PER_GROUP) {
      if (shown === DEVICE_ROWS_PER_GROUP + 1) rows.push(h("tr", {}, h("td", { colspan: 6, class: "hint" },
        `另有 ${(counts[group] || 0) - DEVICE_ROWS_PER_GROUP} 台未列出（完整列表：/console/api/devices）`)));
      continue;
    }
    rows.push(h("tr", { "data-device": v.id, "data-state": v.state, class: `dev ${v.state}` },
      h("td", {}, h("span", { class: `dot ${v.state}` }), HEALTH[v.state] || v.state), h("td", {}, v.id),
      h("td", {}, HAZARD[v.family] || v.family), h("td", {}, v.area || v.area_code),
      h("td", {}, v.last_seen ? `${fmt(v.last_seen)}（${age(v.last_seen)}前）` : "—"),
      h("td", {}, `${age(v.since)}`, v.reason ? ` · ${v.reason}` : "")));
  }
  tbody.replaceChildren(...rows);
}

// ------------------------------------------------------------------ an alert's page
async function refreshAlert(fp, quiet) {
  const [d, rel, au] = await Promise.all([
    api(`/alerts/${encodeURIComponent(fp)}`),
    api(`/console/api/alerts/${encodeURIComponent(fp)}/releases`),
    api(`/audit?fingerprint=${encodeURIComponent(fp)}`),
  ]);
  if (d.status !== 200) { $("#alert").replaceChildren(h("p", { class: "error" }, "告警不存在或已过保留期")); return; }
  if (quiet && document.activeElement && document.activeElement.closest("#alert form")) return; // do not wipe a form being filled in
  renderAlert(d.data, rel.data || { state: "auto", events: [] }, au.data ? au.data.events : []);
}

function renderAlert(a, rel, audit) {
  const cur = a.current, can = state.me && (state.me.role === "operator" || state.me.role === "supervisor");
  const pending = rel.state === "pending" || rel.state === "escalated";
  const last = state.result && state.result.fp === a.fingerprint ? state.result : { cls: "", text: "" };
  const msg = h("p", { id: "action-result", role: "status", class: last.cls }, last.text);
  const done = (r, ok) => {  // kept across the re-renders that follow every change
    state.result = { fp: a.fingerprint, cls: r.status < 300 ? "ok" : "error",
      text: r.status < 300 ? ok : `失败：${(r.data && (r.data.detail || r.data.error)) || r.status}` };
    msg.className = state.result.cls; msg.textContent = state.result.text;
  };
  const actions = h("section", { class: "card actions", "aria-labelledby": "act-h" }, h("h3", { id: "act-h" }, "处置"));
  if (pending) {
    actions.append(h("p", { class: "pending" }, "公众短信和广播正在等待审批。"));
  }
  if (can) {
    actions.append(
      h("form", { id: "release-form", onsubmit: (e) => e.preventDefault() },
        h("label", {}, "审批意见 ", h("input", { name: "note", id: "release-note", size: 30 })),
        h("button", { type: "button", id: "approve", class: "primary", disabled: !pending, onclick: async () => {
          const r = await api(`/console/api/alerts/${encodeURIComponent(a.fingerprint)}/release`, { method: "POST",
            body: { decision: "approve", note: $("#release-note").value, identifier: a.identifier } });
          done(r, "已批准：公众渠道开始发送"); refreshAlert(a.fingerprint); } }, "批准发布"),
        h("button", { type: "button", id: "reject", class: "danger", disabled: !pending, onclick: async () => {
          if (!confirm("驳回后公众将收不到此预警，确定？")) return;
          const r = await api(`/console/api/alerts/${encodeURIComponent(a.fingerprint)}/release`, { method: "POST",
            body: { decision: "reject", note: $("#release-note").value, identifier: a.identifier } });
          done(r, "已驳回"); refreshAlert(a.fingerprint); } }, "驳回")),
      h("form", { id: "ack-form", onsubmit: async (e) => { e.preventDefault();
          const r = await api(`/alerts/${encodeURIComponent(a.fingerprint)}/ack`, { method: "POST", body: { note: $("#ack-note").value, identifier: a.identifier } });
          done(r, "已确认"); refreshAlert(a.fingerprint); } },
        h("label", {}, "确认说明 ", h("input", { id: "ack-note", size: 30 })),
        h("button", { type: "submit", id: "ack", disabled: a.acknowledged }, a.acknowledged ? `已确认（${a.acknowledged_by}）` : "确认告警")),
      h("form", { id: "note-form", onsubmit: async (e) => { e.preventDefault();
          const r = await api(`/console/api/alerts/${encodeURIComponent(a.fingerprint)}/note`, { method: "POST", body: { note: $("#note-text").value } });
          done(r, "备注已记录"); refreshAlert(a.fingerprint); } },
        h("label", {}, "备注 ", h("input", { id: "note-text", size: 40, required: true })),
        h("button", { type: "submit", id: "add-note" }, "添加备注")),
      silenceForm(a, done));
  } else {
    actions.append(h("p", { id: "read-only" }, "查看员只能查看，不能确认、审批或静默。"));
  }
  actions.append(msg);

  const history = h("table", { class: "small" }, h("thead", {}, h("tr", {}, h("th", {}, "修订"), h("th", {}, "类型"), h("th", {}, "级别"), h("th", {}, "时间"), h("th", {}, "标题"))),
    h("tbody", {}, a.history.map((m) => h("tr", {}, h("td", {}, m.revision), h("td", {}, m.msg_type), h("td", {}, lvl(m.level)), h("td", {}, fmt(m.sent)), h("td", {}, m.headline)))));
  const channels = Object.entries(a.delivery_summary);
  const deliveries = h("table", { class: "small", id: "deliveries" }, h("thead", {}, h("tr", {}, h("th", {}, "渠道"), h("th", {}, "结果"), h("th", {}, "数量"))),
    h("tbody", {}, channels.flatMap(([ch, outs]) => Object.entries(outs).map(([o, n]) => h("tr", { "data-channel": ch, "data-outcome": o }, h("td", {}, ch), h("td", {}, OUTCOME[o] || o), h("td", {}, n))))));
  const failures = a.deliveries.filter((r) => !["accepted", "duplicate", "held", "suppressed"].includes(r.outcome));
  const trail = [
    ...audit.map((e) => ({ ts: e.ts, who: e.kind === "ack" ? e.record.by : "", text: `${{ message: "消息", delivery: "发送", ack: "确认" }[e.kind]}：${e.summary}` })),
    ...rel.events.map((e) => ({ ts: e.at, who: e.by, text: `${ACTION[e.action] || e.action}${e.note ? "：" + e.note : ""}` })),
  ].sort((x, y) => Date.parse(x.ts) - Date.parse(y.ts));
  const page = h("div", {},
    h("p", {}, h("a", { href: "#/" }, "← 返回告警总览")),
    h("div", { class: `banner ${a.level}` }, `${LEVEL[a.level]}预警 · ${a.headline}`),
    h("p", {}, `${HAZARD[a.hazard] || a.hazard} · ${a.area.desc}（${a.area.code}）· 修订 ${a.revision} · 发布 ${fmt(a.sent)} · `,
      h("strong", { id: "release-state", class: pending ? "pending" : "" }, RELEASE[rel.state] || rel.state)),
    h("div", { class: "grid2" },
      h("div", {}, actions,
        h("section", { class: "card" }, h("h3", {}, "证据"), evidence(a)),
        h("section", { class: "card" }, h("h3", {}, "修订时间线"), history)),
      h("div", {},
        h("section", { class: "card" }, h("h3", {}, "发送记录（按渠道）"), deliveries,
          failures.length ? h("ul", { class: "error" }, failures.map((r) => h("li", {}, `${r.channel} → ${r.recipient}：${OUTCOME[r.outcome] || r.outcome} ${r.detail}`))) : h("p", {}, "无失败")),
        h("section", { class: "card" }, h("h3", {}, "审计记录"),
          h("ol", { id: "audit" }, trail.map((t) => h("li", {}, `${fmt(t.ts)} `, t.who ? h("strong", {}, t.who + " ") : "", t.text)))),
        h("section", { class: "card" }, h("h3", {}, "CAP XML"), h("pre", { class: "cap" }, a.cap || "（无 CAP）")))));
  $("#alert").replaceChildren(page);
}

function evidence(a) {
  const vals = a.history.filter((m) => m.value !== null && m.value !== undefined);
  const box = h("div", {}, h("p", {}, a.current.description),
    a.current.value !== null && a.current.value !== undefined ? h("p", {}, `当前值：${a.current.value} ${a.current.unit}`) : null,
    h("p", {}, `设备：${a.current.devices.join("、") || "—"}；检测：${a.current.detections.length} 条`));
  const live = h("div", { id: "series" }, h("p", { class: "hint" }, "正在读取最近3小时的监测数据…"));
  box.append(live);
  api(`/console/api/alerts/${encodeURIComponent(a.fingerprint)}/series?hours=3`).then((r) => {
    const series = r.status === 200 && r.data.available ? r.data.series.filter((x) => x.points.length) : [];
    if (!series.length) { live.replaceChildren(h("p", { class: "hint" }, "无时序库数据，下方为告警携带的测量值")); return; }
    live.replaceChildren(h("p", {}, "最近3小时（InfluxDB）"), ...series.slice(0, 3).map((x) => lineChart(x)));
  });
  if (vals.length >= 1) {
    const NS = "http://www.w3.org/2000/svg", W = 360, H = 90;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "各修订的测量值");
    const ys = vals.map((m) => m.value), lo = Math.min(...ys), hi = Math.max(...ys), span = hi - lo || 1;
    const pts = vals.map((m, i) => `${10 + (i * (W - 20)) / Math.max(1, vals.length - 1)},${H - 10 - ((m.value - lo) / span) * (H - 20)}`);
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts.join(" ")); line.setAttribute("fill", "none"); line.setAttribute("stroke", "#0b5cad"); line.setAttribute("stroke-width", "2");
    svg.append(line);
    box.append(svg, h("p", { class: "hint" }, `各修订测量值 ${lo}–${hi} ${a.current.unit}`));
  }
  return box;
}

function lineChart(x) {
  const NS = "http://www.w3.org/2000/svg", W = 420, H = 110, pad = 24;
  const ts = x.points.map((p) => Date.parse(p[0])), ys = x.points.map((p) => p[1]);
  const t0 = Math.min(...ts), t1 = Math.max(...ts), lo = Math.min(...ys), hi = Math.max(...ys);
  const X = (t) => pad + ((t - t0) / ((t1 - t0) || 1)) * (W - 2 * pad), Y = (v) => H - pad - ((v - lo) / ((hi - lo) || 1)) * (H - 2 * pad);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("role", "img"); svg.setAttribute("class", "series-chart");
  svg.setAttribute("aria-label", `${x.device} ${x.field}：${lo}–${hi}`);
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("points", x.points.map((p, i) => `${X(ts[i])},${Y(ys[i])}`).join(" "));
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#0b5cad"); line.setAttribute("stroke-width", "2");
  const label = document.createElementNS(NS, "text");
  label.setAttribute("x", "4"); label.setAttribute("y", "14"); label.setAttribute("font-size", "12");
  label.textContent = `${x.device} ${x.field}  ${lo.toFixed(2)} – ${hi.toFixed(2)}（${x.points.length} 点）`;
  svg.append(line, label);
  return svg;
}

function silenceForm(a, done) {
  const devices = a.current.devices, sites = a.current.sites;
  const scope = h("select", { id: "silence-scope" },
    devices.map((d) => h("option", { value: `device:${d}` }, `设备 ${d}`)),
    sites.map((s) => h("option", { value: `site:${s}` }, `站点 ${s}`)),
    state.me.role === "supervisor" ? h("option", { value: `area:${a.area.code}` }, `区域 ${a.area.desc}（仅值班领导）`) : null);
  return h("form", { id: "silence-form", onsubmit: async (e) => {
      e.preventDefault();
      const [kind, value] = $("#silence-scope").value.split(/:(.*)/s);
      const hours = Number($("#silence-hours").value), now = new Date();
      const body = { [kind]: value, starts_at: now.toISOString(), ends_at: new Date(now.getTime() + hours * 3600e3).toISOString(), reason: $("#silence-reason").value };
      const r = await api("/silences", { method: "POST", body });
      done(r, `静默已创建（${r.data && r.data.id}），红色和地震预警不受静默影响`);
      refreshAlert(a.fingerprint);
    } },
    h("label", {}, "静默 ", scope),
    h("label", {}, "时长（小时） ", h("input", { id: "silence-hours", type: "number", min: "0.25", max: "24", step: "0.25", value: "2", size: 4 })),
    h("label", {}, "原因 ", h("input", { id: "silence-reason", required: true, size: 20 })),
    h("button", { type: "submit", id: "silence" }, "创建静默"));
}

// ------------------------------------------------------------------ routing
function route() {
  if (!state.me) return;
  const fp = currentFingerprint();
  $("#overview").hidden = !!fp; $("#alert").hidden = !fp;
  if (fp) { $("#alert").replaceChildren(h("p", {}, "加载中…")); refreshAlert(fp); $("#main").focus(); }
  else { renderList(); loadMap(); loadDevices(); }
}
window.addEventListener("hashchange", route);
setInterval(() => { if (state.me && !$("#overview").hidden) { renderList(); loadDevices(); } }, 10000); // ages, device states
start().then(() => { if (!state.me) showLogin(); });
