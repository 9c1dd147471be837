// promptseg annotate: the single page. Plain JavaScript modules, no build step, no network beyond this
// server. Coordinates sent to the server are in the original image's pixels. The canvas fills the
// stage; a View maps image pixels to it (zoom, pan). Each mask is decoded once from its RLE into a
// Shape (column runs and a Path2D outline); accepted objects are drawn into an offscreen layer only
// when the view or the objects change, so a frame after a click blits the image and that layer and
// draws just the live mask and the clicks.
"use strict";

import { Shape, encodeBits, stampStroke, uncoveredShare } from "./shape.js";
import { View } from "./view.js";
import { LIVE_COLOR, PROPOSAL_COLOR, UNCOVERED_COLOR, classColor, drawMask, drawPoint, rgba } from "./overlay.js";

const $ = (id) => document.getElementById(id);
const DRAG_PIXELS = 5;
const UNLABELLED = "unlabelled";
const OPEN_STATES = ["new", "in_progress"];
const THUMB_WIDTH = 160;
const SETTLE_MS = 140;  // after the last zoom/pan step the object layer is redrawn at full quality
const VERTEX_TOLERANCE = 1.0;

const state = {
  images: [], categories: [], labels: null, progress: null, filter: "all",
  imageId: null, info: null, bitmap: null, thumb: null, width: 0, height: 0,
  annotations: [], shapes: new Map(), proposals: [], imageState: "new", version: 0,
  selected: new Set(), current: emptyPrompt(), hist: new Map(), uncoveredOn: new Map(), showUncovered: false,
  tool: "click", brushRadius: 12, stroke: null, vertex: null, hover: null,
  view: new View(), viewChangedAt: 0, layer: null, frame: null, dpr: 1,
  showOverlay: true, outlinesOnly: false, opacity: 0.35,
  pointer: null, spaceDown: false, requestSeq: 0, queue: Promise.resolve(), measureRaster: false,
  uncoveredShare: null,
};
window.annotator = state;  // for tests and the curious

function emptyPrompt() {
  return { points: [], labels: [], box: null, result: null, selected: 0, previous: null, seedToken: null, editing: null, shapes: [] };
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
  if (!response.ok) throw Object.assign(new Error(payload.error || `HTTP ${response.status}`), { status: response.status });
  return payload;
}

function say(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.title = text;
  message.className = isError ? "error" : "muted";
}

// Changes run one after another (a fast "z z z" must not interleave its requests).
function serial(action) {
  state.queue = state.queue.then(action).catch((error) => say(error.message, true));
  return state.queue;
}

// ------------------------------------------------------------------ classes
function classNames() {
  return (state.labels || state.categories).filter((name) => name !== UNLABELLED);
}

function classIndex(name) {
  return !name || name === UNLABELLED ? -1 : classNames().indexOf(name);
}

function colorOf(name) { return classColor(classIndex(name)); }

function labelText() { return $("label").value.trim() || null; }

function setLabel(name) { $("label").value = name || ""; renderClasses(); requestDraw(); }

function renderClasses() {
  const list = $("class-list");
  list.innerHTML = "";
  const picked = labelText();
  classNames().forEach((name, index) => {
    const item = document.createElement("li");
    item.className = name === picked ? "picked" : "";
    item.dataset.name = name;
    const key = document.createElement("span");
    key.className = "key";
    key.textContent = index < 9 ? String(index + 1) : "";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = rgba(classColor(index), 1);
    const text = document.createElement("span");
    text.textContent = name;
    item.append(key, swatch, text);
    item.addEventListener("click", () => pickClass(name));
    list.append(item);
  });
  $("class-mode").textContent = state.labels ? "(fixed list)" : "(free text)";
  const datalist = $("category-list");
  datalist.innerHTML = "";
  for (const name of classNames()) {
    const option = document.createElement("option");
    option.value = name;
    datalist.append(option);
  }
}

// A class key or click: relabels the object being refined or the selected objects, else labels the next accept.
function pickClass(name) {
  const targets = state.current.editing !== null ? [state.current.editing] : [...state.selected];
  if (targets.length && !(state.current.result && state.current.editing === null)) {
    serial(() => relabel(targets, name));
    return;
  }
  setLabel(name);
  say(`class "${name}" for the next accepted mask`);
}

// ------------------------------------------------------------------ images and progress
async function loadImages() {
  const payload = await api("GET", "/api/images");
  state.images = payload.images;
  state.unavailable = payload.unavailable || [];
  state.categories = payload.categories;
  state.labels = payload.labels;
  state.progress = payload.progress;
  renderImageList();
  renderClasses();
  renderProgress();
}

function imageInfo(id) { return state.images.find((image) => image.id === id); }

function renderProgress() {
  const progress = state.progress;
  if (!progress) return;
  $("progress-text").textContent = `${progress.done} of ${progress.total} done` + (progress.skipped ? `, ${progress.skipped} skipped` : "");
  $("progress-bar").max = Math.max(1, progress.total);
  $("progress-bar").value = progress.done;
  $("mark-done").classList.toggle("active", state.imageState === "done");
  $("mark-skipped").classList.toggle("active", state.imageState === "skipped");
}

function renderImageList() {
  const list = $("image-list");
  list.innerHTML = "";
  for (const image of state.images) {
    if (state.filter !== "all" && image.state !== state.filter && image.id !== state.imageId) continue;
    const item = document.createElement("li");
    item.dataset.id = image.id;
    item.dataset.state = image.state;
    item.className = (image.id === state.imageId ? "current" : "") + (image.unavailable ? " unavailable" : "");
    item.title = `${image.file_name} (${image.width} x ${image.height}), ${image.state.replace("_", " ")}`
      + (image.unavailable ? `; cannot be read: ${image.unavailable}` : "");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = image.file_name;
    const badge = document.createElement("span");
    badge.className = `badge state-${image.state}`;
    badge.textContent = image.state === "done" ? "✓ " + image.annotations : image.state === "skipped" ? "skip" : image.annotations;
    item.append(name, badge);
    item.addEventListener("click", () => openImage(image.id));
    list.append(item);
  }
  // Files the server could not read at start-up: listed with the reason, not openable.
  for (const file of state.unavailable || []) {
    const item = document.createElement("li");
    item.className = "unavailable-file";
    item.title = `${file.file_name} cannot be read: ${file.reason}`;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = file.file_name;
    const reason = document.createElement("span");
    reason.className = "reason";
    reason.textContent = file.reason;
    item.append(name, reason);
    list.append(item);
  }
}

