// promptseg annotate: the single page. Plain JavaScript, no build step, no network beyond this server.
// Coordinates sent to the server are in the original image's pixels; the canvas holds the image at
// its own size and CSS scales it to fit.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40],
];
const CURRENT_COLOR = [30, 144, 255];
const PROPOSAL_COLOR = [255, 200, 0];
const UNCOVERED_COLOR = [255, 0, 200];
const DRAG_PIXELS = 5;

const state = {
  images: [], categories: [], imageId: null, image: null, width: 0, height: 0,
  annotations: [], maskCache: new Map(), uncovered: null, selectedObject: null,
  current: emptyPrompt(), undo: [], redo: [], requestSeq: 0,
  proposals: new Map(), showOverlay: true, showUncovered: false, pointer: null, lastLabel: "",
};
window.annotator = state; // for tests and the curious

function emptyPrompt() {
  return { points: [], labels: [], box: null, result: null, selected: 0 };
}

// ------------------------------------------------------------------ API
async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const payload = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(payload.error || `HTTP ${response.status}`);
  return payload;
}

function say(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "error" : "muted";
}

// ------------------------------------------------------------------ COCO RLE
// Decode pycocotools' compressed counts string into run lengths, then into a row-major 0/1 mask.
function rleCounts(text) {
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let value = 0, k = 0, more = true, code = 0;
    while (more) {
      code = text.charCodeAt(p) - 48;
      value += (code & 0x1f) * 2 ** (5 * k);
      more = (code & 0x20) !== 0;
      p += 1; k += 1;
      if (!more && (code & 0x10)) value -= 2 ** (5 * k);
    }
    if (counts.length > 2) value += counts[counts.length - 2];
    counts.push(value);
  }
  return counts;
}

function decodeRle(rle) {
  const [height, width] = rle.size;
  const mask = new Uint8Array(height * width);
  const counts = typeof rle.counts === "string" ? rleCounts(rle.counts) : rle.counts;
  let position = 0;
  counts.forEach((run, index) => {
    if (index % 2 === 1) {
      for (let i = position; i < position + run; i++) {
        const column = Math.floor(i / height), row = i - column * height;  // COCO runs go down columns
        mask[row * width + column] = 1;
      }
    }
    position += run;
  });
  return mask;
}

function maskCanvas(mask, width, height, color, alpha) {
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  const a = Math.round(alpha * 255);
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    pixels.data[4 * i] = color[0]; pixels.data[4 * i + 1] = color[1];
    pixels.data[4 * i + 2] = color[2]; pixels.data[4 * i + 3] = a;
  }
  context.putImageData(pixels, 0, 0);
  return canvas;
}

function cachedMask(key, rle, color, alpha) {
  if (!state.maskCache.has(key)) {
    const mask = decodeRle(rle);
    state.maskCache.set(key, { mask, canvas: maskCanvas(mask, rle.size[1], rle.size[0], color, alpha) });
  }
  return state.maskCache.get(key);
}

// ------------------------------------------------------------------ images
async function loadImages() {
  const payload = await api("GET", "/api/images");
  state.images = payload.images;
  state.categories = payload.categories;
  renderImageList();
  renderCategories();
}

function renderImageList() {
  const list = $("image-list");
  list.innerHTML = "";
  for (const image of state.images) {
    const item = document.createElement("li");
    item.dataset.id = image.id;
    item.className = image.id === state.imageId ? "current" : "";
    item.title = `${image.file_name} (${image.width} x ${image.height})`;
    const name = document.createElement("span");
    name.textContent = image.file_name;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = image.annotations;
    item.append(name, count);
    item.addEventListener("click", () => openImage(image.id));
    list.append(item);
  }
}

function renderCategories() {
  const list = $("category-list");
  list.innerHTML = "";
  for (const name of state.categories) {
    const option = document.createElement("option");
    option.value = name;
    list.append(option);
  }
}

