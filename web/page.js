// The demo page's own thread (index.html loads it as a module): the camera and photos, drawing
// the frames, boxes and charts, and the messages; the estimator runs in `worker.js`.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const PALETTE = ["#e63c28", "#28aa46", "#f0a000", "#963cc8", "#00a0be", "#c8288c"];
// What the page has done, for people (the status line) and for the end-to-end tests, which
// read it through WebDriver (`window.ageDemo`): the page itself sends nothing anywhere.
// firstEstimateMs: from the page's start to its first estimate with a face (weights
// downloaded, backend started, camera open, first frame through the pipeline); frameMs keeps
// each frame's time; settled: the page gave up starting, or a photo was estimated.
// frameMs: from grabbing a frame to its answer; workerMs: the worker's part of it;
// videoFrames: new camera frames seen, replaced: those a newer one replaced while the worker
// was busy; longTasks: this thread's tasks over 50 ms (`camera`: while the camera ran), and
// longFrames: the long animation frames, with what ran in them;
// every: the settled-track rule's period; networkFaces of seenFaces: the faces the age
// network ran on, of all faces shown; faceCounts: faces in each frame.
const state = {
  backend: null, backendReason: null, adapter: null, warmUpMs: null, streams: [],
  frames: 0, msPerFrame: null, frameMs: [], workerMs: [], firstEstimateMs: null, faces: [],
  videoFrames: 0, replaced: 0, cameraRuns: 0, cameraStartedMs: null, photos: 0,
  photoScaledFrom: null, restarts: 0, longTasks: [], longFrames: [], errors: [], settled: false, timeline: {},
  every: null, faceCounts: [], networkFaces: 0, seenFaces: 0, threads: null, threadsWhy: null, workerSteps: null,
};
// When each step of the start was done, in ms from the page's start (the first time only):
// worker (its module compiled), weights (downloaded and hashed), estimator (built), video
// (the camera's video playing), camera (its estimation loop started).
const mark = (step) => { state.timeline[step] ??= Math.round(performance.now()); };

function say(text, kind = "note") {
  $("status").className = kind;
  $("status").textContent = text;
}
// A message below the controls, kept until the next action: `error` for what went wrong,
// `note` for what only runs slower or differently. Each is one line naming the problem and
// the fix; several can show at once.
// What is said while the page starts (a stream left out, no WebGPU) stays; the rest goes
// with the next action.
let started = false;
function problem(text, kind = "error") {
  state.errors.push(text);
  const line = document.createElement("p");
  line.className = kind;
  line.textContent = text;
  if (!started) line.dataset.lasting = "";
  $("message").hidden = false;
  $("message").appendChild(line);
}
function clearProblem() {
  for (const line of Array.from($("message").children)) if (!("lasting" in line.dataset)) line.remove();
  $("message").hidden = $("message").children.length === 0;
}

// ---- the label-distribution section -------------------------------------------------
function bars(canvas, p, colour = "#4a7bd0") {
  const ctx = canvas.getContext("2d"), { width, height } = canvas;
  const pad = 28, w = (width - 2 * pad) / p.length, top = Math.max(...p, 1e-9);
  ctx.fillStyle = colour;
  p.forEach((v, age) => {
    const h = (height - 2 * pad) * v / top;
    ctx.fillRect(pad + age * w, height - pad - h, Math.max(w - 1, 1), h);
  });
  return { ctx, pad, w, top };
}
// Computed in the worker, by the same module as the estimates.
async function updateLabel() {
  const mu = Number($("mu").value), sigma = Number($("sigma").value);
  $("mu-value").textContent = mu.toFixed(1);
  $("sigma-value").textContent = sigma.toFixed(1);
  let answer;
  try {
    await ensureWorker();
    answer = await call({ type: "label", mu, sigma });
  } catch { return; }
  if (Number($("mu").value) !== mu || Number($("sigma").value) !== sigma) return;
  const p = answer.distribution;
  $("mean").textContent = answer.mean.toFixed(2);
  $("std").textContent = answer.std.toFixed(2);
  const canvas = $("chart");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  const { ctx, pad, w } = bars(canvas, Array.from(p));
  ctx.fillStyle = "#333"; ctx.font = "12px system-ui";
  for (let age = 0; age <= 100; age += 10) ctx.fillText(String(age), pad + age * w, canvas.height - 8);
}

// ---- weights ---------------------------------------------------------------------------
// Every file is checked for what it is, whatever the server does: a missing file may come
// back as a 404, or (from servers that answer every unknown path with the page itself) as
// an HTML page with status 200.
const FETCH_MODELS = "run `cargo xtask fetch-models`, then `cargo xtask demo`";
const looksLikeHtml = (bytes) => /^\s*<(!doctype|html|head|body)/i.test(new TextDecoder().decode(bytes.subarray(0, 64)));
const isHtml = (response) => (response.headers.get("Content-Type") ?? "").startsWith("text/html");
async function request(url) {
  try { return await fetch(url, { cache: "no-cache" }); } catch (e) {
    throw new Error(`${url} could not be fetched (${e.message}): is \`cargo xtask demo\` still running?`);
  }
}