async function openImage(id) {
  const info = imageInfo(id);
  if (!info) return;
  state.imageId = id; state.info = info;
  state.width = info.width; state.height = info.height;
  state.current = emptyPrompt(); state.selected = new Set(); state.stroke = null; state.vertex = null;
  state.shapes = new Map(); state.annotations = []; state.proposals = []; state.bitmap = null; state.layer = null;
  state.showUncovered = state.uncoveredOn.get(id) || false;
  $("show-uncovered").checked = state.showUncovered;
  setTool("click");
  setLabel(null);
  history.replaceState(null, "", `#image=${id}`);
  $("image-name").textContent = `${info.file_name} (${info.width} x ${info.height})`;
  renderImageList(); renderCandidates();
  const image = new Image();
  image.src = `/api/images/${id}`;
  try {
    await image.decode();
  } catch (error) {
    // The server refused the file (truncated, replaced, gone): show its reason and mark it in the list.
    const response = await fetch(`/api/images/${id}`).catch(() => null);
    const payload = response ? await response.json().catch(() => ({})) : {};
    say(payload.error || `image ${info.file_name} cannot be shown`, true);
    await loadImages().catch(() => {});
    return;
  }
  const bitmap = await createImageBitmap(image);
  const thumb = await createImageBitmap(image, {
    resizeWidth: THUMB_WIDTH, resizeHeight: Math.max(1, Math.round((THUMB_WIDTH * info.height) / info.width)), resizeQuality: "medium",
  });
  if (state.imageId !== id) return;
  state.bitmap = bitmap; state.thumb = thumb;
  fitView();
  await refreshImage();
  document.body.dataset.imageId = id;
  say("Click an object; shift or right click for background; drag for a box.");
}

function step(offset) {
  const shown = state.images.filter((image) => state.filter === "all" || image.state === state.filter || image.id === state.imageId);
  const index = shown.findIndex((image) => image.id === state.imageId);
  const next = shown[index + offset];
  if (next) openImage(next.id);
}

// The next image (after this one, wrapping round) that is neither done nor skipped.
function nextOpen() {
  const index = state.images.findIndex((image) => image.id === state.imageId);
  for (let k = 1; k <= state.images.length; k++) {
    const image = state.images[(index + k) % state.images.length];
    if (OPEN_STATES.includes(image.state) && image.id !== state.imageId) { openImage(image.id); return; }
  }
  say("every other image is done or skipped");
}

async function setImageState(wanted) {
  const next = state.imageState === wanted ? (state.annotations.length ? "in_progress" : "new") : wanted;
  const result = await api("PUT", `/api/images/${state.imageId}/state`, { state: next });
  state.imageState = result.state;
  await loadImages();
  say(`image marked ${result.state.replace("_", " ")}` + (result.state === "done" ? "; n opens the next open image" : ""));
}

// ------------------------------------------------------------------ objects of the image
async function refreshImage() {
  const id = state.imageId;
  const snapshot = await api("GET", `/api/images/${id}/annotations`);
  if (state.imageId === id) applySnapshot(snapshot);
  return snapshot;
}

function applySnapshot(snapshot) {
  state.annotations = snapshot.annotations;
  const shapes = new Map();
  for (const annotation of state.annotations) {
    const known = state.shapes.get(annotation.id);
    const counts = annotation.segmentation.counts;
    shapes.set(annotation.id, known && known.counts === counts ? known : { counts, shape: Shape.fromRle(annotation.segmentation) });
  }
  state.shapes = shapes;
  state.proposals = snapshot.proposals;
  state.imageState = snapshot.state;
  state.selected = new Set([...state.selected].filter((id) => shapes.has(id)));
  state.uncoveredShare = null;
  state.version += 1;
  syncHistory(snapshot.history);
  const info = imageInfo(state.imageId);
  if (info) { info.annotations = state.annotations.length; info.state = snapshot.state; }
  renderObjects(); renderProposals(); renderImageList(); renderProgress(); renderHistory(); renderUncoveredFigure();
  requestDraw();
  document.body.dataset.annotations = state.annotations.length;
  document.body.dataset.version = state.version;
}

function shapeOf(id) { const entry = state.shapes.get(id); return entry ? entry.shape : null; }

function annotation(id) { return state.annotations.find((a) => a.id === id); }

// The topmost accepted object under image point (x, y), or null.
function objectAt(x, y) {
  for (let i = state.annotations.length - 1; i >= 0; i--) {
    const a = state.annotations[i];
    if (a.id !== state.current.editing && shapeOf(a.id).contains(x, y)) return a.id;
  }
  return null;
}

function select(id, toggle) {
  if (toggle) { state.selected.has(id) ? state.selected.delete(id) : state.selected.add(id); } else state.selected = new Set(id === null ? [] : [id]);
  state.version += 1;
  renderObjects(); requestDraw();
  const names = [...state.selected].map((k) => `#${k} (${annotation(k).category})`).join(", ");
  if (state.selected.size) say(`selected ${names}: 1-9 relabels, Delete deletes, e refines, b/x/v edit`);
}

function renderObjects() {
  const list = $("object-list");
  list.innerHTML = "";
  for (const a of state.annotations) {
    const item = document.createElement("li");
    item.dataset.id = a.id;
    if (state.selected.has(a.id)) item.className = "selected";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = rgba(colorOf(a.category), 1);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${a.category === UNLABELLED ? "(no class)" : a.category} #${a.id}`;
    name.title = "click: select (Ctrl+click: add); double click: relabel";
    item.addEventListener("click", (event) => select(a.id, event.ctrlKey || event.metaKey));
    name.addEventListener("dblclick", () => relabelInline(a, name));
    const remove = document.createElement("button");
    remove.textContent = "✕"; remove.title = "delete (undo brings it back)";
    remove.addEventListener("click", (event) => { event.stopPropagation(); serial(() => deleteObjects([a.id])); });
    item.append(swatch, name, remove);
    list.append(item);
  }
}

function renderUncoveredFigure() {
  if (!state.showUncovered) { $("uncovered-figure").textContent = `(${state.annotations.length})`; return; }
  if (state.uncoveredShare === null) {
    state.uncoveredShare = uncoveredShare(state.annotations.map((a) => shapeOf(a.id)), state.width, state.height);
  }
  $("uncovered-figure").textContent = `(${state.annotations.length}; ${Math.round(100 * state.uncoveredShare)}% uncovered)`;
}