async function openImage(id) {
  const info = state.images.find((image) => image.id === id);
  if (!info) return;
  state.imageId = id;
  state.width = info.width; state.height = info.height;
  state.current = emptyPrompt(); state.undo = []; state.redo = [];
  state.maskCache = new Map(); state.selectedObject = null;
  history.replaceState(null, "", `#image=${id}`);
  $("image-name").textContent = `${info.file_name} (${info.width} x ${info.height})`;
  renderImageList();
  const image = new Image();
  image.src = `/api/images/${id}`;
  await image.decode();
  if (state.imageId !== id) return;
  state.image = image;
  const canvas = $("canvas");
  canvas.width = info.width; canvas.height = info.height;
  layout();
  await loadAnnotations();
  renderCandidates();
  renderProposals();
  document.body.dataset.imageId = id;
}

function step(offset) {
  const index = state.images.findIndex((image) => image.id === state.imageId);
  const next = state.images[index + offset];
  if (next) openImage(next.id);
}

function layout() {
  const stage = $("stage"), canvas = $("canvas");
  if (!state.width) return;
  const scale = Math.min((stage.clientWidth - 20) / state.width, (stage.clientHeight - 20) / state.height);
  canvas.style.width = `${Math.max(1, Math.floor(state.width * scale))}px`;
  canvas.style.height = `${Math.max(1, Math.floor(state.height * scale))}px`;
  draw();
}

// ------------------------------------------------------------------ accepted objects
async function loadAnnotations() {
  const id = state.imageId;
  const payload = await api("GET", `/api/images/${id}/annotations`);
  if (state.imageId !== id) return;
  state.annotations = payload.annotations;
  const info = state.images.find((image) => image.id === id);
  if (info) info.annotations = state.annotations.length;
  computeUncovered();
  renderObjects();
  renderImageList();
  draw();
  document.body.dataset.annotations = state.annotations.length;
}

function annotationMask(annotation) {
  const color = COLORS[annotation.id % COLORS.length];
  return cachedMask(`a${annotation.id}`, annotation.segmentation, color, 0.45);
}

function computeUncovered() {
  const size = state.width * state.height;
  const covered = new Uint8Array(size);
  for (const annotation of state.annotations) {
    const { mask } = annotationMask(annotation);
    for (let i = 0; i < size; i++) covered[i] |= mask[i];
  }
  let free = 0;
  for (let i = 0; i < size; i++) { covered[i] = 1 - covered[i]; free += covered[i]; }
  state.uncovered = maskCanvas(covered, state.width, state.height, UNCOVERED_COLOR, 0.35);
  $("uncovered-figure").textContent = size ? `(${Math.round((100 * free) / size)}% uncovered)` : "";
}

function renderObjects() {
  const list = $("object-list");
  list.innerHTML = "";
  for (const annotation of state.annotations) {
    const item = document.createElement("li");
    item.dataset.id = annotation.id;
    if (annotation.id === state.selectedObject) item.className = "selected";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${COLORS[annotation.id % COLORS.length].join(",")})`;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${annotation.category} #${annotation.id}`;
    name.title = "click to select; double click to relabel";
    name.addEventListener("click", () => { state.selectedObject = annotation.id; renderObjects(); draw(); });
    name.addEventListener("dblclick", () => relabel(annotation, item, name));
    const edit = document.createElement("button");
    edit.textContent = "✎"; edit.title = "relabel";
    edit.addEventListener("click", () => relabel(annotation, item, name));
    const remove = document.createElement("button");
    remove.textContent = "✕"; remove.title = "delete (Delete key when selected)";
    remove.addEventListener("click", () => deleteObject(annotation.id));
    item.append(swatch, name, edit, remove);
    list.append(item);
  }
}

function relabel(annotation, item, name) {
  const input = document.createElement("input");
  input.value = annotation.category;
  input.setAttribute("list", "category-list");
  input.className = "relabel";
  name.replaceWith(input);
  input.focus(); input.select();
  const finish = async (save) => {
    input.onblur = null;
    if (save && input.value.trim() && input.value.trim() !== annotation.category) {
      try {
        await api("PATCH", `/api/annotations/${annotation.id}`, { category: input.value.trim() });
        await loadImages();
      } catch (error) { say(error.message, true); }
    }
    await loadAnnotations();
  };
  input.onkeydown = (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
    event.stopPropagation();
  };
  input.onblur = () => finish(true);
}