// The bytes of a weights file, `share` of the progress bar; `expected` is its size when
// known. Throws with the file's name, what is wrong and `fix`.
const arrived = new Map();
async function download(url, share, fix, expected = null) {
  const response = await request(url);
  if (!response.ok) throw new Error(`${url} is missing (HTTP ${response.status}): ${fix}.`);
  if (isHtml(response)) throw new Error(`${url} came back as an HTML page, not weights (the file is missing): ${fix}.`);
  const total = Number(response.headers.get("Content-Length")) || 0;
  const reader = response.body.getReader(), parts = [];
  let received = 0;
  for (;;) {
    let chunk;
    try { chunk = await reader.read(); } catch (e) {
      throw new Error(`${url} stopped arriving after ${received} bytes (${e.message}): reload the page; if it happens again, ${fix}.`);
    }
    if (chunk.done) break;
    parts.push(chunk.value); received += chunk.value.length;
    if (total) {
      // The downloads run at once: the bar shows the sum of their shares.
      arrived.set(url, share * Math.min(received / total, 1));
      $("progress").style.width = `${Array.from(arrived.values()).reduce((a, b) => a + b, 0) * 100}%`;
    }
  }
  const bytes = new Uint8Array(received);
  let at = 0;
  for (const part of parts) { bytes.set(part, at); at += part.length; }
  checkSize(url, received, expected ?? (total && !response.headers.get("Content-Encoding") ? total : null), fix);
  if (looksLikeHtml(bytes)) throw new Error(`${url} holds an HTML page, not weights: ${fix}.`);
  return bytes;
}
// Throws when a file of `received` bytes is not the `wanted` (null: unknown) it should be.
function checkSize(url, received, wanted, fix) {
  if (wanted !== null && received < wanted) {
    throw new Error(`${url} arrived short (${received} of ${wanted} bytes): reload the page; if it happens again, ${fix}.`);
  }
  if (wanted !== null && received !== wanted) {
    throw new Error(`${url} has ${received} bytes, not the ${wanted} expected: ${fix}.`);
  }
}

// A JSON file: its value, or null when it is absent (a 404, or an HTML page in its place).
// Throws when it is there but damaged.
async function json(url, fix) {
  const response = await request(url);
  if (response.status === 404 || response.status === 410) return null;
  if (!response.ok) throw new Error(`${url}: the server answered HTTP ${response.status}: ${fix}.`);
  if (isHtml(response)) return null;
  const text = await response.text();
  if (/^\s*</.test(text)) return null;
  try { return JSON.parse(text); } catch (e) {
    throw new Error(`${url} is damaged (${e.message}): ${fix}.`);
  }
}