function relabelInline(a, name) {
  const input = document.createElement("input");
  input.value = a.category === UNLABELLED ? "" : a.category;
  input.setAttribute("list", "category-list");
  name.replaceWith(input);
  input.focus(); input.select();
  let done = false;
  const finish = (save) => {
    if (done) return;
    done = true;
    const value = input.value.trim();
    if (save && value && value !== a.category) serial(() => relabel([a.id], value)); else renderObjects();
  };
  input.onkeydown = (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
    event.stopPropagation();
  };
  input.onblur = () => finish(true);
}

// ------------------------------------------------------------------ changes and the one history
// The page keeps one undo list per image: click entries (the prompt before a click, on this page only)
// and the server's operations (accept, delete, relabel, edit, proposal reject) by their number.
function pageHistory() {
  let entry = state.hist.get(state.imageId);
  if (!entry) { entry = { undo: [], redo: [], texts: new Map() }; state.hist.set(state.imageId, entry); }
  return entry;
}

function syncHistory(server) {
  const h = pageHistory();
  for (const op of [...server.undo, ...server.redo]) h.texts.set(op.seq, op.text);
  const ops = (list) => list.filter((e) => e.kind === "op").map((e) => e.seq);
  const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  const serverUndo = server.undo.map((op) => op.seq), serverRedo = server.redo.map((op) => op.seq);
  if (!same(ops(h.undo), serverUndo)) {
    h.undo = serverUndo.map((seq) => ({ kind: "op", seq }));  // another tab (or a reload): take the server's
    h.redo = serverRedo.map((seq) => ({ kind: "op", seq }));
  } else if (!same(ops(h.redo), serverRedo.slice(serverRedo.length - ops(h.redo).length))) {
    h.redo = serverRedo.map((seq) => ({ kind: "op", seq }));
  }
}

function describeEntry(entry) {
  if (!entry) return "nothing";
  return entry.kind === "prompt" ? "a click" : pageHistory().texts.get(entry.seq) || `action #${entry.seq}`;
}

function renderHistory() {
  const h = pageHistory();
  $("undo").title = `undo ${describeEntry(h.undo[h.undo.length - 1])} (z)`;
  $("redo").title = `redo ${describeEntry(h.redo[h.redo.length - 1])} (Shift+Z)`;
  $("history-note").textContent = `${h.undo.length} to undo, ${h.redo.length} to redo`;
}

// After a change on the server: put its operation on the page's list, then show the new state.
async function afterChange(extra = {}) {
  const snapshot = await api("GET", `/api/images/${state.imageId}/annotations`);
  const h = pageHistory();
  const last = snapshot.history.undo[snapshot.history.undo.length - 1];
  if (last && !h.undo.some((e) => e.kind === "op" && e.seq === last.seq)) {
    h.undo.push({ kind: "op", seq: last.seq, ...extra });
    h.redo = [];
  }
  applySnapshot(snapshot);
  await loadImages();
  return last;
}

// Undo (backward) or redo the last entry: a click on this page, or an operation on the server (an
// accept undone brings its mask back as the current mask; redone, the current mask is cleared again).
async function travel(backward) {
  const h = pageHistory();
  const [source, target] = backward ? [h.undo, h.redo] : [h.redo, h.undo];
  const word = backward ? "undid" : "redid";
  const entry = source.pop();
  if (!entry) { say(`nothing to ${backward ? "undo" : "redo"}`); renderHistory(); return; }
  if (entry.kind === "prompt") {
    target.push({ kind: "prompt", prompt: state.current });
    state.current = entry.prompt;
    afterPromptChange(`${word} a click`);
    return;
  }
  let result;
  try {
    result = await api("POST", `/api/images/${state.imageId}/${backward ? "undo" : "redo"}`, { seq: entry.seq });
  } catch (error) {
    await refreshImage();
    throw error;
  }
  target.push(entry);
  if (entry.prompt) state.current = backward ? entry.prompt : emptyPrompt();
  applySnapshot(result.image);
  renderCandidates();
  await loadImages();
  say(`${word} ${result.done.text}`);
}

const undo = () => travel(true);
const redo = () => travel(false);

async function accept() {
  const prompt = state.current;
  if (prompt.editing !== null) { await saveRefinement(); return; }
  const result = prompt.result;
  if (!result) {
    if (state.selected.size && labelText()) { await relabel([...state.selected], labelText()); return; }
    say("click on an object first (or select objects and type a label to relabel them)", true);
    return;
  }
  const category = labelText();
  const index = prompt.selected;
  const stored = await api("POST", `/api/images/${state.imageId}/annotations`, {
    rle: result.masks[index], category, mask_input: result.mask_inputs ? result.mask_inputs[index] : null,
    prompt: { points: prompt.points, labels: prompt.labels, box: prompt.box },
  });
  state.current = emptyPrompt();
  setLabel(null);
  $("label").blur();
  renderCandidates();
  await afterChange({ prompt });
  say(`accepted #${stored.id} as ${category ? `"${category}"` : "unlabelled (1-9 or a label relabels it)"}`);
}

