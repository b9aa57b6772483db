// The operator's dashboard (SPEC 12.4): current values as cards, the active
// run, plots of the numeric fields of chosen types over a window, and the
// live feed's state.  Everything comes from the module's API, by URLs
// relative to this page (<mount>/ui/ -> <mount>/current ...), so the page
// works wherever the API is mounted:
//
//   GET ../current      the cards (and again after a burst of live events,
//                       which a live event alone cannot settle: an event
//                       posted with make_current=false looks like any other)
//   GET ../ready, ../run  the active run (../run only when one is active:
//                       its 404 would be a failed request for nothing)
//   GET ../events       the plots: ?type=T&since=...&every=... ascending,
//                       following `next`; `every` keeps one point per
//                       bucket, so a window costs a bounded number of points
//   GET ../stream       the live feed: `current` snapshots, `telemetry`
//                       events, `reset` when the server cannot resume
//
// The plots use Dygraph, Debian's libjs-dygraphs, loaded by index.html
// before this module.  State the tests read is in the DOM (data-*
// attributes) and in window.ptmDash.

const BASE = new URL("../", location.href);
const api = (path) => new URL(path, BASE).href;

// Window -> bucket width: at most ~360 points per series.
const WINDOWS = {
    "1h": { ms: 3600e3, every: "10s", everyMs: 10e3 },
    "6h": { ms: 6 * 3600e3, every: "1m", everyMs: 60e3 },
    "24h": { ms: 86400e3, every: "5m", everyMs: 300e3 },
    "7d": { ms: 7 * 86400e3, every: "30m", everyMs: 1800e3 },
};
const DEFAULT_TYPES = ["weather", "power"];
const STALE_MS = 10 * 60e3;     // POCS posts each type at least every 5 min
const RECONCILE_MS = 1500;      // GET ../current after a burst of events
const POLL_MS = 30e3;           // ../ready and ../run; ../current when offline
// The browser retries a lost feed by itself, for ever, and says no more
// than "connecting" whether the server restarts (a second or two) or is
// gone: after this long without a stream open again, "offline".
const OFFLINE_AFTER_MS = 10e3;
const KEEP_IDS = 2000;          // received events remembered, for the tests
// Cards shown at most: the first CARD_CAP types in the order of GET
// ../current (the order they were first posted, SPEC 3.7) and the plotted
// types wherever they are; "N more types not shown" tells of the rest.  A
// unit posts a dozen or two types (POCS: weather, power, status, safety,
// environment, images ...), so 200 is ten times what an operator reads,
// yet anyone who may POST can make thousands: 200 cards of one field are
// 2,400 DOM nodes and 200 ages ticked a second, cheap on a phone; 5,000
// kept the page from answering for minutes.  Events of the types
// not shown cost a Map update and nothing in the DOM.
const CARD_CAP = 200;
const SUMMARY_TYPES = new Set(["weather", "status", "power"]);

const $ = (sel, el = document) => el.querySelector(sel);

// dygraphs' legend plugin measures with a style attribute and writes HTML
// with style attributes, both refused by the page's Content-Security-Policy
// (default-src 'self'): the plots go without it and show the values under
// the pointer themselves (showValues).
if (window.Dygraph && Dygraph.PLUGINS && Dygraph.Plugins) {
    Dygraph.PLUGINS = Dygraph.PLUGINS.filter((p) => p !== Dygraph.Plugins.Legend);
}

const state = {
    current: new Map(),         // type -> public envelope, GET ../current's order
    shown: new Set(),           // the types with a card (at most CARD_CAP + plotted)
    cards: new Map(),           // type -> its card element (in the DOM)
    run: null,                  // GET ../run answer, or null
    conn: "offline",
    lastId: null,
    received: [],               // [id, type, stream, seq] of `telemetry` events
    connLog: [],                // [time, state] of every change, for the tests
    clockOffset: 0,             // server clock - this clock, ms
    window: "24h",
    types: DEFAULT_TYPES.slice(),
    plots: new Map(),           // type -> plot state (see loadPlot)
    plotGen: 0,                 // bumped when the window or types change
    pending: [],                // live events that came while plots loaded
    loading: 0,
};

// ---- formatting ------------------------------------------------------------