// A file's sha256 in hex, computed by the browser off this thread; null without
// `crypto.subtle` (a page that is not secure), and the estimator hashes the file itself.
async function sha256(bytes) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return null;
  const digest = new Uint8Array(await subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Streams written by `trainer export` into models/streams/, listed in its index.json. The
// index is absent until a stream is exported; a stream that cannot be read is said and left
// out, and the others run.
let pretrainedWeight = null;
async function exportedStreams() {
  let index;
  try {
    index = await json("models/streams/index.json", "export a stream again with `trainer export` to rewrite it; the page runs the pretrained stream alone");
  } catch (e) { problem(e.message); return []; }
  if (index === null) return [];
  const names = index.streams;
  if (!Array.isArray(names) || !names.every((n) => typeof n === "string" && /^[^/\\]+$/.test(n) && n !== "." && n !== "..")) {
    problem("models/streams/index.json is not a stream index (it needs {\"streams\": [folder names]}): export a stream again with `trainer export` to rewrite it; the page runs the pretrained stream alone.");
    return [];
  }
  // The published network's fusion weight beside these streams (absent: 1).
  const w = index.pretrained_weight;
  pretrainedWeight = typeof w === "number" && Number.isFinite(w) && w >= 0 ? w : null;
  // All at once, each hashed by the browser as soon as it has arrived (see downloadWeights),
  // in the index's order, which is the fusion's. A stream's card and weights are asked for
  // together (one round trip, not two); the card's `weights_bytes` is checked once both are here.
  const one = async (folder) => {
    const again = `export it again with \`trainer export --name ${folder}\`; the page runs without it`;
    const url = `models/streams/${folder}/weights.bpk`;
    const arriving = download(url, 0.7 / names.length, again).then(async (bytes) => [bytes, await sha256(bytes)]);
    arriving.catch(() => {});
    try {
      const card = await json(`models/streams/${folder}/stream.json`, again);
      if (card === null || typeof card !== "object") {
        throw new Error(`models/streams/${folder}/stream.json is missing (index.json lists the stream): ${again}.`);
      }
      const [weights, digest] = await arriving;
      checkSize(url, weights.length, Number.isInteger(card.weights_bytes) ? card.weights_bytes : null, again);
      return { folder, card, weights, digest };
    } catch (e) { problem(e.message); return null; }
  };
  const streams = await Promise.all(names.map(one));
  return streams.filter(Boolean);
}

// ---- the estimator's worker -------------------------------------------------------------
// The estimator (the WebAssembly module, the weights, the tracker) runs in a module worker
// (`worker.js`), so this thread only grabs frames and draws. The worker is started from a
// blob of that file's text so that it inherits this page's Content-Security-Policy; it loads
// the same WebAssembly module as this page (named by trunk's preload links).
const MODULE = document.querySelector('meta[name="apparent-age-module"]');
const GLUE = MODULE && new URL(MODULE.dataset.glue, location.href).href;
const WASM = MODULE && new URL(MODULE.dataset.wasm, location.href).href;
// The threaded build of the CPU backend (`cargo xtask demo` builds it beside the standard
// one and names it here), run when the page is cross-origin isolated; ?threads=N sets its
// pool, by default one thread a core but one, which the browser keeps for this thread, the
// camera and drawing (at least one, at most 8; on two cores, two threads ran the live page
// at 0.77–1.05× of one in four runs of the benchmark), and ?threads=0 runs the standard
// module instead, on one thread, as a page that is not isolated runs it (for comparisons).
const asked = Math.round(Number(params.get("threads")));
const THREADS = MODULE?.dataset.threadsGlue && MODULE?.dataset.threadsWasm ? {
  glue: new URL(MODULE.dataset.threadsGlue, location.href).href,
  wasm: new URL(MODULE.dataset.threadsWasm, location.href).href,
  count: params.has("threads") && Number.isFinite(asked) ? Math.max(0, Math.min(16, asked)) : Math.max(1, Math.min(8, (navigator.hardwareConcurrency || 1) - 1)),
  // Why one thread, when it is one.
  why: params.has("threads") ? "asked for with ?threads=1" : `this machine has ${navigator.hardwareConcurrency || 1} cores, and one is kept for the browser's own work`,
} : null;
let worker = null, workerSource = null, workerStarted = null, nextCall = 0, drawingWarmedUp = false;
const calls = new Map();

// Sends `message` to the worker; resolves to its answer, rejects with its message (with
// `crashed` set when the worker itself failed and must be started again). A worker that
// gives no answer within `limitMs` counts as failed: the page never waits forever.
function call(message, transfer = [], limitMs = null) {
  if (!worker) return Promise.reject(Object.assign(new Error(failure ?? "the estimator is not running"), { crashed: true }));
  const id = ++nextCall;
  return new Promise((resolve, reject) => {
    const timer = limitMs && setTimeout(() => workerFailed(`no answer within ${limitMs / 1000} s`), limitMs);
    const settle = (f) => (value) => { clearTimeout(timer); f(value); };
    calls.set(id, { resolve: settle(resolve), reject: settle(reject) });
    worker.postMessage({ ...message, id }, transfer);
  });
}
// Why the last worker stopped, said when the next frame finds none.
let failure = null;
function workerFailed(reason) {
  failure = reason;
  worker?.terminate();
  worker = null;
  workerStarted = null;
  for (const { reject } of calls.values()) reject(Object.assign(new Error(reason), { crashed: true }));
  calls.clear();
}
async function startWorker() {
  if (!GLUE || !WASM) throw new Error("the page names no WebAssembly module (it was not built by trunk): build and serve it with `cargo xtask demo`.");
  if (workerSource === null) {
    const response = await request("worker.js");
    if (!response.ok || isHtml(response)) throw new Error(`worker.js is missing (HTTP ${response.status}): build the page again with \`cargo xtask demo\`.`);
    workerSource = await response.text();
  }
  const url = URL.createObjectURL(new Blob([workerSource], { type: "text/javascript" }));
  mark("worker created");
  worker = new Worker(url, { type: "module" });
  worker.onmessage = ({ data }) => {
    const pending = calls.get(data.id);
    if (!pending) return;
    calls.delete(data.id);
    if (data.ok) pending.resolve(data);
    else pending.reject(Object.assign(new Error(data.message), { crashed: data.crashed }));
  };
  worker.onerror = (e) => { e.preventDefault?.(); workerFailed(`the estimator's worker stopped (${e.message || "it could not run"})`); };
  worker.onmessageerror = () => workerFailed("the estimator's worker sent a message that could not be read");
  failure = null;
  try {
    const init = call({ type: "init", glue: GLUE, wasm: WASM, threads: THREADS });
    // While the worker compiles its module and the weights download, this thread is idle:
    // the drawing's first costs are paid then, once, after the worker has its orders (paid
    // before, they held back the worker's start).
    if (!drawingWarmedUp) { drawingWarmedUp = true; setTimeout(warmUpDrawing, 0); }
    const started = await init;
    state.threads = started.threads;
    state.threadsWhy = started.threadsWhy;
    state.workerSteps = started.steps;
  } finally { URL.revokeObjectURL(url); }
  mark("worker");
}
// The running worker, started once; again after it failed.
function ensureWorker() {
  workerStarted ??= startWorker().catch((e) => { workerStarted = null; throw e; });
  return workerStarted;
}

// Downloaded once; a new worker (after a crash) or another backend reuses them.
let weights = null;
// What to run on: "auto" (measured), "webgpu" or "cpu"; from ?backend= or the page's choice.
let choice = ["webgpu", "cpu"].includes(params.get("backend")) ? params.get("backend") : "auto";
// The settled-track rule (dldl's face::tracking): once a face's estimate has settled, the
// age network runs on it on one frame in EVERY, and at once when it moves; ?every=1 runs
// it on every frame.
const EVERY = Math.max(1, Math.min(30, Math.round(Number(params.get("every"))) || 3));
state.every = EVERY;

async function downloadWeights() {
  say("Downloading the weights…");
  // Each file is hashed by the browser (off this thread) as soon as it has arrived, while
  // the others still download; the estimator checks the digests against the files it was
  // built for. Without `crypto.subtle` (a page that is not secure) it hashes them itself.
  // All at once: each download is mostly waiting on the network. The published network
  // (`age-v1.onnx`, 10.8 MB) comes only when it runs: when the streams' index gives it weight
  // or names no stream, or when none of the streams loads (see `load`).
  const [[detector, d1], [landmarks, d2], streams] = await Promise.all([
    hashed("models/blazeface/face_detection_short_range.onnx", 0.02),
    hashed("models/face_landmarks_5.bin", 0.28),
    exportedStreams(),
  ]);
  weights = { detector, landmarks, age: undefined, streams, pretrainedWeight, digests: d1 && d2 ? [d1, d2] : null };
  if (pretrainedWeight !== 0 || streams.length === 0) await addPublished();
}
const hashed = (url, share) => download(url, share, FETCH_MODELS)
  .then(async (bytes) => [bytes, await sha256(bytes)]);
// The published network's file, added to the weights (its digest after the two others').
async function addPublished() {
  say("Downloading the published age network…");
  arrived.clear();
  const [age, digest] = await hashed("models/age-v1.onnx", 1);
  weights.age = age;
  weights.digests = weights.digests && digest ? [...weights.digests, digest] : null;
}

// What the worker answered about its backend, shown and kept in `state`.
let warned = false;
function shown(answer) {
  state.backend = answer.backend;
  state.backendReason = answer.reason;
  state.warmUpMs = answer.timings;
  state.buildMs = answer.buildMs;
  state.buildSteps = answer.buildSteps;
  state.adapter = answer.adapter?.name ?? null;
  state.streams = answer.streams;
  state.threads = answer.threads;
  state.threadsWhy = answer.threadsWhy;
  const cpu = answer.threads > 1 ? `the CPU, on ${answer.threads} threads` : `the CPU, on one thread (${answer.threadsWhy})`;
  $("backend").textContent = answer.backend === "CPU" ? `CPU, ${answer.threads > 1 ? `${answer.threads} threads` : "one thread"}` : answer.backend;
  $("backend-why").textContent = `Runs on ${answer.backend === "CPU" ? cpu : "WebGPU"}: ${answer.reason}.`;
  $("backend-choice").value = choice;
  if (!warned) for (const warning of answer.warnings) problem(warning);
  warned = true;
  const running = new Set(answer.streams);
  $("exported-streams").replaceChildren(...weights.streams.filter(({ card }) => running.has(card.name)).map(({ card }) => {
    const li = document.createElement("li");
    const warning = card.data === "synthetic" ? " — trained on the synthetic drawings, a test stream: its estimates on photographs mean nothing" : "";
    li.textContent = `Exported stream “${card.name}”: ${card.description}; weights ${card.precision}, fusion weight ${card.weight}${warning}.`;
    return li;
  }));
  $("stream-list").textContent = answer.streams.join(", ");
}

// Starts the worker when none runs and builds the estimator on `choice`'s backend.
async function load() {
  // The worker starts (its module compiled) while the weights download.
  const starting = ensureWorker();
  starting.catch(() => {});
  if (!weights) { await downloadWeights(); mark("weights"); }
  await starting;
  say(choice === "cpu" ? "Starting the CPU backend…" : choice === "webgpu" ? "Starting WebGPU…" : "Starting, and measuring which backend is faster here…");
  let answer;
  try {
    // Copies, not transfers: the page keeps the weights to start a new worker.
    answer = await call({ type: "load", files: weights, choice, every: EVERY });
    // None of the streams loaded, and the published network was not downloaded (the worker
    // asks for it only then): it runs alone.
    if (answer.publishedWanted) {
      await addPublished();
      answer = await call({ type: "load", files: weights, choice, every: EVERY });
    }
  } catch (e) {
    if (e.crashed) throw e;
    throw new Error(`the weights could not be loaded (${e.message ?? e}). They may be damaged: ${FETCH_MODELS}.`);
  }
  shown(answer);
  mark("estimator");
  if (choice !== "cpu" && !answer.adapter && navigator.gpu && !state.errors.some((e) => e.includes("WebGPU"))) {
    problem("WebGPU found no usable GPU adapter here: the page runs on the CPU backend, more slowly. A browser with hardware WebGPU (Chrome or Edge 113+) runs it on the GPU.", "note");
  }
  $("progress").style.width = "100%";
}

// After the worker died: one line said, a new worker on the same weights, tracks afresh.
let restarts = 0;
async function restart(reason) {
  restarts += 1;
  state.restarts = restarts;
  problem(`The estimator stopped (${reason}); it was started again, and the faces are tracked afresh.`);
  workerFailed(reason);
  if (restarts > 3) throw new Error(`the estimator stopped ${restarts} times; reload the page, or choose the CPU backend`);
  await load();
}

// ---- drawing ----------------------------------------------------------------------------
function drawFaces(ctx, faces) {
  faces.forEach((t, i) => {
    const f = t.face, [x0, y0, x1, y1] = f.bbox, colour = PALETTE[i % PALETTE.length];
    ctx.lineWidth = 3; ctx.strokeStyle = colour;
    // A face aligned on its eyes alone (its landmarks not trusted) gets a dashed box.
    ctx.setLineDash(f.alignment.method === "landmarks" ? [] : [8, 6]);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
    ctx.fillStyle = colour;
    for (const [x, y] of f.alignment.points ?? []) { ctx.beginPath(); ctx.arc(x, y, 2.5, 0, 2 * Math.PI); ctx.fill(); }
    const label = `${f.expected_age.toFixed(1)} ± ${f.sigma.toFixed(1)}${f.alignment.method === "landmarks" ? "" : " (eyes only)"}`;
    ctx.font = "bold 18px system-ui";
    const width = ctx.measureText(label).width + 10;
    ctx.fillStyle = colour; ctx.fillRect(x0, Math.max(y0 - 26, 0), width, 24);
    ctx.fillStyle = "#fff"; ctx.fillText(label, x0 + 5, Math.max(y0 - 26, 0) + 18);
  });
}

// The charts' canvases: one is made and drawn on at the start (`warmUpDrawing`), so that the
// first answer's chart finds its canvas allocated, its code compiled and the fonts resolved.
// On a CPU slowed 4× the first chart's task took 86–93 ms before (`cargo xtask bench-page`).
const spareCharts = [];
function chartCanvas() {
  // A spare one is kept as it is: setting a canvas's size, even to the same, resets it.
  if (spareCharts.length) return spareCharts.pop();
  const c = document.createElement("canvas");
  c.width = 800; c.height = 200; c.className = "face-chart";
  return c;
}
const FONTS = ["bold 18px system-ui", "13px system-ui", "12px system-ui"];
// Every glyph the labels draw (stream names included), so that the first real labels find
// them rasterised: the first chart's text took 28 ms of its task with the CPU slowed 4×.
const GLYPHS = "0123456789 .,:;±–-_() abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ";
// The view's first drawing on a new size allocates its pixels (26 ms of the first answer's
// task with the CPU slowed 4×): done when the size is set, in the task that sends the frame,
// and at the start for the default size. Drawn and wiped in one task, so never seen.
function primeView(view) {
  const ctx = view.getContext("2d");
  ctx.font = FONTS[0];
  ctx.fillText(GLYPHS, 0, 20);
  ctx.clearRect(0, 0, view.width, view.height);
}
// A chart of a made-up face drawn on the spare canvas, then wiped: the same code and fonts as
// a real one; and the view primed.
function warmUpDrawing() {
  primeView($("view"));
  const c = chartCanvas(), ctx = c.getContext("2d");
  for (const font of FONTS) { ctx.font = font; ctx.fillText(GLYPHS, 10, 20); }
  const flat = Array(101).fill(1 / 101);
  const face = { expected_age: 50, sigma: 10, distribution: flat, alignment: { method: "landmarks" }, streams: [{ name: "stream", expected_age: 50, distribution: flat }] };
  drawChart(c, { face, frames: 1 }, 0);
  ctx.clearRect(0, 0, c.width, c.height - CHART_PAD);
  spareCharts.push(c);
}

// A new face's canvas is drawn before it joins the page (a camera frame's joins blank, and is
// drawn later: `chartsLater`): drawn after, its first text made the browser compute the page's
// style and layout within the task (13–16 ms of forced layout in the first chart's task with
// the CPU slowed 4×); joined after, that work waits for the browser's next rendering.
function drawCharts(faces) {
  const holder = $("charts");
  while (holder.children.length > faces.length) holder.lastChild.remove();
  const drawn = holder.children.length;
  faces.slice(0, drawn).forEach((t, i) => drawChart(holder.children[i], t, i));
  const added = faces.slice(drawn).map((t, k) => {
    const canvas = chartCanvas();
    drawChart(canvas, t, drawn + k);
    return canvas;
  });
  if (added.length) holder.append(...added);
}

// Face `i`'s fused distribution (bars, its ±σ band and mean) and each stream's (lines). The
// ages along the bottom, the same on every chart, are drawn once a canvas, in the strip below
// the plot that nothing else draws on (the spare canvas gets them in `warmUpDrawing`).
const CHART_PAD = 28;
function drawChart(canvas, t, i) {
  const f = t.face, ctx = canvas.getContext("2d");
  const { width, height } = canvas, pad = CHART_PAD, w = (width - 2 * pad) / 101;
  ctx.clearRect(0, 0, width, height - pad);
  const peak = Math.max(...f.distribution, ...f.streams.flatMap((s) => s.distribution), 1e-9);
  const x = (age) => pad + (age + 0.5) * w, y = (p) => height - pad - (height - 2 * pad) * p / peak;
  ctx.fillStyle = "#dde8f5";
  const lo = Math.max(f.expected_age - f.sigma, 0), hi = Math.min(f.expected_age + f.sigma, 100);
  ctx.fillRect(x(lo), pad, x(hi) - x(lo), height - 2 * pad);
  // The bars as one path, filled once.
  ctx.fillStyle = "#5f82be"; ctx.beginPath();
  f.distribution.forEach((p, age) => ctx.rect(pad + age * w, y(p), Math.max(w - 1, 1), height - pad - y(p)));
  ctx.fill();
  f.streams.forEach((s, k) => {
    ctx.strokeStyle = PALETTE[(k + 1) % PALETTE.length]; ctx.lineWidth = 2; ctx.beginPath();
    s.distribution.forEach((p, age) => (age ? ctx.lineTo(x(age), y(p)) : ctx.moveTo(x(age), y(p))));
    ctx.stroke();
  });
  ctx.fillStyle = "#222"; ctx.fillRect(x(f.expected_age) - 1, pad, 2, height - 2 * pad);
  ctx.font = "13px system-ui";
  ctx.fillStyle = PALETTE[i % PALETTE.length];
  ctx.fillText(`face ${i + 1}: ${f.expected_age.toFixed(1)} ± ${f.sigma.toFixed(1)} years (fused, ${t.frames} frames)`, pad, 16);
  if (f.alignment.method !== "landmarks") {
    ctx.fillStyle = "#a33";
    ctx.fillText(`aligned on the eyes alone, less reliable: ${f.alignment.reason}`, pad, 34);
  }
  let lx = pad + 330;
  f.streams.forEach((s, k) => {
    ctx.fillStyle = PALETTE[(k + 1) % PALETTE.length]; ctx.fillRect(lx, 8, 14, 4);
    ctx.fillStyle = "#222"; ctx.fillText(`${s.name} ${s.expected_age.toFixed(1)}`, lx + 18, 16);
    lx += ctx.measureText(`${s.name} ${s.expected_age.toFixed(1)}`).width + 40;
  });
  if (!canvas.dataset.ages) {
    ctx.fillStyle = "#222";
    for (let age = 0; age <= 100; age += 10) ctx.fillText(String(age), x(age) - 6, height - 8);
    canvas.dataset.ages = "drawn";
  }
}

// A camera frame's charts are drawn in a task of their own, after the frame and its boxes:
// on one machine the task that drew the first answer (new canvases, the first text) took
// 52–56 ms, over the 50 ms that a task may last while the camera runs. Only the newest faces
// are drawn when several answers come before it runs. A new face's canvas joins the page blank
// and is drawn in a task after the browser's next rendering has laid it out: joined and drawn
// in one task, the chart's drawing and the page's new layout fell in one frame of 55–64 ms
// with the CPU slowed 4× (`cargo xtask bench-page`).
let pendingCharts = null, chartsQueued = false;
function chartsLater(faces) {
  pendingCharts = faces;
  if (!chartsQueued) { chartsQueued = true; setTimeout(drawPendingCharts, 0); }
}
function drawPendingCharts() {
  const faces = pendingCharts, holder = $("charts");
  if (faces && faces.length > holder.children.length) {
    holder.append(...faces.slice(holder.children.length).map(() => chartCanvas()));
    requestAnimationFrame(() => setTimeout(drawPendingCharts, 0));
    return;
  }
  pendingCharts = null; chartsQueued = false;
  if (faces) drawCharts(faces);
}

// ---- one frame through the pipeline ------------------------------------------------------
// A camera frame goes to the worker as a VideoFrame (a photo as an ImageBitmap); the worker
// converts and scales it, reads its pixels, and hands back an ImageBitmap of what it read. The
// view shows a frame only together with its boxes, once its estimate is back (on a slow
// backend the boxes would otherwise be missing most of the time), by drawing that bitmap, a
// copy with no conversion. So this thread neither converts a video frame nor reads pixels:
// with the CPU slowed 4×, grabbing a frame here (drawImage and getImageData, or
// createImageBitmap of the video) took 13–23 ms, and putting the answer's pixels back 8–18 ms,
// of tasks that must stay under 50 ms. A browser without OffscreenCanvas in workers sends the
// pixels, grabbed on a canvas of their own (`grab`), and one without VideoFrame an ImageBitmap
// of the video. `owner` is the camera run or photo the frame belongs to: an answer for one that
// has ended is not drawn.
const BITMAPS = typeof OffscreenCanvas === "function" && typeof createImageBitmap === "function";
const VIDEO_FRAMES = BITMAPS && typeof VideoFrame === "function";
const grab = document.createElement("canvas");
let owner = null;
// A frame takes up to a few seconds on a software WebGPU adapter; one minute means a hang.
const FRAME_LIMIT_MS = 60000;
async function frameMessage(source, w, h, track) {
  if (BITMAPS) {
    const image = VIDEO_FRAMES && source instanceof HTMLVideoElement ? new VideoFrame(source) : await createImageBitmap(source);
    return [{ type: "frame", image, width: w, height: h, track }, [image]];
  }
  if (grab.width !== w || grab.height !== h) { grab.width = w; grab.height = h; }
  const grabContext = grab.getContext("2d", { willReadFrequently: true });
  grabContext.drawImage(source, 0, 0, w, h);
  const pixels = grabContext.getImageData(0, 0, w, h);
  return [{ type: "frame", pixels: pixels.data.buffer, width: w, height: h, track }, [pixels.data.buffer]];
}
async function estimate(source, width, height, track, mine) {
  const scale = Math.min(1, 640 / Math.max(width, height));
  const w = Math.max(1, Math.round(width * scale)), h = Math.max(1, Math.round(height * scale));
  // The view takes the frame's size now, in this task, not in the one that draws the answer.
  const view = $("view");
  if (mine === owner && (view.width !== w || view.height !== h)) { view.width = w; view.height = h; primeView(view); }
  const [message, transfer] = await frameMessage(source, w, h, track);
  const started = performance.now();
  const answer = await call(message, transfer, FRAME_LIMIT_MS);
  if (owner !== mine) { answer.image?.close(); return null; }
  const faces = answer.faces, ms = performance.now() - started;
  if (answer.fellBack) {
    problem(`${answer.fellBack}.`);
    shown({ ...answer, reason: "WebGPU failed while running", timings: state.warmUpMs, warnings: [], streams: state.streams });
  }
  state.frames += 1;
  state.msPerFrame = state.msPerFrame === null ? ms : 0.8 * state.msPerFrame + 0.2 * ms;
  if (state.frameMs.length < 1000) { state.frameMs.push(ms); state.workerMs.push(answer.ms); state.faceCounts.push(faces.length); }
  state.networkFaces += faces.filter((t) => t.estimated).length;
  state.seenFaces += faces.length;
  state.faces = faces.map((t) => ({ track: t.track, frames: t.frames, expected_age: t.face.expected_age, sigma: t.face.sigma, bbox: t.face.bbox, alignment: t.face.alignment, streams: t.face.streams.map((s) => ({ name: s.name, expected_age: s.expected_age })) }));
  $("ms").textContent = state.msPerFrame.toFixed(0);
  if (faces.length && state.firstEstimateMs === null) state.firstEstimateMs = performance.now();
  const ctx = view.getContext("2d");
  if (view.width !== w || view.height !== h) { view.width = w; view.height = h; }
  if (answer.image) {
    // Cleared first: drawn over the last frame, a photo's transparent parts would show it.
    ctx.clearRect(0, 0, w, h);
    ctx.drawImage(answer.image, 0, 0, w, h);
    answer.image.close();
  } else ctx.putImageData(new ImageData(new Uint8ClampedArray(answer.pixels), w, h), 0, 0);
  drawFaces(ctx, faces);
  if (mine?.camera) chartsLater(faces); else { pendingCharts = null; drawCharts(faces); }
  if (faces.length === 0) {
    say("No face in view: face the camera, closer and well lit, or try another photo.");
  } else {
    say(`${faces.length} face${faces.length > 1 ? "s" : ""}: ` +
      faces.map((t) => `${t.face.expected_age.toFixed(1)} ± ${t.face.sigma.toFixed(1)} years`).join(", "), "ok");
  }
  return faces;
}

// One frame, with a crashed worker started again once; throws what cannot be recovered.
async function estimateOrRestart(source, width, height, track, mine) {
  try {
    return await estimate(source, width, height, track, mine);
  } catch (e) {
    if (!e.crashed || owner !== mine) throw e;
    await restart(e.message);
    return owner === mine ? estimate(source, width, height, track, mine) : null;
  }
}

// ---- the camera ----------------------------------------------------------------------------
// One camera run at a time: `owner` is its token, and a frame is estimated only when the
// video has a new one (requestVideoFrameCallback; where a browser lacks it, a changed
// currentTime). While the worker is busy the newest frame waits, replacing an older one:
// frames never queue up.
let stream = null, starting = false;
function askForCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    return Promise.reject(Object.assign(new Error("no camera access"), { name: "NoMediaDevices" }));
  }
  return navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
}
// `asked`: a camera already asked for (at the start, with ?start=camera).
async function startCamera(asked = null) {
  if (starting || (owner && owner.camera)) {
    asked?.then((opened) => opened.getTracks().forEach((t) => t.stop()), () => {});
    return;
  }
  starting = true;
  try { await openCamera(asked ?? askForCamera()); } finally { starting = false; }
}
// Plays `opened` in the video element; false (and said) when it cannot play.
async function play(opened) {
  stopCamera();
  stream = opened;
  const video = $("video");
  video.srcObject = stream;
  try { await video.play(); } catch (e) {
    problem(`The camera's video could not play (${e.message ?? e}). Press “Start the camera” again, or choose a photo.`);
    stopCamera();
    return false;
  }
  mark("video");
  return true;
}
// A camera asked for at the start plays while the estimator loads, so that its first frame
// is there when the estimator is: `preview` is that playing, null without one.
let preview = null;
async function openCamera(asked) {
  const early = preview;
  preview = null;
  // (What the early start said, if it failed, stays said.)
  if (!early) clearProblem();
  let opened;
  try {
    opened = await asked;
  } catch (e) {
    if (e.name === "NoMediaDevices") problem("This browser offers no camera access here (it needs a secure page: https or 127.0.0.1). Choose a photo instead.");
    else if (e.name === "NotAllowedError") problem("The camera was not allowed. Allow it in the address bar's site settings and press “Start the camera” again, or choose a photo.");
    else if (e.name === "NotFoundError" || e.name === "OverconstrainedError") problem("No camera was found. Plug one in, or choose a photo.");
    else problem(`The camera could not start (${e.name}: ${e.message}). Close other programs using it, or choose a photo.`);
    return;
  }
  const playing = early && stream === opened ? await early : await play(opened);
  if (!playing) return;
  if (!opened.active) {
    // It ended while the estimator loaded.
    stopCamera();
    problem("The camera stopped (it was unplugged, or another program took it). Press “Start the camera” again, or choose a photo.");
    return;
  }
  const video = $("video");
  const run = { camera: true, fresh: false, busy: false, last: performance.now() };
  owner = run;
  state.cameraRuns += 1;
  state.cameraStartedMs = performance.now();
  mark("camera");
  for (const track of stream.getVideoTracks()) {
    track.addEventListener("ended", () => {
      if (owner !== run) return;
      stopCamera();
      problem("The camera stopped (it was unplugged, or another program took it). Press “Start the camera” again, or choose a photo.");
    });
  }
  call({ type: "reset" }).catch(() => {});
  $("stop").disabled = false;
  $("camera").disabled = true;
  const frameCallback = "requestVideoFrameCallback" in HTMLVideoElement.prototype;
  let lastTime = -1;
  // A new frame: it replaces one still waiting, and is estimated when the worker is free.
  const arrived = () => {
    lastTime = video.currentTime;
    state.videoFrames += 1;
    if (run.fresh) state.replaced += 1;
    run.fresh = true;
    pump(run);
  };
  const next = () => frameCallback ? video.requestVideoFrameCallback(onFrame) : requestAnimationFrame(onFrame);
  const onFrame = () => {
    if (owner !== run) return;
    if (frameCallback || video.currentTime !== lastTime) arrived();
    next();
  };
  next();
  // The frame already shown (a camera that played during the start) is estimated at once
  // rather than after the next one arrives.
  if (video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA) arrived();
}