async function relabel(ids, category) {
  await api("POST", `/api/images/${state.imageId}/relabel`, { ids, category });
  await afterChange();
  setLabel(null);
  say(`relabelled ${ids.map((id) => `#${id}`).join(", ")} as "${category}"`);
}

async function deleteObjects(ids) {
  if (!ids.length) { say("select an object first (click on it)"); return; }
  await api("POST", `/api/images/${state.imageId}/delete`, { ids });
  ids.forEach((id) => state.selected.delete(id));
  await afterChange();
  say(`deleted ${ids.map((id) => `#${id}`).join(", ")} (z brings ${ids.length > 1 ? "them" : "it"} back)`);
}

async function editMask(id, body, message) {
  await api("PUT", `/api/annotations/${id}`, body);
  await afterChange();
  say(message);
}

// ------------------------------------------------------------------ clicks
function promptActive() { return state.current.points.length > 0 || state.current.box !== null; }

function changePrompt(change) {
  const h = pageHistory();
  h.undo.push({ kind: "prompt", prompt: state.current });
  h.redo = [];
  const previous = state.current;
  state.current = { ...previous, points: previous.points.slice(), labels: previous.labels.slice(), result: null, selected: 0, previous, shapes: [] };
  change(state.current);
  renderHistory();
  predict(state.current);
}

function afterPromptChange(text) {
  if (state.current.editing !== null && !(state.selected.size === 1 && state.selected.has(state.current.editing))) {
    state.selected = new Set([state.current.editing]);
    renderObjects();
  }
  renderCandidates(); renderHistory(); requestDraw();
  if (text) say(text);
}

function lastResult(prompt) {
  for (let p = prompt; p; p = p.previous) if (p.result) return p;
  return null;
}

async function predict(prompt) {
  const seq = ++state.requestSeq;
  const basis = lastResult(prompt.previous);
  const token = basis && basis.result.mask_inputs ? basis.result.mask_inputs[basis.selected] : prompt.seedToken;
  const body = {
    points: prompt.points, labels: prompt.labels, box: prompt.box, mask_input: token || null, multimask: $("multimask").checked,
  };
  if (!body.points.length && !body.box && !body.mask_input) { requestDraw(); return; }
  const path = `/api/images/${state.imageId}/predict`;
  const started = performance.now();
  let text;
  try {
    let response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!response.ok && body.mask_input) {  // an expired token: the clicks alone
      response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ...body, mask_input: null }) });
    }
    text = await response.text();
    if (!response.ok) throw new Error((JSON.parse(text) || {}).error || `HTTP ${response.status}`);
  } catch (error) { say(error.message, true); return; }
  // Main-thread work of the redraw starts here: parse, decode the chosen mask, draw the frame.
  const redrawStart = performance.now();
  const result = JSON.parse(text);
  prompt.result = result;
  prompt.selected = result.scores.indexOf(Math.max(...result.scores));
  if (seq !== state.requestSeq || prompt !== state.current) return;
  promptShape(prompt, prompt.selected);
  draw();
  if (state.measureRaster) $("canvas").getContext("2d").getImageData(0, 0, 1, 1);  // include rasterisation
  performance.measure("mask-redraw", { start: redrawStart, end: performance.now() });
  $("timing").textContent = `decode: ${result.decode_ms.toFixed(1)} ms (round trip ${(redrawStart - started).toFixed(0)} ms)`;
  say(prompt.editing !== null ? "Enter saves the refined object; Esc cancels" : "Enter accepts the mask; 1-9 pick its class; c another candidate");
  document.body.dataset.maskDrawn = String(seq);
  setTimeout(renderCandidates, 0);  // the candidate thumbnails come in the next task, after the frame
}

function promptShape(prompt, index) {
  if (!prompt.result) return null;
  if (!prompt.shapes[index]) prompt.shapes[index] = Shape.fromRle(prompt.result.masks[index]);
  return prompt.shapes[index];
}

function clearPrompt() {
  if (!promptActive() && !state.current.result) return false;
  const h = pageHistory();
  h.undo.push({ kind: "prompt", prompt: state.current });
  h.redo = [];
  state.current = emptyPrompt();
  afterPromptChange("cleared the clicks (z brings them back)");
  return true;
}

function selectCandidate(index) {
  const result = state.current.result;
  if (!result || index < 0 || index >= result.masks.length) return;
  state.current.selected = index;
  renderCandidates(); requestDraw();
}

function cycleCandidate(offset) {
  const result = state.current.result;
  if (result) selectCandidate((state.current.selected + offset + result.masks.length) % result.masks.length);
}

function renderCandidates() {
  const box = $("candidates");
  box.innerHTML = "";
  const prompt = state.current, result = prompt.result;
  $("mode").textContent = prompt.editing !== null ? `(refining #${prompt.editing})` : "";
  if (!result || !state.thumb) return;
  const scale = state.thumb.width / state.width;
  result.masks.forEach((_, index) => {
    const item = document.createElement("div");
    item.className = "candidate" + (index === prompt.selected ? " selected" : "");
    const thumb = document.createElement("canvas");
    thumb.width = state.thumb.width; thumb.height = state.thumb.height;
    const context = thumb.getContext("2d");
    context.drawImage(state.thumb, 0, 0);
    context.setTransform(scale, 0, 0, scale, 0, 0);
    drawMask(context, promptShape(prompt, index).path, scale, { color: LIVE_COLOR, fill: 0.6, outline: 1 });
    const caption = document.createElement("div");
    caption.textContent = `${index + 1}: ${result.scores[index].toFixed(3)}`;
    item.append(thumb, caption);
    item.addEventListener("click", () => selectCandidate(index));
    box.append(item);
  });
}

// ------------------------------------------------------------------ refining, brush, polygon
async function startRefine(id) {
  const a = annotation(id);
  if (!a) return;
  const stored = await api("GET", `/api/annotations/${id}/prompt`);
  const h = pageHistory();
  h.undo.push({ kind: "prompt", prompt: state.current });
  h.redo = [];
  setTool("click");
  state.current = {
    ...emptyPrompt(), points: stored.points, labels: stored.labels, box: stored.box, editing: id, seedToken: stored.mask_input,
    result: { masks: [a.segmentation], scores: [1], mask_inputs: [stored.mask_input] },
  };
  afterPromptChange(`refining #${id}: click to add parts, shift or right click to remove; Enter saves, Esc cancels` +
    (stored.mask_input ? "" : " (its logits are gone: the stored clicks start it)"));
}

async function saveRefinement() {
  const prompt = state.current, id = prompt.editing;
  if (!prompt.previous || !prompt.result || prompt.result.masks[0] === annotation(id)?.segmentation) {
    state.current = emptyPrompt(); afterPromptChange("nothing changed"); return;
  }
  const index = prompt.selected;
  state.current = emptyPrompt();
  renderCandidates();
  await editMask(id, {
    rle: prompt.result.masks[index], mask_input: prompt.result.mask_inputs ? prompt.result.mask_inputs[index] : null,
    prompt: { points: prompt.points, labels: prompt.labels, box: prompt.box },
  }, `saved the refined #${id}`);
}

function cancelRefinement() {
  state.current = emptyPrompt();
  afterPromptChange("refinement cancelled");
}

function onlySelected() {
  if (state.selected.size !== 1) { say("select one object first (click on it)", true); return null; }
  return [...state.selected][0];
}

async function commitStroke(stroke) {
  const shape = shapeOf(stroke.id);
  if (!shape) return;
  const bits = shape.toBits();
  stampStroke(bits, state.height, state.width, stroke.points, stroke.radius, stroke.add ? 1 : 0);
  const counts = encodeBits(bits, state.height, state.width);
  if (counts.length === 1) { say("the eraser would leave nothing of the object: Delete deletes it", true); return; }
  await editMask(stroke.id, { rle: { size: [state.height, state.width], counts } },
    `${stroke.add ? "painted onto" : "erased from"} #${stroke.id} (z undoes it)`);
}