async function deleteObject(id) {
  try {
    await api("DELETE", `/api/annotations/${id}`);
    if (state.selectedObject === id) state.selectedObject = null;
    say(`deleted object #${id}`);
  } catch (error) { say(error.message, true); }
  await loadAnnotations();
}

// ------------------------------------------------------------------ prompting
function changePrompt(change) {
  state.undo.push(state.current);
  state.redo = [];
  const previous = state.current;
  state.current = { ...previous, points: previous.points.slice(), labels: previous.labels.slice(), result: null, selected: 0, previous };
  change(state.current);
  predict(state.current);
}

async function predict(prompt) {
  const seq = ++state.requestSeq;
  const basis = lastResult(prompt.previous);
  const body = {
    points: prompt.points, labels: prompt.labels, box: prompt.box,
    mask_input: basis ? basis.result.mask_inputs[basis.selected] : null,
    multimask: $("multimask").checked,
  };
  const started = performance.now();
  let result;
  try {
    try {
      result = await api("POST", `/api/images/${state.imageId}/predict`, body);
    } catch (error) {
      if (!body.mask_input || !/mask_input/.test(error.message)) throw error;
      result = await api("POST", `/api/images/${state.imageId}/predict`, { ...body, mask_input: null });
    }
  } catch (error) { say(error.message, true); return; }
  const roundTrip = performance.now() - started;
  prompt.result = result;
  prompt.selected = result.scores.indexOf(Math.max(...result.scores));
  if (seq !== state.requestSeq || prompt !== state.current) return;
  $("timing").textContent = `decode: ${result.decode_ms.toFixed(1)} ms (round trip ${roundTrip.toFixed(0)} ms)`;
  say("Enter accepts the mask; 1-3 pick another candidate.");
  renderCandidates();
  draw();
  document.body.dataset.maskDrawn = String(seq);
}

function lastResult(prompt) {
  for (let p = prompt; p; p = p.previous) if (p.result) return p;
  return null;
}

function undo() {
  if (!state.undo.length) return;
  state.redo.push(state.current);
  state.current = state.undo.pop();
  renderCandidates(); draw();
}

function redo() {
  if (!state.redo.length) return;
  state.undo.push(state.current);
  state.current = state.redo.pop();
  renderCandidates(); draw();
}

function clearPrompt() {
  if (!state.current.points.length && !state.current.box) return;
  state.undo.push(state.current); state.redo = [];
  state.current = emptyPrompt();
  renderCandidates(); draw();
}

function selectCandidate(index) {
  const result = state.current.result;
  if (!result || index >= result.masks.length) return;
  state.current.selected = index;
  renderCandidates(); draw();
}

function renderCandidates() {
  const box = $("candidates");
  box.innerHTML = "";
  const result = state.current.result;
  if (!result) return;
  result.masks.forEach((rle, index) => {
    const item = document.createElement("div");
    item.className = "candidate" + (index === state.current.selected ? " selected" : "");
    const { canvas } = cachedMask(`c${state.requestSeq}-${index}-${rle.counts.length}-${rle.counts.slice(0, 24)}`, rle, [255, 255, 255], 1);
    const thumb = document.createElement("canvas");
    thumb.width = canvas.width; thumb.height = canvas.height;
    thumb.getContext("2d").drawImage(canvas, 0, 0);
    const caption = document.createElement("div");
    caption.textContent = `${index + 1}: ${result.scores[index].toFixed(3)}`;
    item.append(thumb, caption);
    item.addEventListener("click", () => selectCandidate(index));
    box.append(item);
  });
}

async function accept() {
  const result = state.current.result;
  if (!result) { say("click on an object first", true); return; }
  const label = $("label").value.trim() || state.lastLabel || "object";
  try {
    const stored = await api("POST", `/api/images/${state.imageId}/annotations`,
      { rle: result.masks[state.current.selected], category: label });
    state.lastLabel = label;
    say(`accepted object #${stored.id} as "${label}"`);
  } catch (error) { say(error.message, true); return; }
  state.current = emptyPrompt(); state.undo = []; state.redo = [];
  $("label").blur();
  renderCandidates();
  await loadImages();
  await loadAnnotations();
}