// Units from field-name suffixes, as POCS names them (ambient_temp_C,
// wind_speed_KPH, ra_deg ...) and from a few well-known names.
const UNIT_SUFFIX = [
    [/_C$/, "°C"], [/_F$/, "°F"], [/_K$/, "K"], [/_KPH$/i, "km/h"],
    [/_MPH$/i, "mph"], [/_mps$/i, "m/s"], [/_deg$/i, "°"], [/_pct$/i, "%"],
    [/_percent$/i, "%"], [/_V$/, "V"], [/_A$/, "A"], [/_W$/, "W"],
    [/_mm$/, "mm"], [/_hPa$/i, "hPa"], [/_mbar$/i, "mbar"],
    [/_ms$/, "ms"], [/_s$/, "s"], [/_GB$/i, "GB"], [/_MB$/i, "MB"],
];

function unitOf(key) {
    const leaf = key.slice(key.lastIndexOf(".") + 1);
    for (const [re, unit] of UNIT_SUFFIX) {
        if (re.test(leaf)) {
            return { unit, name: key.replace(re, "") };
        }
    }
    if (/humidity/i.test(leaf)) {
        return { unit: "%", name: key };
    }
    return { unit: "", name: key };
}

function readable(name) {
    return name.replace(/_/g, " ").replace(/\./g, " › ");
}

const numFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });
const bigFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

function formatNumber(v) {
    return Math.abs(v) >= 1000 ? bigFmt.format(v) : numFmt.format(v);
}

function pad(n, w = 2) {
    return String(n).padStart(w, "0");
}

function formatTime(ms) {
    const d = new Date(ms);
    const now = new Date(Date.now() + state.clockOffset);
    const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (d.toDateString() === now.toDateString()) {
        return hms;
    }
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
}

function formatAge(ms) {
    if (!(ms >= 0)) {
        return ms < 0 ? "in the future" : "?";
    }
    const s = Math.floor(ms / 1000);
    if (s < 60) {
        return `${s} s`;
    }
    if (s < 3600) {
        return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
    }
    if (s < 86400) {
        return `${Math.floor(s / 3600)} h ${pad(Math.floor(s / 60) % 60)} min`;
    }
    return `${Math.floor(s / 86400)} d ${Math.floor(s / 3600) % 24} h`;
}

const serverNow = () => Date.now() + state.clockOffset;

// Flatten `data` into [dotted key, value] pairs; a bare value is "value".
function flatten(data, prefix = "", out = []) {
    if (data !== null && typeof data === "object" && !Array.isArray(data)) {
        for (const [k, v] of Object.entries(data)) {
            flatten(v, prefix ? `${prefix}.${k}` : k, out);
        }
        if (!prefix && out.length === 0) {
            out.push(["value", data]);
        }
    }
    else {
        out.push([prefix || "value", data]);
    }
    return out;
}

function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (k === "class") {
            e.className = v;
        }
        else if (k === "text") {
            e.textContent = v;
        }
        else {
            e.setAttribute(k, v);
        }
    }
    for (const c of children) {
        if (c !== null && c !== undefined) {
            e.append(c);
        }
    }
    return e;
}

// Fields whose `true` is bad news (battery_low, rain, errors ...): their
// badge is coloured the other way round.
const TRUE_IS_BAD = /(^|_|\.)(low|error|errors|fail|failed|failure|fault|alarm|wet|rain|raining|unsafe|warning|stale)($|_)/i;

const OK_NAME = /(^|_|\.)(safe|ok)$/i;     // rain_safe, ac_ok: true is good

function valueNode(key, v) {
    if (typeof v === "boolean") {
        const good = !OK_NAME.test(key) && TRUE_IS_BAD.test(key) ? !v : v;
        return el("span", { class: `badge ${good ? "good" : "bad"}`, text: v ? "yes" : "no" });
    }
    if (typeof v === "number") {
        const { unit } = unitOf(key);
        return el("span", {},
            el("span", { class: "num", text: formatNumber(v) }),
            unit ? el("span", { class: "unit", text: unit }) : null);
    }
    if (v === null) {
        return el("span", { class: "unit", text: "—" });
    }
    if (typeof v === "string") {
        return document.createTextNode(v);
    }
    const s = JSON.stringify(v);
    return document.createTextNode(s.length > 80 ? `${s.slice(0, 77)}...` : s);
}