// Estimates the newest frame when the worker is free, then the next one to arrive.
async function pump(run) {
  if (run.busy || !run.fresh || owner !== run || document.hidden) return;
  const video = $("video");
  // A video without its current frame yet cannot be grabbed (a VideoFrame of it throws): the
  // next frame to arrive calls this again.
  if (!video.videoWidth || video.readyState < HTMLMediaElement.HAVE_CURRENT_DATA) return;
  run.fresh = false; run.busy = true;
  try {
    await estimateOrRestart(video, video.videoWidth, video.videoHeight, true, run);
    const now = performance.now();
    if (owner === run) $("fps").textContent = (1000 / (now - run.last)).toFixed(1);
    run.last = now;
  } catch (e) {
    if (owner === run) {
      problem(`Estimation failed: ${e.message ?? e}`);
      stopCamera();
    }
  } finally {
    run.busy = false;
  }
  pump(run);
}

function stopCamera() {
  if (owner?.camera) owner = null;
  stream?.getTracks().forEach((t) => t.stop());
  stream = null;
  $("video").srcObject = null;
  $("stop").disabled = true;
  $("camera").disabled = !started;
}

// A hidden tab gets no video frames; shown again, the faces are tracked afresh.
document.addEventListener("visibilitychange", () => {
  if (document.hidden || !owner?.camera) return;
  call({ type: "reset" }).catch(() => {});
  owner.fresh = true;
  pump(owner);
});