// ------------------------------------------------------------------ pre-fill
async function prefill(ids) {
  const bar = $("prefill-progress"), status = $("prefill-status");
  bar.hidden = false; bar.max = ids.length; bar.value = 0;
  for (const [done, id] of ids.entries()) {
    status.textContent = `pre-filling ${done + 1} / ${ids.length}...`;
    try {
      const payload = await api("POST", `/api/images/${id}/prefill`, {});
      state.proposals.set(id, payload.proposals.map((p, i) => ({ ...p, key: `p${id}-${i}-${Date.now()}` })));
      status.textContent = `${payload.proposals.length} proposal(s) in ${(payload.elapsed_ms / 1000).toFixed(1)} s`;
    } catch (error) { say(error.message, true); }
    bar.value = done + 1;
    if (id === state.imageId) { state.showUncovered = true; $("show-uncovered").checked = true; renderProposals(); draw(); }
  }
  bar.hidden = true;
  if (ids.length > 1) status.textContent = `pre-filled ${ids.length} image(s)`;
}

function currentProposals() { return state.proposals.get(state.imageId) || []; }

function renderProposals() {
  const proposals = currentProposals();
  $("proposal-count").textContent = proposals.length ? `(${proposals.length})` : "";
  $("proposal-info").textContent = proposals.length
    ? `highlighted: score ${proposals[0].score.toFixed(3)}, ${proposals[0].area} px`
    : "none (run pre-fill)";
}

async function decideProposal(keep) {
  const proposals = currentProposals();
  if (!proposals.length) return;
  const proposal = proposals.shift();
  if (keep) {
    const label = $("label").value.trim() || state.lastLabel || "object";
    try {
      await api("POST", `/api/images/${state.imageId}/annotations`, { rle: proposal.rle, category: label });
      await loadImages();
      await loadAnnotations();
    } catch (error) { say(error.message, true); proposals.unshift(proposal); }
  }
  renderProposals(); draw();
}

// ------------------------------------------------------------------ drawing
function draw() {
  const canvas = $("canvas"), context = canvas.getContext("2d");
  if (!state.image) return;
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  if (state.showUncovered && state.uncovered) context.drawImage(state.uncovered, 0, 0);
  if (state.showOverlay) {
    for (const annotation of state.annotations) {
      context.drawImage(annotationMask(annotation).canvas, 0, 0);
      if (annotation.id === state.selectedObject) {
        const [x, y, w, h] = annotation.bbox;
        context.strokeStyle = "#fff"; context.lineWidth = 2; context.strokeRect(x, y, w, h);
      }
    }
  }
  const proposal = currentProposals()[0];
  if (proposal) context.drawImage(cachedMask(proposal.key, proposal.rle, PROPOSAL_COLOR, 0.5).canvas, 0, 0);
  const prompt = state.current;
  if (prompt.result) {
    const rle = prompt.result.masks[prompt.selected];
    context.drawImage(cachedMask(`m${rle.counts.length}-${rle.counts}`, rle, CURRENT_COLOR, 0.55).canvas, 0, 0);
  }
  const radius = Math.max(3, Math.round(Math.max(state.width, state.height) / 120));
  prompt.points.forEach(([x, y], index) => {
    context.beginPath(); context.arc(x, y, radius, 0, 2 * Math.PI);
    context.fillStyle = prompt.labels[index] ? "#2ecc40" : "#ff4136"; context.fill();
    context.lineWidth = Math.max(1, radius / 3); context.strokeStyle = "#fff"; context.stroke();
  });
  const box = state.pointer && state.pointer.dragging ? state.pointer.box : prompt.box;
  if (box) {
    context.setLineDash(state.pointer && state.pointer.dragging ? [6, 4] : []);
    context.strokeStyle = "#2ecc40"; context.lineWidth = Math.max(1, radius / 2);
    context.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    context.setLineDash([]);
  }
}

// ------------------------------------------------------------------ pointer and keys
function imagePoint(event) {
  const rect = $("canvas").getBoundingClientRect();
  const x = ((event.clientX - rect.left) * state.width) / rect.width;
  const y = ((event.clientY - rect.top) * state.height) / rect.height;
  return [Math.min(state.width, Math.max(0, x)), Math.min(state.height, Math.max(0, y))];
}

