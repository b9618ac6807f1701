// The demo page's estimator thread: the WebAssembly module, the weights, the tracker and the
// choice of backend live here, so the page's own thread only grabs frames and draws.
//
// The page starts this file as a module worker from a blob of its text, so the worker inherits
// the page's Content-Security-Policy (a worker loaded from a URL would carry only its own
// response's headers). It asks for nothing but the page's own WebAssembly module.
//
// Messages from the page (each answered once, with the same `id`):
//   {type: "init", glue, wasm, threads}        load the wasm-bindgen module; threads, when
//                                              given, is {glue, wasm, count, why}: the threaded
//                                              build of the CPU backend, used when this
//                                              worker is cross-origin isolated
//   {type: "load", files, choice, every}       build the estimator; choice: auto | webgpu | cpu;
//                                              every: the settled-track rule's period; answers
//                                              {publishedWanted: true} when the published
//                                              network must run and files.age is absent
//   {type: "switch", choice}                   the same weights on another backend
//   {type: "frame", image, width, height, track}
//                                              estimate one frame, a VideoFrame or
//                                              ImageBitmap (transferred here), scaled to
//                                              width × height; answered with `image`, an
//                                              ImageBitmap of the pixels estimated (or with
//                                              `pixels`, an RGBA buffer transferred here and
//                                              back, for `pixels`)
//   {type: "reset"}                            forget the tracked faces
//   {type: "label", mu, sigma}                 the label distribution N(μ, σ), its mean and std
//   {type: "time-landmarks", pixels, width, height, runs}
//                                              (without pixels: the last frame read from an
//                                              image)
//   {type: "time-warm-up", runs}               the median ms of `runs` warm-up frames
// Answers: {id, ok: true, ...} or {id, ok: false, message, crashed}. `crashed` means the module
// itself failed (a panic, out of memory): the page then starts a new worker.

// The modules: `standard` (WebGPU and the CPU backend on one thread, loaded as soon as it is
// needed) and `cpu`, the one the CPU backend runs from: the threaded build when the page is
// cross-origin isolated, else the standard one.
let standard = null;
let standardUrls = null;
let cpuGlue = null;
// How the CPU backend runs: {count} threads, and why when it is one.
const cpuThreads = { count: 1, why: null };
let files = null;
// The settled-track rule: the settled faces get the age network on one frame in `every`, in turn.
let every = 1;
// One estimator per backend built so far ("WebGPU", "CPU"); `active` names the one that runs.
const estimators = new Map();
let active = null;
// Milliseconds each estimator took to build, for the page's start-up timeline.
const buildMs = {};
const buildSteps = {};

const crashed = (e) => e instanceof WebAssembly.RuntimeError || /out of memory|unreachable/i.test(String(e?.message ?? e));
const text = (e) => String(e?.message ?? e).replace(/\s*\n\s*/g, " ").trim();

// What WebGPU adapter the browser offers: null without one; `software` when it is a software
// rasteriser or the browser's fallback adapter (SwiftShader, llvmpipe, WARP), which runs this
// network far slower than the CPU backend.
async function adapter() {
  if (!self.navigator?.gpu) return null;
  let found;
  try { found = await navigator.gpu.requestAdapter(); } catch { return null; }
  if (!found) return null;
  const info = found.info ?? {};
  const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") || "unnamed adapter";
  const software = Boolean(info.isFallbackAdapter ?? found.isFallbackAdapter) ||
    /swiftshader|llvmpipe|lavapipe|softpipe|software|warp|basic render/i.test(name);
  return { name, software };
}

// How long each part of starting took, for the page's start-up timeline.
const initSteps = [];
function timedStep(name, started) {
  initSteps.push(`${name} ${Math.round(performance.now() - started)} ms`);
}

// Loads a wasm-bindgen module: its glue, and the compiled WebAssembly.
async function loadModule({ glue, wasm }) {
  let started = performance.now();
  const module = await import(glue);
  timedStep("glue", started);
  started = performance.now();
  await module.default({ module_or_path: wasm });
  timedStep("module fetched and compiled", started);
  return module;
}

// The standard module, loaded once (at start when the CPU backend has no threaded build).
function standardGlue() {
  standard ??= loadModule(standardUrls).catch((e) => { standard = null; throw e; });
  return standard;
}