function fieldRow(key, v) {
    const { name } = unitOf(key);
    return el("div", { "data-key": key, "data-value": JSON.stringify(v) },
        el("dt", { text: typeof v === "number" ? readable(name) : readable(key) }),
        el("dd", {}, valueNode(key, v)));
}

// ---- fetching --------------------------------------------------------------

async function getJSON(path) {
    const r = await fetch(api(path), {
        headers: { Accept: "application/json" },
        cache: "no-store",
    });
    // The server's clock, for the ages (a phone's clock may be off): Date
    // has whole seconds, so only a larger difference is believed.
    const date = Date.parse(r.headers.get("Date") || "");
    if (!Number.isNaN(date)) {
        const off = date + 500 - Date.now();
        state.clockOffset = Math.abs(off) > 2000 ? off : 0;
    }
    if (!r.ok) {
        throw new Error(`${path}: HTTP ${r.status}`);
    }
    return r.json();
}

// ---- cards -----------------------------------------------------------------

function renderCard(type, ev) {
    const ts = Date.parse(ev.ts);
    const fields = el("dl", { class: "fields" });
    for (const [k, v] of flatten(ev.data)) {
        fields.append(fieldRow(k, v));
    }
    const meta = [`seq ${ev.seq}`];
    if (ev.meta && ev.meta.run_id !== undefined) {
        meta.push(`run ${ev.meta.run_id}`);
    }
    const card = el("article", {
        class: "card", "data-type": type, "data-ts": ev.ts, "data-seq": String(ev.seq),
    },
    el("header", {},
        el("h2", { text: type }),
        el("span", { class: "age", "data-ts-ms": String(ts), title: ev.ts })),
    fields,
    el("footer", {},
        el("time", { datetime: ev.ts, text: Number.isNaN(ts) ? ev.ts || "no time" : formatTime(ts) }),
        document.createTextNode(` · ${meta.join(" · ")}`)));
    return card;
}

// DOM work waits for the next frame and is done once for everything that
// came meanwhile: a burst of live events costs one update per card shown.
const dirty = { cards: new Map(), note: false, summary: false, lastId: false, list: false };
let frameRequested = false;

function later(what) {
    if (what) {
        dirty[what] = true;
    }
    if (!frameRequested) {
        frameRequested = true;
        requestAnimationFrame(flush);
    }
}

function flush() {
    frameRequested = false;
    if (dirty.cards.size) {
        const now = serverNow();
        const added = document.createDocumentFragment();
        for (const [type, ev] of dirty.cards) {
            if (!state.shown.has(type)) {
                continue;
            }
            const card = renderCard(type, ev);
            tickCard(card, now);
            const old = state.cards.get(type);
            state.cards.set(type, card);
            if (old) {
                old.replaceWith(card);
            }
            else {
                added.append(card);
                dirty.list = true;
            }
        }
        dirty.cards.clear();
        $("#cards").append(added);
    }
    if (dirty.note) {
        dirty.note = false;
        renderNote();
    }
    if (dirty.summary) {
        dirty.summary = false;
        renderSummary();
    }
    if (dirty.lastId) {
        dirty.lastId = false;
        $("#last-id").textContent = state.lastId;
    }
    if (dirty.list) {
        dirty.list = false;
        renderTypeList();
    }
}

// A live event: its card is updated at the next frame if it has one, or
// gets one while fewer than CARD_CAP are shown; otherwise it is only
// remembered (and counted in the note if its type is new).
function setCard(type, ev) {
    const fresh = !state.current.has(type);
    state.current.set(type, ev);
    if (!state.shown.has(type) && (state.shown.size < CARD_CAP || state.types.includes(type))) {
        state.shown.add(type);
    }
    if (state.shown.has(type)) {
        dirty.cards.set(type, ev);
        later();
    }
    if (fresh) {
        later("note");
    }
    if (SUMMARY_TYPES.has(type)) {
        later("summary");
    }
}