function setUpPointer() {
  const canvas = $("canvas");
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("mousedown", (event) => {
    if (!state.image) return;
    event.preventDefault();
    state.pointer = { start: imagePoint(event), x: event.clientX, y: event.clientY, dragging: false,
      background: event.button === 2 || event.shiftKey };
  });
  window.addEventListener("mousemove", (event) => {
    const pointer = state.pointer;
    if (!pointer || pointer.background) return;
    if (!pointer.dragging && Math.hypot(event.clientX - pointer.x, event.clientY - pointer.y) < DRAG_PIXELS) return;
    pointer.dragging = true;
    const [x0, y0] = pointer.start, [x1, y1] = imagePoint(event);
    pointer.box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
    draw();
  });
  window.addEventListener("mouseup", () => {
    const pointer = state.pointer;
    if (!pointer) return;
    state.pointer = null;
    if (pointer.dragging) {
      changePrompt((prompt) => { prompt.box = pointer.box; });
    } else {
      changePrompt((prompt) => { prompt.points.push(pointer.start); prompt.labels.push(pointer.background ? 0 : 1); });
    }
    draw();
  });
}

function toggleHelp(show) {
  $("help").hidden = show === undefined ? !$("help").hidden : !show;
}

function setUpKeys() {
  document.addEventListener("keydown", (event) => {
    const typing = event.target.tagName === "INPUT" && event.target.type !== "checkbox";
    if (typing) {
      if (event.key === "Enter" && event.target.id === "label") { event.preventDefault(); accept(); }
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (!$("help").hidden && (event.key === "Escape" || event.key === "?")) { toggleHelp(false); return; }
    const key = event.key, control = event.ctrlKey || event.metaKey;
    if (control && (key === "z" || key === "Z")) { event.preventDefault(); event.shiftKey ? redo() : undo(); return; }
    if (control && key === "y") { event.preventDefault(); redo(); return; }
    if (control || event.altKey) return;
    const actions = {
      "Enter": accept, "z": undo, "Z": redo, "Escape": clearPrompt,
      "n": () => step(1), "ArrowRight": () => step(1), "p": () => step(-1), "ArrowLeft": () => step(-1),
      "o": () => { $("show-overlay").click(); }, "u": () => { $("show-uncovered").click(); },
      "1": () => selectCandidate(0), "2": () => selectCandidate(1), "3": () => selectCandidate(2),
      "a": () => decideProposal(true), "r": () => decideProposal(false), "f": () => prefill([state.imageId]),
      "l": () => $("label").focus(), "?": () => toggleHelp(),
      "Delete": () => state.selectedObject !== null && deleteObject(state.selectedObject),
    };
    if (actions[key]) { event.preventDefault(); actions[key](); }
  });
}

function setUpControls() {
  $("accept").addEventListener("click", accept);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clear").addEventListener("click", clearPrompt);
  $("help-button").addEventListener("click", () => toggleHelp());
  $("help").addEventListener("click", (event) => { if (event.target.id === "help") toggleHelp(false); });
  $("show-overlay").addEventListener("change", (event) => { state.showOverlay = event.target.checked; draw(); });
  $("show-uncovered").addEventListener("change", (event) => { state.showUncovered = event.target.checked; draw(); });
  $("prefill-one").addEventListener("click", () => prefill([state.imageId]));
  $("prefill-all").addEventListener("click", () => prefill(state.images.map((image) => image.id)));
  $("proposal-accept").addEventListener("click", () => decideProposal(true));
  $("proposal-reject").addEventListener("click", () => decideProposal(false));
  window.addEventListener("resize", layout);
  window.addEventListener("hashchange", () => {
    const wanted = Number((location.hash.match(/image=(\d+)/) || [])[1]);
    if (wanted && wanted !== state.imageId) openImage(wanted);
  });
}

async function main() {
  setUpPointer(); setUpKeys(); setUpControls();
  try {
    await loadImages();
  } catch (error) { say(error.message, true); return; }
  if (!state.images.length) { say("no images", true); return; }
  const wanted = Number((location.hash.match(/image=(\d+)/) || [])[1]);
  await openImage(state.images.some((image) => image.id === wanted) ? wanted : state.images[0].id);
  document.body.dataset.ready = "1";
}

main();