// The CPU backend's module: the threaded build with its pool of `count` workers when this
// worker is cross-origin isolated (shared memory), else the standard module on one thread.
async function loadCpu(threads) {
  if (!threads || threads.count < 1) {
    cpuThreads.why = threads ? "the standard module, asked for with ?threads=0" : "this build has no threaded CPU backend";
    return standardGlue();
  }
  if (!self.crossOriginIsolated) {
    cpuThreads.why = "the page is not cross-origin isolated, so the browser gives it no shared memory for threads (serve it with the COOP and COEP headers the README names)";
    return standardGlue();
  }
  try {
    const module = await loadModule(threads);
    const started = performance.now();
    await module.initThreadPool(threads.count);
    timedStep(`thread pool of ${threads.count}`, started);
    cpuThreads.count = threads.count;
    cpuThreads.why = threads.count === 1 ? threads.why : null;
    return module;
  } catch (e) {
    cpuThreads.why = `its threads did not start (${text(e)})`;
    return standardGlue();
  }
}

async function build(backend) {
  if (estimators.has(backend)) return estimators.get(backend);
  const { detector, landmarks, age, streams, digests, pretrainedWeight } = files;
  const glue = backend === "CPU" ? cpuGlue : await standardGlue();
  const started = performance.now();
  const built = await glue.AgeEstimator.create(detector, landmarks, age, streams, backend === "WebGPU", digests, pretrainedWeight ?? undefined);
  built.setEvery(every);
  buildMs[backend] = Math.round(performance.now() - started);
  buildSteps[backend] = built.steps;
  if (backend === "WebGPU" && built.backend !== "WebGPU") {
    const why = built.backend.replace(/^CPU \(WebGPU is unavailable: |\)$/g, "");
    built.free();
    throw new Error(`WebGPU did not start (${text(why)})`);
  }
  estimators.set(backend, built);
  return built;
}

// Forgets the estimator of `backend` and frees its memory (it may be gone with its device).
function drop(backend) {
  const estimator = estimators.get(backend);
  estimators.delete(backend);
  try { estimator?.free(); } catch { /* already gone */ }
}

// Milliseconds of one warm-up frame (the detector and every stream on blank input), the second
// of two runs: the first also compiles shaders and fills caches.
async function warmUp(estimator) {
  await estimator.warmUp();
  return estimator.warmUp();
}

function describe(estimator, reason, timings, gpu) {
  return {
    backend: active,
    reason,
    timings,
    adapter: gpu,
    threads: cpuThreads.count,
    threadsWhy: cpuThreads.why,
    warnings: estimator.warnings,
    streams: estimator.streams,
    built: Array.from(estimators.keys()),
    buildMs,
    buildSteps,
  };
}

// Builds the estimators that `choice` calls for and keeps the faster one; `reason` says in
// plain words why it runs where it does.
async function choose(choice) {
  // The adapter is asked for while the CPU backend builds: the answer takes a while.
  const asked = choice === "cpu" ? Promise.resolve(null) : adapter();
  const timings = {};
  const keep = async (backend, reason, gpu) => {
    active = backend;
    return describe(await build(backend), reason, timings, gpu);
  };
  if (choice === "webgpu") {
    const gpu = await asked;
    if (!gpu) return keep("CPU", `WebGPU was chosen, but ${self.navigator?.gpu ? "it found no GPU adapter here" : "this browser has no WebGPU"}; the CPU backend runs instead`, gpu);
    try {
      return await keep("WebGPU", `chosen by hand (${gpu.name}${gpu.software ? ", a software adapter" : ""})`, gpu);
    } catch (e) {
      return keep("CPU", `${text(e)}; the CPU backend runs instead`, gpu);
    }
  }
  const cpu = await build("CPU");
  const gpu = await asked;
  if (choice === "cpu") return keep("CPU", "chosen by hand", gpu);
  if (!gpu) return keep("CPU", self.navigator?.gpu ? "WebGPU found no GPU adapter here" : "this browser has no WebGPU", gpu);
  if (gpu.software) {
    return keep("CPU", `the only WebGPU adapter here is a software one (${gpu.name}), far slower than the CPU; choose WebGPU by hand to try it`, gpu);
  }
  // A hardware adapter: a warm-up frame on each, and the faster one stays.
  timings.CPU = await warmUp(cpu);
  try {
    timings.WebGPU = await warmUp(await build("WebGPU"));
  } catch (e) {
    // A WebGPU estimator that built but failed its warm-up is not kept for a later switch.
    drop("WebGPU");
    return keep("CPU", `${text(e)}; the CPU backend runs`, gpu);
  }
  const [fast, slow] = timings.WebGPU < timings.CPU ? ["WebGPU", "CPU"] : ["CPU", "WebGPU"];
  // Only the one that runs keeps its memory; the other is built again if asked for.
  drop(slow);
  return keep(fast, `faster here: ${timings[fast].toFixed(0)} ms a warm-up frame against ${timings[slow].toFixed(0)} ms on ${slow === "CPU" ? "the CPU" : "WebGPU"} (${gpu.name})`, gpu);
}