// A snapshot (GET ../current, the stream's `current`): the cards are
// worked out again, in the server's order, and put in place at once.
function setAllCards(current) {
    const entries = Object.entries(current);
    state.current = new Map(entries);
    // Live events not drawn yet: the snapshot wins, as it did when they
    // were drawn at once (a later reconcile follows any live event).
    dirty.cards.clear();
    const plotted = new Set(state.types);
    const shown = new Set();
    const cards = new Map();
    const order = [];
    const now = serverNow();
    entries.forEach(([type, ev], i) => {
        if (i >= CARD_CAP && !plotted.has(type)) {
            return;
        }
        let card = state.cards.get(type);
        // Unchanged cards stay as they are (no flicker every reconcile).
        if (!card || card.dataset.ts !== ev.ts || card.dataset.seq !== String(ev.seq)) {
            card = renderCard(type, ev);
            tickCard(card, now);
        }
        shown.add(type);
        cards.set(type, card);
        order.push(card);
    });
    state.shown = shown;
    state.cards = cards;
    const box = $("#cards");
    const kids = box.children;
    if (kids.length !== order.length || order.some((c, i) => kids[i] !== c)) {
        box.replaceChildren(...order);
    }
    renderNote();
    renderSummary();
    renderTypeList();
}

// "N more types not shown", above the cards.
function renderNote() {
    const note = $("#cards-more");
    const hidden = state.current.size - state.shown.size;
    note.dataset.hidden = String(hidden);
    note.hidden = hidden <= 0;
    if (hidden <= 0) {
        note.replaceChildren();
        return;
    }
    note.replaceChildren(
        el("b", { text: `${hidden} more ${hidden === 1 ? "type" : "types"} not shown` }),
        `: cards are shown for the first ${CARD_CAP} types in the server's order`
        + " and for the plotted ones; all of them are in ",
        el("a", { href: api("current") }, el("code", { text: "current" })),
        ".");
}

function tickCard(card, now) {
    const age = $(".age", card);
    const ts = Number(age.dataset.tsMs);
    const ms = now - ts;
    age.textContent = Number.isNaN(ts) ? "age unknown" : `${formatAge(ms)} ago`;
    const stale = !(ms <= STALE_MS);
    card.classList.toggle("stale", stale);
    card.dataset.stale = String(stale);
}

// At a glance: safe?, the unit's state, mains or battery.
function renderSummary() {
    const box = $("#summary");
    box.replaceChildren();
    const pill = (label, value, good) => {
        const p = el("span", { class: "pill" }, `${label} `, el("b", { text: value }));
        if (good !== undefined) {
            p.append(" ", el("span", { class: `badge ${good ? "good" : "bad"}`, text: good ? "ok" : "!" }));
        }
        box.append(p);
    };
    const w = state.current.has("weather") && state.current.get("weather").data;
    if (w && typeof w.safe === "boolean") {
        pill("weather", w.safe ? "safe" : "unsafe", w.safe);
    }
    const st = state.current.has("status") && state.current.get("status").data;
    if (st && typeof st.state === "string") {
        pill("state", st.state);
    }
    const p = state.current.has("power") && state.current.get("power").data;
    if (p && typeof p.ac_ok === "boolean") {
        pill("power", p.ac_ok ? "mains" : "battery", p.ac_ok);
    }
}

// ---- the run ----------------------------------------------------------------

function renderRun() {
    const box = $("#run");
    const run = state.run;
    box.replaceChildren(el("h2", { text: "run" }));
    box.dataset.runId = run ? run.run_id : "";
    if (!run) {
        box.append(el("p", { class: "none", text: "No run is active." }));
        return;
    }
    const started = Date.parse(run.started_at);
    box.append(el("dl", { class: "fields" },
        el("div", { "data-key": "run_id" }, el("dt", { text: "id" }), el("dd", { text: run.run_id })),
        el("div", { "data-key": "run_dir" }, el("dt", { text: "directory" }), el("dd", {}, el("code", { text: run.run_dir }))),
        el("div", { "data-key": "started_at" }, el("dt", { text: "started" }),
            el("dd", {}, el("time", { datetime: run.started_at, text: formatTime(started) }))),
        el("div", { "data-key": "elapsed" }, el("dt", { text: "elapsed" }),
            el("dd", { class: "elapsed", "data-ts-ms": String(started) }))));
    tickRun(serverNow());
}

function tickRun(now) {
    const e = $("#run .elapsed");
    if (e) {
        e.textContent = formatAge(now - Number(e.dataset.tsMs));
    }
}