async function startVertices(id) {
  const polygon = await api("GET", `/api/annotations/${id}/polygon?tolerance=${VERTEX_TOLERANCE}`);
  const rings = polygon.rings.map((ring) => {
    const points = [];
    for (let i = 0; i < ring.points.length; i += 2) points.push([ring.points[i], ring.points[i + 1]]);
    return { hole: ring.hole, points };
  });
  state.vertex = { id, rings, drag: null };
  state.version += 1;
  requestDraw();
  say(`#${id}: drag a vertex, drag an edge to add one, right or Alt click a vertex to remove it; each change is saved`);
}

async function saveVertices() {
  const vertex = state.vertex;
  const polygon = vertex.rings.map((ring) => ring.points.flat());
  await editMask(vertex.id, { polygon, fill_rule: "evenodd" }, `saved the polygon of #${vertex.id} (z undoes it)`);
}

function vertexPath(rings) {
  const path = new Path2D();
  for (const ring of rings) {
    ring.points.forEach(([x, y], i) => (i ? path.lineTo(x, y) : path.moveTo(x, y)));
    path.closePath();
  }
  return path;
}

// The vertex (ring, index) or edge (ring, index, point) of the polygon near canvas point (sx, sy).
function vertexTarget(sx, sy) {
  const view = state.view;
  let best = null;
  state.vertex.rings.forEach((ring, r) => ring.points.forEach(([x, y], i) => {
    const [px, py] = view.toScreen(x, y);
    const d = Math.hypot(px - sx, py - sy);
    if (d <= 7 && (!best || d < best.d)) best = { ring: r, index: i, d, kind: "vertex" };
  }));
  if (best) return best;
  state.vertex.rings.forEach((ring, r) => ring.points.forEach(([x, y], i) => {
    const [nx, ny] = ring.points[(i + 1) % ring.points.length];
    const [ax, ay] = view.toScreen(x, y), [bx, by] = view.toScreen(nx, ny);
    const length2 = (bx - ax) ** 2 + (by - ay) ** 2 || 1;
    const t = Math.max(0, Math.min(1, ((sx - ax) * (bx - ax) + (sy - ay) * (by - ay)) / length2));
    const d = Math.hypot(ax + t * (bx - ax) - sx, ay + t * (by - ay) - sy);
    if (d <= 6 && (!best || d < best.d)) best = { ring: r, index: i + 1, d, kind: "edge" };
  }));
  return best;
}

function setTool(tool) {
  if (tool !== "vertices") state.vertex = null;
  state.tool = tool;
  state.stroke = null;
  for (const button of document.querySelectorAll("#tools button")) button.classList.toggle("active", button.dataset.tool === tool);
  $("canvas").classList.toggle("brush", tool === "brush" || tool === "eraser");
  state.version += 1;
  requestDraw();
}

async function chooseTool(tool) {
  if (tool === "click") { setTool("click"); return; }
  const id = onlySelected();
  if (id === null) return;
  if (state.current.editing !== null) cancelRefinement();
  setTool(tool);
  if (tool === "vertices") await startVertices(id);
  else say(`${tool === "brush" ? "paint onto" : "erase from"} #${id}: drag on the image; [ and ] change the size`);
}

function setBrushRadius(radius) {
  state.brushRadius = Math.max(1, Math.min(200, Math.round(radius)));
  $("brush-size").value = state.brushRadius;
  $("brush-size-text").textContent = `${state.brushRadius} px`;
  requestDraw();
}

// ------------------------------------------------------------------ proposals
async function prefill(ids) {
  const bar = $("prefill-progress"), status = $("prefill-status");
  bar.hidden = false; bar.max = ids.length; bar.value = 0;
  for (const [done, id] of ids.entries()) {
    status.textContent = `pre-filling ${done + 1} / ${ids.length}...`;
    try {
      const payload = await api("POST", `/api/images/${id}/prefill`, {});
      state.uncoveredOn.set(id, true);
      if (id === state.imageId) { setUncovered(true); await refreshImage(); }
      status.textContent = `${payload.proposals.length} proposal(s) in ${(payload.elapsed_ms / 1000).toFixed(1)} s`;
    } catch (error) { say(error.message, true); }
    bar.value = done + 1;
  }
  bar.hidden = true;
  if (ids.length > 1) status.textContent = `pre-filled ${ids.length} image(s)`;
}

function renderProposals() {
  const proposals = state.proposals;
  $("proposal-count").textContent = proposals.length ? `(${proposals.length})` : "";
  $("proposal-info").textContent = proposals.length
    ? `highlighted: score ${proposals[0].score.toFixed(3)}, ${proposals[0].area} px`
    : "none (run pre-fill)";
}

async function decideProposal(keep) {
  const proposal = state.proposals[0];
  if (!proposal) { say("no proposals on this image (f pre-fills it)"); return; }
  if (keep) {
    const category = labelText();
    const stored = await api("POST", `/api/images/${state.imageId}/annotations`, { proposal: proposal.id, category });
    setLabel(null);
    await afterChange();
    say(`accepted proposal as #${stored.id} (${category || "unlabelled"})`);
  } else {
    await api("DELETE", `/api/images/${state.imageId}/proposals/${proposal.id}`);
    await afterChange();
    say("rejected the proposal (z brings it back)");
  }
}

function setUncovered(on) {
  state.showUncovered = on;
  state.uncoveredOn.set(state.imageId, on);
  $("show-uncovered").checked = on;
  renderUncoveredFigure();
  requestDraw();
}

// ------------------------------------------------------------------ drawing
function resizeCanvas() {
  const canvas = $("canvas"), stage = $("stage");
  const dpr = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(stage.clientWidth * dpr)), height = Math.max(1, Math.round(stage.clientHeight * dpr));
  if (canvas.width !== width || canvas.height !== height || state.dpr !== dpr) {
    canvas.width = width; canvas.height = height; state.dpr = dpr;
    state.layer = null;
    if (state.view.fitted) fitView(false);
  }
}

function fitView(draw = true) {
  const stage = $("stage");
  if (!state.width) return;
  state.view.fit(state.width, state.height, stage.clientWidth, stage.clientHeight);
  viewChanged(false);
  if (draw) requestDraw();
}

