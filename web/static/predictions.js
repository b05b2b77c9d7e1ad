// Aperture viewer: a slide's inference predictions over OpenSeadragon.
//
// viewer.js announces the open slide with the `aperture:slide` event; this file then
// finds the slide's latest succeeded task and, while the "predictions" box is ticked,
// asks {api}/viewer/predictions/{slide} for the objects in the viewport (`bbox`) as the
// user pans and zooms: debounced, and a new viewport aborts the request still running
// for the old one. Few objects are drawn as outlines coloured by class; objects too
// small on screen as points; a viewport with more than `limit` objects as a density
// heat map (.../density), so a million nuclei never reach the page. A slider sets the
// least confidence; the panel counts what is shown and the task's objects per class.
(function () {
  "use strict";

  const DEBOUNCE_MS = 150;
  const MARGIN = 0.25; // fetch a quarter of the view beyond each edge: short pans redraw
  const POINT_BELOW_PX = 5; // objects smaller on screen than this are points
  const HEAT_CELL_PX = 12; // a heat-map cell on screen
  const HEAT_RGB = "214, 63, 47";

  const state = {
    mode: "off", // off | outlines | points | density | none
    limit: 3000, // most objects outlined per viewport
    minConfidence: 0,
    task: null,
    features: [], // [{ring: Float64Array, cx, cy, size, color, confidence}]
    density: null,
    inView: 0, // objects on screen, as last drawn
    drawn: 0,
    requests: 0,
    aborted: 0,
    error: null,
  };
  let view = null; // {viewer, api, slide, slideId}
  let canvas = null;
  let controller = null;
  let timer = null;
  const colors = new Map(); // class name -> css colour

  const $ = (id) => document.getElementById(id);

  function send(url, options) {
    const session = window.apertureSession; // the viewer's session, where it has one
    if (session && session.request) return session.request(url, options);
    return fetch(url, { credentials: "same-origin", ...options });
  }

  async function getJSON(url, options) {
    const response = await send(url, { ...options, headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    return response.json();
  }

  function shown() { return $("show-overlay") && $("show-overlay").checked; }

  function say(text) { $("predictions-count").textContent = text; }

  // ---- the panel and the canvas ------------------------------------------------------

  function buildPanel() {
    const panel = document.createElement("div");
    panel.id = "predictions-panel";
    panel.innerHTML =
      '<label class="predictions-confidence">least confidence ' +
      '<input type="range" id="predictions-confidence" min="0" max="1" step="0.05" value="0">' +
      ' <output id="predictions-confidence-value">0.00</output></label>' +
      '<p id="predictions-count">looking for predictions…</p>' +
      '<ul id="predictions-classes"></ul>';
    const box = $("show-overlay");
    (box.closest("label") || box).after(panel);
    $("predictions-confidence").addEventListener("input", (event) => {
      state.minConfidence = Number(event.target.value);
      $("predictions-confidence-value").textContent = state.minConfidence.toFixed(2);
      schedule();
    });
    box.addEventListener("change", () => (shown() ? schedule() : clear()));
  }

  function buildCanvas(viewer) {
    canvas = document.createElement("canvas");
    canvas.id = "predictions-layer";
    canvas.setAttribute("aria-label", "inference predictions");
    viewer.canvas.appendChild(canvas); // under OpenSeadragon's controls and navigator
  }

  function legend(summary) {
    const list = $("predictions-classes");
    list.textContent = "";
    const counts = (summary && summary.counts) || {};
    for (const name of Object.keys(counts)) {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.dataset.class = name;
      swatch.style.background = colors.get(name) || "#888";
      item.append(swatch, `${name}: ${counts[name].toLocaleString()}`);
      list.appendChild(item);
    }
  }

  function paintSwatches() {
    for (const swatch of document.querySelectorAll("#predictions-classes .swatch")) {
      if (colors.has(swatch.dataset.class)) swatch.style.background = colors.get(swatch.dataset.class);
    }
  }

  // ---- what to ask for ---------------------------------------------------------------

  function imageView() {
    const viewer = view.viewer;
    const rect = viewer.viewport.viewportToImageRectangle(viewer.viewport.getBounds(true));
    const width = view.slide.width, height = view.slide.height;
    const mx = rect.width * MARGIN, my = rect.height * MARGIN;
    const x0 = Math.max(0, rect.x - mx), y0 = Math.max(0, rect.y - my);
    const x1 = Math.min(width, rect.x + rect.width + mx), y1 = Math.min(height, rect.y + rect.height + my);
    return x1 > x0 && y1 > y0 ? [x0, y0, x1, y1].map((v) => Math.round(v * 100) / 100) : null;
  }

  function query(bbox, extra) {
    const params = new URLSearchParams({ task_id: state.task.task_id, bbox: bbox.join(",") });
    if (state.minConfidence > 0) params.set("min_confidence", String(state.minConfidence));
    for (const [key, value] of Object.entries(extra)) params.set(key, String(value));
    return params;
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, DEBOUNCE_MS);
  }

  async function refresh() {
    if (!view || !state.task || !shown()) return;
    const bbox = imageView();
    if (controller) { controller.abort(); state.aborted += 1; }
    controller = new AbortController();
    const signal = controller.signal;
    if (!bbox) { state.features = []; state.density = null; draw(); return; }
    const base = `${view.api}/viewer/predictions/${encodeURIComponent(view.slideId)}`;
    state.requests += 1;
    try {
      const body = await getJSON(`${base}?${query(bbox, { limit: state.limit + 1 })}`, { signal });
      if (body.features.length <= state.limit) {
        state.features = body.features.map(shape);
        state.density = null;
      } else { // too many to outline: a heat map of the same viewport
        const screen = Math.max(canvas.clientWidth, canvas.clientHeight);
        const grid = Math.min(512, Math.max(8, Math.ceil(screen / HEAT_CELL_PX)));
        state.density = await getJSON(`${base}/density?${query(bbox, { grid })}`, { signal });
        state.features = [];
      }
      state.error = null;
      paintSwatches();
      draw();
    } catch (error) {
      if (error.name === "AbortError") return; // a newer viewport replaced it
      state.error = error.message;
      say(`predictions: ${error.message}`);
    }
  }

  function shape(feature) {
    const ring = feature.geometry.coordinates[0];
    const flat = new Float64Array(ring.length * 2);
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    ring.forEach(([x, y], i) => {
      flat[2 * i] = x; flat[2 * i + 1] = y;
      x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
    });
    const props = feature.properties;
    const name = props.classification && props.classification.name;
    const rgb = props.classification && props.classification.color;
    const color = Array.isArray(rgb) ? `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})` : "rgb(0, 200, 255)";
    if (name && !colors.has(name)) colors.set(name, color);
    return { ring: flat, cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, size: Math.max(x1 - x0, y1 - y0), color, confidence: props.confidence };
  }

  // ---- drawing -----------------------------------------------------------------------

  function clear() {
    if (controller) controller.abort();
    state.mode = "off";
    state.drawn = 0;
    if (canvas) canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  }

  function fitCanvas() {
    const ratio = window.devicePixelRatio || 1;
    const width = view.viewer.container.clientWidth, height = view.viewer.container.clientHeight;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    return context;
  }

  // Level-0 pixels -> canvas pixels: one scale and offset per frame (no rotation).
  function transform() {
    const viewport = view.viewer.viewport;
    const origin = viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
    const scale = viewport.viewportToImageZoom(viewport.getZoom(true));
    return { ox: origin.x, oy: origin.y, scale };
  }

  function draw() {
    if (!view || !canvas) return;
    const context = fitCanvas();
    if (!shown() || !state.task) { state.drawn = 0; return; }
    const t = transform();
    state.drawn = 0;
    state.inView = 0; // counted while drawing: objects (or cells' objects) on screen
    if (state.density) {
      state.mode = "density";
      drawDensity(context, t);
    } else {
      const visible = state.features.filter((f) => f.confidence >= state.minConfidence);
      const small = visible.length && median(visible.map((f) => f.size)) * t.scale < POINT_BELOW_PX;
      state.mode = visible.length ? (small ? "points" : "outlines") : "none";
      if (small) drawPoints(context, t, visible); else drawOutlines(context, t, visible);
    }
    const total = state.task.objects || 0;
    say(`${state.inView.toLocaleString()} in view (${state.mode}) · ${total.toLocaleString()} in the task`);
  }

  function median(values) {
    const sorted = values.slice().sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }

  // Whether a level-0 box (as canvas pixels) meets the visible canvas.
  function onScreen(x0, y0, x1, y1) {
    return x1 >= 0 && y1 >= 0 && x0 <= canvas.clientWidth && y0 <= canvas.clientHeight;
  }

  function drawOutlines(context, t, features) {
    context.lineWidth = 1.5;
    for (const f of features) {
      context.strokeStyle = f.color;
      context.beginPath();
      for (let i = 0; i < f.ring.length; i += 2) {
        const x = t.ox + f.ring[i] * t.scale, y = t.oy + f.ring[i + 1] * t.scale;
        if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
      }
      context.closePath();
      context.stroke();
      state.drawn += 1;
      const x = t.ox + f.cx * t.scale, y = t.oy + f.cy * t.scale, r = (f.size * t.scale) / 2;
      if (onScreen(x - r, y - r, x + r, y + r)) state.inView += 1;
    }
  }

  function drawPoints(context, t, features) {
    for (const f of features) {
      const x = t.ox + f.cx * t.scale, y = t.oy + f.cy * t.scale;
      context.fillStyle = f.color;
      context.fillRect(x - 1.5, y - 1.5, 3, 3);
      state.drawn += 1;
      if (onScreen(x, y, x, y)) state.inView += 1;
    }
  }

  function drawDensity(context, t) {
    const d = state.density;
    if (!d.max) return;
    const side = d.cell * t.scale;
    for (let r = 0; r < d.rows; r += 1) {
      for (let c = 0; c < d.cols; c += 1) {
        const count = d.counts[r * d.cols + c];
        if (!count) continue;
        const x = t.ox + (d.bbox[0] + c * d.cell) * t.scale, y = t.oy + (d.bbox[1] + r * d.cell) * t.scale;
        context.fillStyle = `rgba(${HEAT_RGB}, ${(0.15 + 0.6 * count / d.max).toFixed(3)})`;
        context.fillRect(x, y, side, side);
        state.drawn += 1;
        if (onScreen(x, y, x + side, y + side)) state.inView += count;
      }
    }
  }

  // ---- start -------------------------------------------------------------------------

  async function start(detail) {
    if (view || !detail || !detail.viewer || !$("show-overlay")) return;
    view = detail;
    buildPanel();
    buildCanvas(view.viewer);
    view.viewer.addHandler("animation", draw);
    view.viewer.addHandler("resize", () => { draw(); schedule(); });
    view.viewer.addHandler("viewport-change", schedule);
    view.viewer.addHandler("open", schedule);
    try {
      const params = new URLSearchParams({ slide_id: view.slideId, status: "succeeded", limit: "1" });
      const page = await getJSON(`${view.api}/inference/tasks?${params}`);
      state.task = page.items[0] || null;
    } catch (error) {
      say(`predictions: ${error.message}`);
      return;
    }
    if (!state.task) {
      $("show-overlay").disabled = true;
      say("no predictions for this slide yet");
      return;
    }
    say(`${(state.task.objects || 0).toLocaleString()} objects (${state.task.model.name})`);
    legend(state.task.summary);
    schedule();
  }

  window.aperturePredictions = {
    state,
    refresh,
    setOutlineLimit(limit) { state.limit = limit; refresh(); },
  };
  document.addEventListener("aperture:slide", (event) => start(event.detail));
})();