async function refreshRun() {
    try {
        const ready = await getJSON("ready");
        state.run = ready.run_active ? await getJSON("run") : null;
    }
    catch (err) {
        // The run ended between the two requests, or the server is away:
        // the next poll or live event tells.
        state.run = null;
    }
    renderRun();
}

// ---- plots ------------------------------------------------------------------

function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function palette(n) {
    const c = [1, 2, 3, 4, 5, 6].map((i) => cssVar(`--series-${i}`));
    return Array.from({ length: n }, (_, i) => c[i % c.length]);
}

// The numeric fields of a type, grouped into plots: one per unit, several
// series each; fields without a unit get a plot each, unless every field
// of the type is unitless (power: the currents of the unit's devices).
function groupFields(fields) {
    const byUnit = new Map();
    const unitless = [];
    for (const f of fields) {
        const { unit } = unitOf(f);
        if (unit) {
            if (!byUnit.has(unit)) {
                byUnit.set(unit, []);
            }
            byUnit.get(unit).push(f);
        }
        else {
            unitless.push(f);
        }
    }
    const groups = [...byUnit].map(([unit, fs]) => ({ unit, fields: fs }));
    if (groups.length === 0 && unitless.length) {
        groups.push({ unit: "", fields: unitless });
    }
    else {
        for (const f of unitless) {
            groups.push({ unit: "", fields: [f] });
        }
    }
    return groups;
}

// A row per bucket of `every`: {t, bucket, vals: {field: number}}.  A live
// event replaces its bucket's row when it is at least as late (the server
// keeps the latest event per bucket too), so the page shows what a reload
// would, and an event seen twice changes nothing.
function addRow(plot, ts, data) {
    if (Number.isNaN(ts) || ts < plot.since) {
        return false;
    }
    const vals = {};
    let fresh = false;
    for (const [k, v] of flatten(data)) {
        if (typeof v === "number" && Number.isFinite(v)) {
            vals[k] = v;
            if (!plot.fieldSet.has(k)) {
                plot.fieldSet.add(k);
                plot.fields.push(k);
                fresh = true;
            }
        }
    }
    const bucket = Math.floor(ts / plot.everyMs);
    const rows = plot.rows;
    let i = rows.length;
    while (i > 0 && rows[i - 1].bucket > bucket) {
        i--;
    }
    if (i > 0 && rows[i - 1].bucket === bucket) {
        if (ts >= rows[i - 1].t) {
            rows[i - 1] = { t: ts, bucket, vals };
        }
    }
    else {
        rows.splice(i, 0, { t: ts, bucket, vals });
    }
    return fresh;
}

function trimRows(plot) {
    const win = WINDOWS[state.window];
    plot.since = Math.floor((serverNow() - win.ms) / win.everyMs) * win.everyMs;
    while (plot.rows.length && plot.rows[0].t < plot.since) {
        plot.rows.shift();
    }
}

