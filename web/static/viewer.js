// Aperture slide viewer: OpenSeadragon on the Deep Zoom API, a scale bar from microns
// per pixel, the slide's properties, and a canvas overlay for predictions.
// Plain JS, no build step. The page is served at {api}/viewer/{slide_id} (one slide)
// or {api}/viewer (the list); `?slide=ID&api=/api/v1` overrides both. The cookie
// session (session.js) signs in on {api}/viewer/login and is renewed while the page is
// open, so tiles keep loading however long a slide is read.
(function () {
  "use strict";

  const OSD_IMAGES = "/static/vendor/openseadragon/images/";
  const session = window.apertureSession;
  const params = new URLSearchParams(window.location.search);
  const match = window.location.pathname.match(/^(.*)\/viewer(?:\/([^/]+))?\/?$/);
  const api = session.api;
  const slideId = params.get("slide") || (match && match[2] ? decodeURIComponent(match[2]) : null);
  const $ = (id) => document.getElementById(id);

  function status(text) { $("status").textContent = text || ""; }

  async function getJSON(url) {
    const response = await session.request(url);
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
      } catch (e) { /* not JSON */ }
      throw new Error(`${url}: ${response.status} ${detail}`);
    }
    return response.json();
  }

  function text(value) { return value === null || value === undefined ? "—" : String(value); }

  function cell(row, value) {
    const td = document.createElement("td");
    if (value instanceof Node) td.appendChild(value); else td.textContent = text(value);
    row.appendChild(td);
  }

  // ---- slide list ---------------------------------------------------------------

  async function showList() {
    $("list").hidden = false;
    status("loading slides…");
    const body = await getJSON(`${api}/slides`);
    const items = Array.isArray(body) ? body : body.items || [];
    for (const slide of items) {
      const row = document.createElement("tr");
      const link = document.createElement("a");
      link.href = `${api}/viewer/${encodeURIComponent(slide.id)}`;
      link.textContent = slide.name || slide.id;
      cell(row, link);
      cell(row, slide.vendor);
      cell(row, slide.width && slide.height ? `${slide.width} × ${slide.height}` : null);
      cell(row, slide.level_count);
      cell(row, slide.mpp_x ? Number(slide.mpp_x).toFixed(3) : null);
      $("slides").appendChild(row);
    }
    status(items.length ? "" : "no slides yet");
  }

  // ---- properties ------------------------------------------------------------------

  function showProperties(slide) {
    const summary = $("summary");
    const rows = [
      ["Name", slide.name], ["Vendor", slide.vendor],
      ["Size", slide.width && slide.height ? `${slide.width} × ${slide.height} px` : null],
      ["Levels", slide.level_count], ["Tile", slide.tile_width ? `${slide.tile_width} × ${slide.tile_height}` : null],
      ["µm/px", slide.mpp_x ? `${Number(slide.mpp_x).toFixed(4)} × ${Number(slide.mpp_y || slide.mpp_x).toFixed(4)}` : null],
      ["Objective", slide.objective_power ? `${slide.objective_power}×` : null],
    ];
    for (const [name, value] of rows) {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = text(value);
      summary.append(dt, dd);
    }
    const props = slide.properties || {};
    for (const key of Object.keys(props).sort()) {
      const row = document.createElement("tr");
      cell(row, key);
      cell(row, props[key]);
      $("props").appendChild(row);
    }
  }

  // ---- scale bar -------------------------------------------------------------------

  const NICE = [1, 2, 5];

  function niceLength(microns) {
    const power = Math.pow(10, Math.floor(Math.log10(microns)));
    let best = power;
    for (const n of NICE) if (n * power <= microns) best = n * power;
    return best;
  }

  function formatLength(microns) {
    if (microns >= 1000) return `${microns / 1000} mm`;
    if (microns >= 1) return `${microns} µm`;
    return `${microns * 1000} nm`;
  }

  function updateScaleBar(viewer, mpp) {
    const bar = $("scalebar");
    if (!mpp) { bar.hidden = true; return; }
    // screen pixels per image (level-0) pixel at the current zoom
    const zoom = viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
    const micronsPerScreenPixel = mpp / zoom;
    const length = niceLength(micronsPerScreenPixel * 150);
    $("scalebar-bar").style.width = `${Math.round(length / micronsPerScreenPixel)}px`;
    $("scalebar-label").textContent = formatLength(length);
  }

  // ---- custom overlay ----------------------------------------------------------------
  // A page's own shapes (predictions.js draws inference tasks' on a layer of its own),
  // in level-0 pixel coordinates, each one of:
  //   {polygon: [[x, y], ...]}, {bbox: [x, y, w, h]}, {x, y, radius}
  // with an optional label and colour. `window.aperture.setPredictions(list)` sets them.

  let predictions = [];

  function drawOverlay(viewer) {
    const canvas = $("overlay");
    const container = viewer.container;
    const ratio = window.devicePixelRatio || 1;
    const width = container.clientWidth;
    const height = container.clientHeight;
    if (canvas.width !== width * ratio || canvas.height !== height * ratio) {
      canvas.width = width * ratio;
      canvas.height = height * ratio;
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    if (!$("show-overlay").checked || !predictions.length) return;
    const toScreen = (x, y) => {
      const point = viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
      return [point.x, point.y];
    };
    ctx.lineWidth = 2;
    for (const p of predictions) {
      ctx.strokeStyle = p.color || "rgba(0, 200, 255, 0.9)";
      ctx.beginPath();
      if (Array.isArray(p.polygon) && p.polygon.length) {
        p.polygon.forEach(([x, y], i) => {
          const [sx, sy] = toScreen(x, y);
          if (i === 0) ctx.moveTo(sx, sy); else ctx.lineTo(sx, sy);
        });
        ctx.closePath();
      } else if (Array.isArray(p.bbox)) {
        const [x, y, w, h] = p.bbox;
        const [x0, y0] = toScreen(x, y);
        const [x1, y1] = toScreen(x + w, y + h);
        ctx.rect(x0, y0, x1 - x0, y1 - y0);
      } else if (p.x !== undefined && p.radius !== undefined) {
        const [cx, cy] = toScreen(p.x, p.y);
        const [ex] = toScreen(p.x + p.radius, p.y);
        ctx.arc(cx, cy, Math.max(1, ex - cx), 0, 2 * Math.PI);
      }
      ctx.stroke();
    }
  }

  // ---- viewer ----------------------------------------------------------------------

  async function showSlide() {
    $("viewer-pane").hidden = false;
    status("loading…");
    const [descriptor, slide] = await Promise.all([
      getJSON(`${api}/viewer/${encodeURIComponent(slideId)}.dzi`),
      getJSON(`${api}/slides/${encodeURIComponent(slideId)}`),
    ]);
    document.title = `${slide.name || slideId} — Aperture`;
    $("title").textContent = slide.name || slideId;
    showProperties(slide);
    if (!descriptor.Image.Url) {
      descriptor.Image.Url = `${api}/viewer/${encodeURIComponent(slideId)}_files/`;
    }
    const viewer = OpenSeadragon({
      element: $("viewer"),
      prefixUrl: OSD_IMAGES,
      tileSources: descriptor,
      showNavigator: true,
      maxZoomPixelRatio: 2,
      crossOriginPolicy: false,
      loadTilesWithAjax: true,
      ajaxWithCredentials: true,
      timeout: 60000,
    });
    const mpp = Number(slide.mpp_x) || null;
    const redraw = () => { updateScaleBar(viewer, mpp); drawOverlay(viewer); };
    viewer.addHandler("open", () => { status(""); redraw(); });
    viewer.addHandler("animation", redraw);
    viewer.addHandler("resize", redraw);
    viewer.addHandler("open-failed", (event) => status(`cannot open slide: ${event.message}`));
    viewer.addHandler("tile-load-failed", async (event) => {
      const request = event.tileRequest;
      if (request && request.status === 401) { // the session lapsed (asleep, offline)
        if (await session.renew(true)) {
          event.tile.exists = true; // OpenSeadragon gave it up; ask for it again
          viewer.forceRedraw();
        } else {
          session.toSignIn();
        }
        return;
      }
      status(`tile failed: ${event.message}`);
    });
    $("show-overlay").addEventListener("change", () => drawOverlay(viewer));
    window.aperture = {
      viewer,
      setPredictions(list) { predictions = list || []; drawOverlay(viewer); },
    };
    // predictions.js draws the slide's inference predictions per viewport from here on
    document.dispatchEvent(new CustomEvent("aperture:slide", { detail: { viewer, slide, api, slideId } }));
  }

  // ---- account ---------------------------------------------------------------------

  async function showAccount() {
    const me = await getJSON(`${api}/auth/me`);
    $("who").textContent = me.email || me.display_name || "";
    $("account").hidden = false;
    $("sign-out").addEventListener("click", () => session.signOut());
  }

  async function main() {
    if (!(await session.start())) {
      session.toSignIn();
      return;
    }
    await showAccount();
    await (slideId ? showSlide() : showList());
  }

  main().catch((error) => status(error.message));
})();