function viewChanged(interacting = true) {
  state.viewChangedAt = interacting ? performance.now() : 0;
  $("zoom-text").textContent = `${Math.round(state.view.scale * 100)}%`;
  if (interacting) setTimeout(requestDraw, SETTLE_MS + 10);
}

function zoomBy(factor, sx, sy) {
  const stage = $("stage");
  const x = sx === undefined ? stage.clientWidth / 2 : sx, y = sy === undefined ? stage.clientHeight / 2 : sy;
  state.view.zoomTo(state.view.scale * factor, x, y);
  viewChanged();
  requestDraw();
}

function zoomOne() {
  const stage = $("stage");
  state.view.zoomTo(1, stage.clientWidth / 2, stage.clientHeight / 2);
  viewChanged(false);
  requestDraw();
}

function requestDraw() {
  if (state.frame !== null) return;
  state.frame = requestAnimationFrame(() => { state.frame = null; draw(); });
}

function layerKey() {
  return [state.version, state.opacity, state.outlinesOnly, state.showOverlay, state.showUncovered, state.current.editing,
    state.vertex ? state.vertex.id : "", state.selected.size ? [...state.selected].join(",") : ""].join("|");
}

// The accepted objects (and the uncovered shading, the highlighted proposal) as drawn for the view,
// kept until the view or the objects change. While the view is moving it is stretched, then redrawn.
function objectLayer(canvas) {
  const key = layerKey(), viewKey = state.view.key();
  const layer = state.layer;
  if (layer && layer.key === key && layer.viewKey === viewKey) return { canvas: layer.canvas, transform: null };
  if (layer && layer.key === key && performance.now() - state.viewChangedAt < SETTLE_MS) {
    const ratio = state.view.scale / layer.scale;
    return { canvas: layer.canvas, transform: [ratio, state.dpr * (state.view.tx - layer.tx * ratio), state.dpr * (state.view.ty - layer.ty * ratio)] };
  }
  const target = layer && layer.canvas.width === canvas.width && layer.canvas.height === canvas.height ? layer.canvas : document.createElement("canvas");
  target.width = canvas.width; target.height = canvas.height;
  const context = target.getContext("2d");
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.clearRect(0, 0, target.width, target.height);
  state.view.apply(context, state.dpr);
  const scale = state.view.scale;
  if (state.showUncovered) drawUncovered(context);
  if (state.showOverlay) {
    const hidden = new Set([state.current.editing, state.vertex ? state.vertex.id : null]);
    const fill = state.outlinesOnly ? 0 : state.opacity;
    const shown = state.annotations.filter((a) => !hidden.has(a.id));
    for (const a of shown) if (!state.selected.has(a.id)) drawMask(context, shapeOf(a.id).path, scale, { color: colorOf(a.category), fill });
    for (const a of shown) if (state.selected.has(a.id)) drawMask(context, shapeOf(a.id).path, scale, { color: colorOf(a.category), fill, selected: true });
  }
  const proposal = state.proposals[0];
  if (proposal) {
    if (!proposal.shape) proposal.shape = Shape.fromRle(proposal.rle);
    drawMask(context, proposal.shape.path, scale, { color: PROPOSAL_COLOR, fill: 0.3, outline: 2, dashed: true });
  }
  state.layer = { canvas: target, key, viewKey, scale, tx: state.view.tx, ty: state.view.ty };
  return { canvas: target, transform: null };
}

function drawUncovered(context) {
  const shade = document.createElement("canvas");
  shade.width = context.canvas.width; shade.height = context.canvas.height;
  const inner = shade.getContext("2d");
  state.view.apply(inner, state.dpr);
  inner.fillStyle = rgba(UNCOVERED_COLOR, 0.35);
  inner.fillRect(0, 0, state.width, state.height);
  inner.globalCompositeOperation = "destination-out";
  inner.fillStyle = "#000";
  for (const a of state.annotations) inner.fill(shapeOf(a.id).path, "evenodd");
  context.save();
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.drawImage(shade, 0, 0);
  context.restore();
}

function draw() {
  resizeCanvas();
  const canvas = $("canvas"), context = canvas.getContext("2d");
  const dpr = state.dpr, view = state.view, scale = view.scale;
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.fillStyle = "#2a2d33";
  context.fillRect(0, 0, canvas.width, canvas.height);
  if (!state.bitmap) return;
  view.apply(context, dpr);
  context.imageSmoothingEnabled = scale < 2;  // zoomed in: whole pixels, as labellers want to see them
  context.drawImage(state.bitmap, 0, 0);
  context.imageSmoothingEnabled = true;
  const layer = objectLayer(canvas);
  context.setTransform(1, 0, 0, 1, 0, 0);
  if (layer.transform) {
    const [ratio, dx, dy] = layer.transform;
    context.drawImage(layer.canvas, dx, dy, layer.canvas.width * ratio, layer.canvas.height * ratio);
  } else context.drawImage(layer.canvas, 0, 0);
  view.apply(context, dpr);
  const prompt = state.current;
  if (prompt.result && !state.vertex) {
    const shape = promptShape(prompt, prompt.selected);
    const editing = prompt.editing !== null ? annotation(prompt.editing) : null;
    const color = editing ? colorOf(editing.category) : labelText() ? colorOf(labelText()) : LIVE_COLOR;
    drawMask(context, shape.path, scale, { color, fill: 0.45, outline: 2 });
  }
  if (state.vertex) drawVertexEditor(context, scale);
  if (state.stroke) {
    context.lineCap = "round"; context.lineJoin = "round";
    context.strokeStyle = state.stroke.add ? rgba(colorOf(annotation(state.stroke.id)?.category), 0.6) : "rgba(20,20,20,0.6)";
    context.lineWidth = 2 * state.stroke.radius;
    context.beginPath();
    state.stroke.points.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
    if (state.stroke.points.length === 1) context.lineTo(state.stroke.points[0][0] + 0.01, state.stroke.points[0][1]);
    context.stroke();
  }
  context.setTransform(dpr, 0, 0, dpr, 0, 0);
  prompt.points.forEach(([x, y], index) => drawPoint(context, ...view.toScreen(x, y), prompt.labels[index] === 1));
  const dragging = state.pointer && state.pointer.dragging;
  const box = dragging ? state.pointer.box : prompt.box;
  if (box) {
    const [x0, y0] = view.toScreen(box[0], box[1]), [x1, y1] = view.toScreen(box[2], box[3]);
    context.setLineDash(dragging ? [6, 4] : []);
    context.strokeStyle = "#2ecc40"; context.lineWidth = 2;
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
    context.setLineDash([]);
  }
  if ((state.tool === "brush" || state.tool === "eraser") && state.hover) {
    context.beginPath();
    context.arc(state.hover[0], state.hover[1], Math.max(1, state.brushRadius * scale), 0, 2 * Math.PI);
    context.lineWidth = 1.5; context.strokeStyle = "#fff"; context.stroke();
    context.setLineDash([3, 3]); context.strokeStyle = "#000"; context.stroke(); context.setLineDash([]);
  }
}