function drawPlot(plot, rebuild) {
    const box = plot.el;
    box.dataset.points = String(plot.rows.length);
    box.dataset.lastTs = plot.rows.length ? String(plot.rows[plot.rows.length - 1].t) : "";
    if (rebuild || !plot.groups) {
        for (const g of plot.groups || []) {
            if (g.graph) {
                g.graph.destroy();
            }
        }
        box.replaceChildren(el("h3", { class: "plot-type", text: plot.type }));
        plot.groups = groupFields(plot.fields);
        if (plot.groups.length === 0) {
            box.append(el("p", { class: "empty", text: `no numeric ${plot.type} data in the last ${state.window}` }));
        }
        for (const g of plot.groups) {
            g.el = el("div", { class: "plot", "data-unit": g.unit });
            const title = g.fields.length === 1 ? readable(unitOf(g.fields[0]).name) : plot.type;
            g.el.append(el("h3", {}, title, g.unit ? el("span", { class: "unit", text: `(${g.unit})` }) : null));
            g.graphEl = el("div", { class: "graph" });
            g.legendEl = el("div", { class: "legend" });
            const keys = el("div", { class: "keys" });
            g.fields.forEach((f, i) => keys.append(
                el("span", { class: `key s${(i % 6) + 1}`, text: readable(unitOf(f).name) })));
            g.el.append(g.graphEl, el("div", { class: "under" }, keys, g.legendEl));
            box.append(g.el);
            g.graph = null;
        }
    }
    const win = WINDOWS[state.window];
    const now = serverNow();
    for (const g of plot.groups) {
        const data = plot.rows.map((r) => [new Date(r.t), ...g.fields.map((f) => (f in r.vals ? r.vals[f] : null))]);
        const opts = {
            file: data,
            dateWindow: [plot.since, Math.max(now, plot.since + win.ms)],
        };
        if (!g.graph) {
            if (data.length === 0) {
                // Dygraph needs a point to draw; one empty row keeps the axes.
                opts.file = [[new Date(now), ...g.fields.map(() => null)]];
            }
            g.graph = new Dygraph(g.graphEl, opts.file, {
                labels: ["time", ...g.fields.map((f) => readable(unitOf(f).name))],
                dateWindow: opts.dateWindow,
                highlightCallback: (e, x, points) => showValues(g, x, points),
                unhighlightCallback: () => g.legendEl.replaceChildren(),
                connectSeparatedPoints: true,
                drawPoints: false,
                strokeWidth: 1.5,
                colors: palette(g.fields.length),
                axisLineColor: cssVar("--line"),
                gridLineColor: cssVar("--grid"),
                axisLabelWidth: 48,
                digitsAfterDecimal: 2,
            });
        }
        else if (data.length) {
            g.graph.updateOptions(opts);
        }
    }
}

// The values under the pointer, coloured by class like the keys.
function showValues(g, x, points) {
    const box = g.legendEl;
    box.replaceChildren(el("span", { class: "at", text: formatTime(x) }));
    for (const p of points) {
        const i = g.fields.findIndex((f) => readable(unitOf(f).name) === p.name);
        if (p.yval !== null && !Number.isNaN(p.yval)) {
            box.append(" ", el("span", { class: `key s${(i % 6) + 1}`, text: `${p.name} ${formatNumber(p.yval)}` }));
        }
    }
}

function plotContainer(type) {
    let box = $(`#plots > [data-type="${CSS.escape(type)}"]`);
    if (!box) {
        box = el("div", { class: "plot-group", "data-type": type, "data-points": "0" });
        $("#plots").append(box);
    }
    return box;
}

async function loadPlot(type, gen) {
    const win = WINDOWS[state.window];
    // Bucket-aligned, so that the first bucket is whole.
    const since = Math.floor((serverNow() - win.ms) / win.everyMs) * win.everyMs;
    const plot = {
        type, since, everyMs: win.everyMs, rows: [], fields: [], fieldSet: new Set(),
        el: plotContainer(type), groups: null,
    };
    plot.el.dataset.since = new Date(since).toISOString();
    plot.el.dataset.loaded = "false";
    let q = `events?type=${encodeURIComponent(type)}&since=${encodeURIComponent(new Date(since).toISOString())}`
        + `&every=${win.every}&order=asc&limit=10000`;
    let cursor = null;
    let pages = 0;
    do {
        const page = await getJSON(cursor ? `${q}&cursor=${encodeURIComponent(cursor)}` : q);
        if (gen !== state.plotGen) {
            return;
        }
        for (const ev of page.events) {
            addRow(plot, Date.parse(ev.ts), ev.data);
        }
        cursor = page.next;
    } while (cursor && ++pages < 20);
    state.plots.set(type, plot);
    drawPlot(plot, true);
    plot.el.dataset.loaded = "true";
}

async function loadPlots() {
    const gen = ++state.plotGen;
    state.plots.clear();
    for (const box of [...$("#plots").children]) {
        if (!state.types.includes(box.dataset.type)) {
            box.remove();
        }
    }
    for (const t of state.types) {
        plotContainer(t);       // in the chosen order
    }
    state.loading++;
    document.body.dataset.plots = "loading";
    try {
        await Promise.all(state.types.map((t) => loadPlot(t, gen)));
    }
    catch (err) {
        console.warn("plots:", err.message);
    }
    finally {
        state.loading--;
    }
    if (gen !== state.plotGen) {
        return;
    }
    // Live events that arrived meanwhile (those already in an answer
    // change nothing: see addRow).
    const pending = state.pending;
    state.pending = [];
    for (const ev of pending) {
        plotEvent(ev);
    }
    document.body.dataset.plots = "ready";
}