async function handle(message) {
  switch (message.type) {
    case "init": {
      standardUrls = { glue: message.glue, wasm: message.wasm };
      cpuGlue = await loadCpu(message.threads);
      return { threads: cpuThreads.count, threadsWhy: cpuThreads.why, steps: initSteps };
    }
    case "load": {
      files = message.files;
      every = message.every;
      for (const estimator of estimators.values()) estimator.setEvery(every);
      try {
        return await choose(message.choice);
      } catch (e) {
        // No exported stream loaded and the page has not sent the published network: it
        // sends it and asks again.
        if (files.age === undefined && text(e) === cpuGlue.publishedNetworkWanted()) return { publishedWanted: true };
        throw e;
      }
    }
    case "switch":
      return choose(message.choice);
    case "label": {
      const distribution = cpuGlue.labelDistribution(message.mu, message.sigma);
      return { distribution, mean: cpuGlue.expectedAge(distribution), std: cpuGlue.stdDev(distribution) };
    }
    case "reset":
      for (const estimator of estimators.values()) estimator.reset();
      return {};
    case "frame": {
      const { pixels, image, width, height, track } = message;
      const bytes = image ? readImage(image, width, height) : new Uint8Array(pixels);
      const started = performance.now();
      let faces, fellBack = null;
      try {
        faces = await estimators.get(active).estimate(bytes, width, height, track);
      } catch (e) {
        if (active !== "WebGPU" || crashed(e)) throw e;
        // WebGPU failed at run time: the CPU backend takes over with the weights already here.
        fellBack = `WebGPU failed (${text(e)}); switched to the CPU backend`;
        drop("WebGPU");
        await build("CPU");
        active = "CPU";
        faces = await estimators.get(active).estimate(bytes, width, height, track);
      }
      const ms = performance.now() - started;
      // What was read, as a bitmap (the canvas's own, no copy: the canvas starts blank again).
      const shown = image ? reader.canvas.transferToImageBitmap() : null;
      const frame = image ? { image: shown, transfer: [shown] } : { pixels, transfer: [pixels] };
      return { faces, ms, fellBack, backend: active, ...frame };
    }
    case "time-warm-up": {
      // The median of `runs` warm-up frames (the compute of one face's frame, nothing else).
      const times = [];
      for (let i = 0; i < message.runs; i++) times.push(await estimators.get(active).warmUp());
      times.sort((a, b) => a - b);
      return { ms: times[Math.floor(times.length / 2)] };
    }
    case "time-landmarks": {
      const { runs } = message;
      const { bytes, width, height } = message.pixels ? { ...message, bytes: new Uint8Array(message.pixels) } : lastFrame ?? {};
      if (!bytes) throw new Error("no frame has been estimated yet");
      const ms = await estimators.get(active).timeLandmarks(bytes, width, height, runs);
      return { ms: ms ?? null };
    }
    default:
      throw new Error(`unknown message ${message.type}`);
  }
}

// A frame's pixels: its image (closed here) drawn at width × height on a canvas kept for it,
// and read back; the last one is kept for "time-landmarks".
let reader = null, lastFrame = null;
function readImage(image, width, height) {
  try {
    if (reader?.canvas.width !== width || reader?.canvas.height !== height) {
      reader = new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
    }
    reader.clearRect(0, 0, width, height);
    reader.drawImage(image, 0, 0, width, height);
  } finally { image.close(); }
  const bytes = new Uint8Array(reader.getImageData(0, 0, width, height).data.buffer);
  lastFrame = { bytes, width, height };
  return bytes;
}

// One message at a time, in order: a frame never overlaps a switch of backend or another frame.
let queue = Promise.resolve();
self.onmessage = ({ data }) => {
  queue = queue.then(async () => {
    try {
      const { transfer = [], ...answer } = await handle(data);
      self.postMessage({ id: data.id, ok: true, ...answer }, transfer);
    } catch (e) {
      self.postMessage({ id: data.id, ok: false, message: text(e), crashed: crashed(e) });
    }
  });
};
