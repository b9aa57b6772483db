// GET /stream seen by a real browser's EventSource (SPEC 12.3).
//
// Query parameters (all set by t/browser/test_stream.py):
//   api    where the API is, ending in "/" (default "/")
//   token  a string unique to this run: the events this page posts carry
//          it, and the snapshot must hold the event the test posted
//          before loading the page (type `before`, data.token)
//   before the type of that event (default "browser_before")
//   type   the type of the events this page posts (default "browser_live")
//   live   how many it posts while the stream is open (default 5)
//   gap    how many it posts after the server ended the stream and before
//          the browser reconnected (default 5)
//
// It checks: the first event is `current` and holds the test's event; the
// live events arrive in order, each once; when the server ends the stream
// (PanoptesTelemetryStreamTimeout or a graceful restart, `retry: 1000`;
// window.ptmPhase is "live-done" from when it waits for that), the browser
// reconnects by itself, sending Last-Event-ID, and gets the events posted
// in the gap exactly once, in order, with no `reset` and no second
// snapshot.  The result is window.ptmVerdict: {ok, failures, ...}.

const q = new URLSearchParams(location.search);
const api = q.get("api") || "/";
const token = q.get("token") || String(Date.now());
const before = q.get("before") || "browser_before";
const type = q.get("type") || "browser_live";
const nLive = Number(q.get("live") || 5);
const nGap = Number(q.get("gap") || 5);
const SETTLE_MS = 700;          // after the last event: is anything doubled?

const seen = [];                // every SSE message, in arrival order
const failures = [];
let opens = 0;
let phase = "snapshot";         // mirrored in window.ptmPhase
let gapPostsDoneAt = null;      // performance.now() of the last gap POST
let reopenedAt = null;          // ... of the first open after the gap
let idAtGap = null;             // lastEventId when the server ended it
let wakeUp = null;              // resolves the current wait

const show = (s) => {
    document.getElementById("state").textContent = s;
    document.getElementById("log").textContent += s + "\n";
};
const poke = () => {
    window.ptmPhase = phase;
    if (wakeUp) { const w = wakeUp; wakeUp = null; w(); }
};
const until = (cond, ms, what) => new Promise((resolve, reject) => {
    const t0 = performance.now();
    const check = () => {
        if (cond()) { resolve(); return; }
        if (performance.now() - t0 > ms) {
            reject(new Error("timed out waiting for " + what));
            return;
        }
        wakeUp = check;
        setTimeout(poke, 50);
    };
    check();
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mine = () => seen.filter((m) => m.kind === "telemetry"
    && m.data.type === type && m.data.data && m.data.data.token === token);

async function post(i) {
    const r = await fetch(api + "event", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({type, data: {token, i},
                              store_permanently: false}),
    });
    if (r.status !== 200) {
        throw new Error("POST /event " + i + " answered " + r.status);
    }
    await r.json();
}

function parseId(id) {
    const m = /^(\d+)-(\d+)$/.exec(id || "");
    return m ? {epoch: m[1], n: BigInt(m[2])} : null;
}

function check() {
    const first = seen[0];
    if (!first || first.kind !== "current") {
        failures.push("the first message is " + (first && first.kind)
                      + ", not current");
    } else {
        const cur = first.data && first.data.current;
        const b = cur && cur[before];
        if (!b || !b.data || b.data.token !== token) {
            failures.push("the snapshot does not hold the test's "
                          + before + " event");
        }
        if (!parseId(first.id)) {
            failures.push("the snapshot has no id <epoch>-<n>: " + first.id);
        }
    }
    const kinds = seen.map((m) => m.kind);
    if (kinds.filter((k) => k === "current").length !== 1) {
        failures.push("snapshots: " + kinds.filter((k) => k === "current")
                      .length + " (the reconnect must resume, not restart)");
    }
    for (const k of ["reset", "busy"]) {
        if (kinds.includes(k)) failures.push("got event: " + k);
    }
    // Ids: one epoch, strictly increasing over everything received.
    let prev = null;
    for (const m of seen) {
        const id = parseId(m.id);
        if (!id) {
            failures.push(m.kind + " without a valid id: " + m.id);
            continue;
        }
        if (prev && (id.epoch !== prev.epoch || id.n <= prev.n)) {
            failures.push("id " + m.id + " after " + prev.epoch + "-"
                          + prev.n);
        }
        prev = id;
    }
    const is = mine().map((m) => m.data.data.i);
    const want = [...Array(nLive + nGap).keys()];
    if (JSON.stringify(is) !== JSON.stringify(want)) {
        failures.push("posted events arrived as [" + is + "], want ["
                      + want + "]");
    }
    if (opens < 2) failures.push("the browser did not reconnect");
    if (gapPostsDoneAt === null || reopenedAt === null
        || gapPostsDoneAt > reopenedAt) {
        failures.push("the gap events were not all posted before the "
                      + "browser reconnected");
    }
}

async function main() {
    const es = new EventSource(api + "stream");
    es.onopen = () => {
        opens += 1;
        if (phase === "gap" && reopenedAt === null) {
            reopenedAt = performance.now();
        }
        poke();
    };
    es.onerror = () => {
        // The server ended the stream: the browser will reconnect.
        if (phase === "live-done" && es.readyState === EventSource.CONNECTING) {
            phase = "gap";
            idAtGap = seen.length ? seen[seen.length - 1].id : null;
        }
        poke();
    };
    for (const kind of ["current", "telemetry", "reset", "busy"]) {
        es.addEventListener(kind, (e) => {
            let data = null;
            try { data = JSON.parse(e.data); } catch (err) { data = e.data; }
            seen.push({kind, id: e.lastEventId, data,
                       at: performance.now()});
            poke();
        });
    }
    try {
        await until(() => seen.length > 0, 5000, "the snapshot");
        show("snapshot received; posting " + nLive + " live events");
        phase = "live";
        for (let i = 0; i < nLive; i++) await post(i);
        await until(() => mine().length >= nLive, 5000, "the live events");
        phase = "live-done";
        window.ptmPhase = phase;
        show("live events received; waiting for the server to end the "
             + "stream");
        await until(() => phase === "gap", 15000,
                    "the server to end the stream");
        for (let i = nLive; i < nLive + nGap; i++) await post(i);
        gapPostsDoneAt = performance.now();
        show("posted " + nGap + " events in the gap after " + idAtGap);
        await until(() => mine().length >= nLive + nGap, 10000,
                    "the gap events after the reconnect");
        await sleep(SETTLE_MS);
        es.close();
        check();
    } catch (err) {
        es.close();
        failures.push(String(err.message || err));
    }
    show(failures.length ? "FAIL" : "ok");
    window.ptmVerdict = {
        ok: failures.length === 0, failures, opens, idAtGap,
        received: seen.map((m) => m.kind + " " + m.id),
        gapPostsDoneBeforeReopenMs: reopenedAt !== null
            && gapPostsDoneAt !== null ? reopenedAt - gapPostsDoneAt : null,
    };
}

main();