function plotEvent(ev) {
    if (state.loading) {
        if (state.types.includes(ev.type)) {
            state.pending.push(ev);
        }
        return;
    }
    const plot = state.plots.get(ev.type);
    if (!plot) {
        return;
    }
    trimRows(plot);
    const fresh = addRow(plot, Date.parse(ev.ts), ev.data);
    drawPlot(plot, fresh);
}

function recolorPlots() {
    for (const plot of state.plots.values()) {
        for (const g of plot.groups || []) {
            if (g.graph) {
                g.graph.updateOptions({
                    colors: palette(g.fields.length),
                    axisLineColor: cssVar("--line"),
                    gridLineColor: cssVar("--grid"),
                });
            }
        }
    }
}

// ---- controls ----------------------------------------------------------------

function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    if (WINDOWS[h.get("window")]) {
        state.window = h.get("window");
    }
    if (h.has("types")) {
        state.types = h.get("types").split(",").filter(Boolean);
    }
}

function writeHash() {
    const h = new URLSearchParams({ window: state.window, types: state.types.join(",") });
    history.replaceState(null, "", `#${h}`);
}

function renderWindows() {
    for (const b of document.querySelectorAll("#windows button")) {
        b.setAttribute("aria-pressed", String(b.dataset.window === state.window));
    }
}

// The types one can plot: those with a card, the plotted ones and the
// defaults, sorted; built once per snapshot (or when a card is added),
// and only when the list is not the one shown already.  The types beyond
// the cap are left out like their cards (#types=... in the URL plots any).
let listKey = null;

function renderTypeList() {
    const types = [...new Set([...DEFAULT_TYPES, ...state.types, ...state.shown])].sort();
    const key = JSON.stringify(types);
    if (key === listKey) {
        return;
    }
    listKey = key;
    const chosen = new Set(state.types);
    const labels = types.map((t) => {
        const box = el("input", { type: "checkbox", value: t });
        box.checked = chosen.has(t);
        return el("label", {}, box, ` ${t}`);
    });
    $("#type-list").replaceChildren(...labels);
}

function setupControls() {
    $("#windows").addEventListener("click", (e) => {
        const w = e.target.closest("button") && e.target.closest("button").dataset.window;
        if (w && w !== state.window) {
            state.window = w;
            writeHash();
            renderWindows();
            loadPlots();
        }
    });
    $("#type-list").addEventListener("change", () => {
        state.types = [...document.querySelectorAll("#type-list input:checked")].map((i) => i.value);
        writeHash();
        loadPlots();
    });
    const theme = $("#theme");
    const apply = (red) => {
        document.documentElement.dataset.theme = red ? "red" : "dark";
        theme.setAttribute("aria-pressed", String(red));
        recolorPlots();
    };
    theme.addEventListener("click", () => {
        const red = document.documentElement.dataset.theme !== "red";
        try {
            localStorage.setItem("ptm-theme", red ? "red" : "dark");
        }
        catch (err) {
            // private mode: the choice lasts as long as the page
        }
        apply(red);
    });
    let saved = null;
    try {
        saved = localStorage.getItem("ptm-theme");
    }
    catch (err) {
        saved = null;
    }
    apply(saved === "red");
}

// ---- the live feed -----------------------------------------------------------

let source = null;
let reconcileTimer = 0;
let retryTimer = 0;
let retryDelay = 2000;
let resetting = false;
let offlineTimer = 0;           // "reconnecting" becomes "offline" (OFFLINE_AFTER_MS)
let busy = false;               // this stream was a refusal at the cap

function setConn(s, why = "") {
    if (s !== state.conn) {
        state.connLog.push([Date.now(), s]);
        if (state.connLog.length > 200) {
            state.connLog.shift();
        }
    }
    state.conn = s;
    const c = $("#conn");
    c.dataset.state = s;
    c.textContent = s;
    c.title = why || "live feed (GET /stream)";
}

function setLastId(id) {
    if (id) {
        state.lastId = id;
        later("lastId");
    }
}