function drawVertexEditor(context, scale) {
  const a = annotation(state.vertex.id);
  const path = vertexPath(state.vertex.rings);
  drawMask(context, path, scale, { color: colorOf(a ? a.category : null), fill: state.outlinesOnly ? 0 : state.opacity, selected: true });
  const size = 6 / scale;
  context.lineWidth = 1.5 / scale;
  for (const ring of state.vertex.rings) {
    for (const [x, y] of ring.points) {
      context.fillStyle = ring.hole ? "#ffd" : "#fff";
      context.fillRect(x - size / 2, y - size / 2, size, size);
      context.strokeStyle = "#000";
      context.strokeRect(x - size / 2, y - size / 2, size, size);
    }
  }
}

// ------------------------------------------------------------------ pointer
function canvasPoint(event) {
  const rect = $("canvas").getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

function imagePoint(event) {
  const [ix, iy] = state.view.toImage(...canvasPoint(event));
  return [Math.min(state.width, Math.max(0, ix)), Math.min(state.height, Math.max(0, iy))];
}

function setUpPointer() {
  const canvas = $("canvas");
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [sx, sy] = canvasPoint(event);
    zoomBy(Math.exp(-Math.max(-300, Math.min(300, event.deltaY)) * 0.0015), sx, sy);
  }, { passive: false });
  canvas.addEventListener("mousedown", (event) => {
    if (!state.bitmap) return;
    event.preventDefault();
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
    const [sx, sy] = canvasPoint(event);
    if (event.button === 1 || state.spaceDown) {
      state.pointer = { pan: true, x: event.clientX, y: event.clientY };
      canvas.classList.add("pan");
      return;
    }
    const point = imagePoint(event);
    if (state.tool === "brush" || state.tool === "eraser") {
      const id = onlySelected();
      if (id === null) return;
      state.stroke = { id, points: [point], radius: state.brushRadius, add: (state.tool === "brush") !== (event.button === 2 || event.shiftKey) };
      requestDraw();
      return;
    }
    if (state.tool === "vertices" && state.vertex) {
      const target = vertexTarget(sx, sy);
      if (!target) return;
      const ring = state.vertex.rings[target.ring];
      if (target.kind === "vertex" && (event.button === 2 || event.altKey)) {
        if (ring.points.length <= 3) { say("a ring keeps at least 3 vertices", true); return; }
        ring.points.splice(target.index, 1);
        serial(saveVertices);
        requestDraw();
        return;
      }
      if (target.kind === "edge") ring.points.splice(target.index, 0, point);
      state.vertex.drag = { ring: target.ring, index: target.index, moved: target.kind === "edge" };
      return;
    }
    state.pointer = {
      start: point, x: event.clientX, y: event.clientY, dragging: false, button: event.button,
      background: event.button === 2 || event.shiftKey, alt: event.altKey, toggle: event.ctrlKey || event.metaKey,
    };
  });
  window.addEventListener("mousemove", (event) => {
    const pointer = state.pointer;
    if (state.tool === "brush" || state.tool === "eraser") { state.hover = canvasPoint(event); requestDraw(); }
    if (state.stroke) { state.stroke.points.push(imagePoint(event)); requestDraw(); return; }
    if (state.vertex && state.vertex.drag) {
      const drag = state.vertex.drag;
      state.vertex.rings[drag.ring].points[drag.index] = imagePoint(event);
      drag.moved = true;
      requestDraw();
      return;
    }
    if (!pointer) return;
    if (pointer.pan) {
      state.view.pan(event.clientX - pointer.x, event.clientY - pointer.y);
      pointer.x = event.clientX; pointer.y = event.clientY;
      viewChanged(); requestDraw();
      return;
    }
    if (pointer.background) return;
    if (!pointer.dragging && Math.hypot(event.clientX - pointer.x, event.clientY - pointer.y) < DRAG_PIXELS) return;
    pointer.dragging = true;
    const [x0, y0] = pointer.start, [x1, y1] = imagePoint(event);
    pointer.box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
    requestDraw();
  });
  window.addEventListener("mouseup", () => {
    if (state.stroke) {
      const stroke = state.stroke;
      serial(async () => { try { await commitStroke(stroke); } finally { if (state.stroke === stroke) state.stroke = null; requestDraw(); } });
      return;
    }
    if (state.vertex && state.vertex.drag) {
      const moved = state.vertex.drag.moved;
      state.vertex.drag = null;
      if (moved) serial(saveVertices);
      return;
    }
    const pointer = state.pointer;
    if (!pointer) return;
    state.pointer = null;
    if (pointer.pan) { $("canvas").classList.toggle("pan", state.spaceDown); return; }
    const clickStart = performance.now();
    if (pointer.dragging) {
      changePrompt((prompt) => { prompt.box = pointer.box; });
    } else {
      const hit = pointer.alt ? null : objectAt(...pointer.start);
      if (hit !== null && pointer.toggle) select(hit, true);
      else if (hit !== null && !pointer.background && !promptActive() && state.current.editing === null) select(hit, false);
      else {
        if (state.current.editing === null && state.selected.size) { state.selected = new Set(); state.version += 1; renderObjects(); }
        changePrompt((prompt) => { prompt.points.push(pointer.start); prompt.labels.push(pointer.background ? 0 : 1); });
      }
    }
    draw();
    performance.measure("click-redraw", { start: clickStart, end: performance.now() });
  });
  canvas.addEventListener("dblclick", (event) => {
    const hit = objectAt(...imagePoint(event));
    if (hit !== null && state.tool === "click") serial(() => startRefine(hit));
  });
  canvas.addEventListener("mouseleave", () => { state.hover = null; requestDraw(); });
}