// ---- a photo ---------------------------------------------------------------------------------
// Read as an image element first (its size, before decoding it whole), then decoded at the
// size the pipeline uses: a huge photo never becomes a huge bitmap.
const MAX_PHOTO_BYTES = 200 * 1024 * 1024;
function imageSize(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file), img = new Image();
    img.onload = () => { URL.revokeObjectURL(url); resolve([img.naturalWidth, img.naturalHeight]); };
    img.onerror = () => { URL.revokeObjectURL(url); reject(new Error("it is not an image this browser can read")); };
    img.src = url;
  });
}
async function photo(file) {
  clearProblem();
  stopCamera();
  const mine = { photo: true };
  owner = mine;
  const name = file.name || "the file";
  const settle = () => { if (owner === mine) { $("fps").textContent = "–"; state.settled = true; state.photos += 1; } };
  const refuse = (text) => { problem(text); say(`No estimate for ${name}: see below.`, "error"); settle(); };
  if (file.type && !file.type.startsWith("image/")) {
    return refuse(`${name} is not an image (${file.type}). Choose a JPEG or PNG.`);
  }
  if (file.size > MAX_PHOTO_BYTES) {
    return refuse(`${name} is ${(file.size / 1048576).toFixed(0)} MB, over the ${MAX_PHOTO_BYTES / 1048576} MB a photo may have here. Choose a smaller one.`);
  }
  let width, height, bitmap;
  try {
    [width, height] = await imageSize(file);
    if (Math.min(width, height) < 32) {
      return refuse(`${name} is ${width}×${height} px, too small to hold a face (a face needs about 32 px or more). Choose a larger photo.`);
    }
    const scale = Math.min(1, 640 / Math.max(width, height));
    bitmap = await createImageBitmap(file, { resizeWidth: Math.max(1, Math.round(width * scale)), resizeHeight: Math.max(1, Math.round(height * scale)), resizeQuality: "high" });
  } catch (e) {
    return refuse(`${name} could not be read as an image (${e.message ?? e}). Choose a JPEG or PNG.`);
  }
  if (owner !== mine) return;
  try {
    const faces = await estimateOrRestart(bitmap, bitmap.width, bitmap.height, false, mine);
    if (faces && (width !== bitmap.width || height !== bitmap.height)) {
      state.photoScaledFrom = [width, height];
      problem(`${name} is ${width}×${height} px: it was estimated at ${bitmap.width}×${bitmap.height}, as the camera's frames are.`, "note");
    }
  } catch (e) { if (owner === mine) problem(`Estimation failed: ${e.message ?? e}`); }
  bitmap.close();
  settle();
}