function onTelemetry(e) {
    let ev;
    try {
        ev = JSON.parse(e.data);
    }
    catch (err) {
        console.warn("stream: not JSON:", e.data.slice(0, 80));
        return;
    }
    setLastId(e.lastEventId);
    state.received.push([e.lastEventId, ev.type, ev.stream, ev.seq]);
    if (state.received.length > KEEP_IDS) {
        state.received.splice(0, state.received.length - KEEP_IDS);
    }
    const pub = { seq: ev.seq, ts: ev.ts, type: ev.type, data: ev.data, meta: ev.meta };
    // A run's event overrides the site's value of its type; a site event
    // while a run is active means the run has ended (SPEC 3.6).
    const runId = ev.meta && ev.meta.run_id;
    if ((ev.stream === "run" && (!state.run || state.run.run_id !== String(runId)))
        || (ev.stream === "site" && state.run)) {
        refreshRun();
    }
    setCard(ev.type, pub);
    plotEvent(ev);
    clearTimeout(reconcileTimer);
    reconcileTimer = setTimeout(reconcile, RECONCILE_MS);
}

async function reconcile() {
    try {
        setAllCards((await getJSON("current")).current);
    }
    catch (err) {
        console.warn("current:", err.message);
    }
}

function connect() {
    clearTimeout(retryTimer);
    clearTimeout(offlineTimer);
    offlineTimer = 0;
    if (source) {
        source.close();
    }
    // A new EventSource cannot send Last-Event-ID: the query does (12.3).
    const url = state.lastId ? `stream?last_event_id=${encodeURIComponent(state.lastId)}` : "stream";
    const es = new EventSource(api(url));
    source = es;
    es.addEventListener("open", () => {
        retryDelay = 2000;
        busy = false;
        clearTimeout(offlineTimer);
        offlineTimer = 0;
        setConn("live");
    });
    es.addEventListener("current", (e) => {
        setLastId(e.lastEventId);
        try {
            setAllCards(JSON.parse(e.data).current);
        }
        catch (err) {
            console.warn("stream: bad snapshot");
        }
        if (resetting) {
            // Events were missed: the plots are read again.
            resetting = false;
            loadPlots();
        }
    });
    es.addEventListener("telemetry", onTelemetry);
    es.addEventListener("reset", () => {
        resetting = true;
    });
    es.addEventListener("busy", () => {
        busy = true;
        setConn("reconnecting", "the server has too many live-feed subscribers");
    });
    es.addEventListener("error", () => {
        if (es !== source) {
            return;
        }
        if (es.readyState === EventSource.CONNECTING) {
            // The browser reconnects by itself, with Last-Event-ID; a
            // server that does not come back within OFFLINE_AFTER_MS is
            // offline (one that refused at the cap answers: it is not).
            const refused = busy;
            busy = false;
            if (state.conn === "live") {
                setConn("reconnecting");
            }
            if (!refused && !offlineTimer && state.conn !== "offline") {
                offlineTimer = setTimeout(() => {
                    offlineTimer = 0;
                    if (es === source && es.readyState !== EventSource.OPEN) {
                        setConn("offline", "the server does not answer; retrying");
                    }
                }, OFFLINE_AFTER_MS);
            }
            return;
        }
        clearTimeout(offlineTimer);
        offlineTimer = 0;
        // Closed for good (an answer that is not a stream): try again later.
        setConn("offline", "no live feed; retrying");
        retryTimer = setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 60e3);
    });
}

// ---- start -----------------------------------------------------------------

function tick() {
    const now = serverNow();
    for (const card of state.cards.values()) {
        tickCard(card, now);
    }
    tickRun(now);
}

async function start() {
    readHash();
    setupControls();
    renderWindows();
    renderTypeList();
    $("#unit-host").textContent = location.host;
    const first = reconcile();
    connect();
    await Promise.all([first, refreshRun(), loadPlots()]);
    setInterval(tick, 1000);
    setInterval(() => {
        refreshRun();
        if (state.conn !== "live") {
            reconcile();
        }
    }, POLL_MS);
    document.body.dataset.ready = "true";
}

window.ptmDash = {
    state,
    cardCap: CARD_CAP,
    plotRows: (type) => {
        const p = state.plots.get(type);
        return p ? p.rows.map((r) => [r.t, r.vals]) : null;
    },
    reconnect: connect,
};

start();