// ------------------------------------------------------------------ keys
function toggleHelp(show) {
  $("help").hidden = show === undefined ? !$("help").hidden : !show;
}

function escape() {
  if (state.vertex || state.tool !== "click") { setTool("click"); say("back to clicks"); return; }
  if (state.current.editing !== null) { cancelRefinement(); return; }
  if (clearPrompt()) return;
  if (state.selected.size) select(null, false);
}

function setUpKeys() {
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = (target.tagName === "INPUT" && target.type !== "checkbox" && target.type !== "range") || target.tagName === "SELECT";
    if (typing) {
      if (event.key === "Enter" && target.id === "label") { event.preventDefault(); serial(accept); }
      if (event.key === "Escape") target.blur();
      return;
    }
    if (!$("help").hidden && (event.key === "Escape" || event.key === "?")) { toggleHelp(false); return; }
    const key = event.key, control = event.ctrlKey || event.metaKey;
    if (control && (key === "z" || key === "Z")) { event.preventDefault(); serial(event.shiftKey ? redo : undo); return; }
    if (control && key === "y") { event.preventDefault(); serial(redo); return; }
    if (control || event.altKey) return;
    if (key === " ") { event.preventDefault(); state.spaceDown = true; $("canvas").classList.add("pan"); return; }
    if (event.shiftKey && event.code === "Digit1") { event.preventDefault(); fitView(); return; }
    if (event.shiftKey && event.code === "Digit0") { event.preventDefault(); zoomOne(); return; }
    if (/^[1-9]$/.test(key)) {
      event.preventDefault();
      const name = classNames()[Number(key) - 1];
      if (name) pickClass(name); else say(`no class ${key} (${classNames().length} class(es) so far)`, true);
      return;
    }
    const actions = {
      "Enter": () => serial(accept), "z": () => serial(undo), "Z": () => serial(redo), "Escape": escape,
      "Delete": () => serial(() => deleteObjects([...state.selected])), "Backspace": () => serial(() => deleteObjects([...state.selected])),
      "n": nextOpen, "ArrowRight": () => step(1), "p": () => step(-1), "ArrowLeft": () => step(-1),
      "d": () => serial(() => setImageState("done")), "s": () => serial(() => setImageState("skipped")),
      "o": () => $("show-overlay").click(), "O": () => $("outlines-only").click(), "u": () => $("show-uncovered").click(),
      "c": () => cycleCandidate(1), "C": () => cycleCandidate(-1),
      "a": () => serial(() => decideProposal(true)), "r": () => serial(() => decideProposal(false)),
      "f": () => prefill([state.imageId]), "l": () => $("label").focus(), "?": () => toggleHelp(),
      "e": () => { const id = onlySelected(); if (id !== null) serial(() => startRefine(id)); },
      "b": () => serial(() => chooseTool("brush")), "x": () => serial(() => chooseTool("eraser")),
      "v": () => serial(() => chooseTool("vertices")),
      "[": () => setBrushRadius(state.brushRadius / 1.25), "]": () => setBrushRadius(state.brushRadius * 1.25 + 1),
      "+": () => zoomBy(1.25), "=": () => zoomBy(1.25), "-": () => zoomBy(1 / 1.25), "0": () => fitView(),
    };
    if (actions[key]) { event.preventDefault(); actions[key](); }
  });
  document.addEventListener("keyup", (event) => {
    if (event.key === " ") { state.spaceDown = false; if (!state.pointer) $("canvas").classList.remove("pan"); }
  });
}

function setUpControls() {
  $("accept").addEventListener("click", () => serial(accept));
  $("undo").addEventListener("click", () => serial(undo));
  $("redo").addEventListener("click", () => serial(redo));
  $("clear").addEventListener("click", escape);
  $("help-button").addEventListener("click", () => toggleHelp());
  $("help").addEventListener("click", (event) => { if (event.target.id === "help") toggleHelp(false); });
  $("show-overlay").addEventListener("change", (event) => { state.showOverlay = event.target.checked; requestDraw(); });
  $("outlines-only").addEventListener("change", (event) => { state.outlinesOnly = event.target.checked; requestDraw(); });
  $("show-uncovered").addEventListener("change", (event) => setUncovered(event.target.checked));
  $("opacity").addEventListener("input", (event) => { state.opacity = Number(event.target.value) / 100; requestDraw(); });
  $("brush-size").addEventListener("input", (event) => setBrushRadius(Number(event.target.value)));
  for (const button of document.querySelectorAll("#tools button")) button.addEventListener("click", () => serial(() => chooseTool(button.dataset.tool)));
  $("zoom-in").addEventListener("click", () => zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => zoomBy(1 / 1.25));
  $("zoom-fit").addEventListener("click", () => fitView());
  $("zoom-one").addEventListener("click", zoomOne);
  $("mark-done").addEventListener("click", () => serial(() => setImageState("done")));
  $("mark-skipped").addEventListener("click", () => serial(() => setImageState("skipped")));
  $("next-open").addEventListener("click", nextOpen);
  // A choice made, the keys go back to the page (a focused menu would take them).
  $("image-filter").addEventListener("change", (event) => { state.filter = event.target.value; renderImageList(); event.target.blur(); });
  $("export-format").addEventListener("change", (event) => event.target.blur());
  $("label").addEventListener("input", () => { renderClasses(); requestDraw(); });
  $("prefill-one").addEventListener("click", () => prefill([state.imageId]));
  $("prefill-all").addEventListener("click", () => prefill(state.images.map((image) => image.id)));
  $("proposal-accept").addEventListener("click", () => serial(() => decideProposal(true)));
  $("proposal-reject").addEventListener("click", () => serial(() => decideProposal(false)));
  $("refine-selected").addEventListener("click", () => { const id = onlySelected(); if (id !== null) serial(() => startRefine(id)); });
  $("delete-selected").addEventListener("click", () => serial(() => deleteObjects([...state.selected])));
  $("export").addEventListener("click", () => { window.location.href = `/api/export/${$("export-format").value}`; });
  window.addEventListener("resize", () => requestDraw());
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
  if (!state.images.length) {
    say(state.unavailable.length ? `no readable image: ${state.unavailable.length} file(s) cannot be read (see the list)` : "no images", true);
    return;
  }
  const wanted = Number((location.hash.match(/image=(\d+)/) || [])[1]);
  await openImage(state.images.some((image) => image.id === wanted) ? wanted : state.images[0].id);
  document.body.dataset.ready = "1";
}

main();