// For the tests and the benchmark, read through WebDriver: the state, the worker (to fail
// it), the landmark step timed on the last frame in the worker, and the compute of a frame
// alone (the camera stopped first).
window.ageDemo = {
  state,
  get worker() { return worker; },
  async timeWarmUp(runs) {
    stopCamera();
    return (await call({ type: "time-warm-up", runs })).ms;
  },
  async timeLandmarks(runs) {
    // The worker kept the last frame it read from a bitmap.
    if (BITMAPS) return (await call({ type: "time-landmarks", runs })).ms;
    const px = grab.getContext("2d").getImageData(0, 0, grab.width, grab.height);
    return (await call({ type: "time-landmarks", pixels: px.data.buffer, width: grab.width, height: grab.height, runs }, [px.data.buffer])).ms;
  },
};

// Long tasks on this thread (over 50 ms), for the tests: while the camera runs there should
// be none, since the estimator works in the worker.
try {
  new PerformanceObserver((list) => {
    for (const task of list.getEntries()) {
      // `camera`: the task began after the running camera's loop started (the entries
      // arrive later than their tasks, so a task of the start could be delivered once the
      // loop runs).
      const camera = Boolean(owner?.camera) && task.startTime >= state.cameraStartedMs;
      if (state.longTasks.length < 1000) state.longTasks.push({ startMs: task.startTime, ms: task.duration, camera });
    }
  }).observe({ type: "longtask", buffered: true });
} catch { /* a browser without long-task timing */ }
// The same frames as the browser attributes them (long animation frames, over 50 ms): which
// scripts ran in them (the function and the file) and how long style, layout and painting
// took, for the benchmark to say what a long task was.
try {
  const file = (url) => (url ? url.split(/[?#]/)[0].split("/").pop() || url : "");
  new PerformanceObserver((list) => {
    for (const f of list.getEntries()) {
      if (state.longFrames.length >= 200) break;
      state.longFrames.push({
        startMs: f.startTime, ms: f.duration, blockingMs: f.blockingDuration,
        // From the start of rendering (animation frames, style, layout, paint) to the end.
        renderMs: f.renderStart ? f.startTime + f.duration - f.renderStart : 0,
        layoutMs: f.styleAndLayoutStart ? f.startTime + f.duration - f.styleAndLayoutStart : 0,
        scripts: (f.scripts ?? []).map((x) => ({
          ms: x.duration, invoker: x.invoker, fn: x.sourceFunctionName || "", file: file(x.sourceURL),
          forcedLayoutMs: x.forcedStyleAndLayoutDuration ?? 0,
        })),
      });
    }
  }).observe({ type: "long-animation-frame", buffered: true });
} catch { /* a browser without long-animation-frame timing */ }

// The start: the weights download and the worker starts (its module compiled) at once; this
// thread loads no WebAssembly. With ?start=camera the camera opens meanwhile too.
async function begin() {
  if (choice !== "cpu" && !navigator.gpu) {
    problem("This browser has no WebGPU: the page runs on the CPU backend, more slowly. Chrome or Edge 113+ (or Firefox/Safari with WebGPU on) run it on the GPU.", "note");
  }
  const camera = params.get("start") === "camera" ? askForCamera() : null;
  camera?.catch(() => {});
  preview = camera?.then(play, () => false) ?? null;
  try {
    await load();
  } catch (e) {
    preview = null;
    stopCamera();
    camera?.then((opened) => opened.getTracks().forEach((t) => t.stop()), () => {});
    say(`Cannot start: ${e.message ?? e}`, "error");
    state.errors.push(String(e.message ?? e));
    state.settled = true;
    return;
  }
  started = true;
  say("Ready: start the camera, or choose or drop a photo.", "ok");
  for (const id of ["camera", "photo", "backend-choice"]) $(id).disabled = false;
  $("camera").addEventListener("click", () => startCamera());
  $("stop").addEventListener("click", stopCamera);
  $("photo").addEventListener("change", (e) => { const file = e.target.files[0]; e.target.value = ""; if (file) photo(file); });
  $("backend-choice").addEventListener("change", async (e) => {
    choice = e.target.value;
    e.target.disabled = true;
    try { await load(); } catch (err) { problem(`The backend could not change: ${err.message ?? err}`); }
    finally { e.target.disabled = false; }
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) photo(file);
  });
  if (camera) startCamera(camera);
}
begin();

for (const id of ["mu", "sigma"]) $(id).addEventListener("input", updateLabel);
updateLabel();
setTimeout(() => {
  if (!("worker" in state.timeline) && !state.settled) {
    say("The WebAssembly module did not load. Use a current browser, and serve this page with `cargo xtask demo` rather than opening the file directly.", "error");
  }
}, 20000);
