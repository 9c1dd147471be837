// Masks on the page: a COCO RLE decoded once into column runs (a Shape), from which come the outline
// loops (one Path2D for fill and stroke), hit tests, areas, brush edits and the RLE sent back.
// Coordinates are image pixels; pixel (x, y) is the square [x, x+1) x [y, y+1).
"use strict";

// pycocotools' compressed counts string -> run lengths (alternating 0s and 1s, down the columns).
export function rleCounts(text) {
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

export class Shape {
  // colStart: Int32Array(width + 1), runs of column x are ys[2k], ys[2k+1] for k in colStart[x]..colStart[x+1]
  constructor(width, height, colStart, ys) {
    this.width = width; this.height = height; this.colStart = colStart; this.ys = ys;
    let area = 0, x0 = width, x1 = -1, y0 = height, y1 = -1;
    for (let x = 0; x < width; x++) {
      const a = colStart[x], b = colStart[x + 1];
      if (a === b) continue;
      x0 = Math.min(x0, x); x1 = x;
      y0 = Math.min(y0, ys[2 * a]); y1 = Math.max(y1, ys[2 * b - 1]);
      for (let k = a; k < b; k++) area += ys[2 * k + 1] - ys[2 * k];
    }
    this.area = area;
    this.bbox = area ? [x0, y0, x1 + 1, y1] : null;  // XYXY in pixels
    this._path = null;
  }

  static fromRle(rle) {
    const [height, width] = rle.size;
    return Shape.fromCounts(typeof rle.counts === "string" ? rleCounts(rle.counts) : rle.counts, height, width);
  }

  static fromCounts(counts, height, width) {
    const ys = [];
    const colStart = new Int32Array(width + 1);
    let position = 0, column = 0;
    for (let i = 0; i < counts.length; i++) {
      const run = counts[i];
      if (i % 2 === 1 && run > 0) {
        let start = position;
        const end = position + run;
        while (start < end) {
          const c = Math.floor(start / height);
          const stop = Math.min(end, (c + 1) * height);
          while (column < c) { column += 1; colStart[column] = ys.length / 2; }
          ys.push(start - c * height, stop - c * height);
          start = stop;
        }
      }
      position += run;
    }
    while (column < width) { column += 1; colStart[column] = ys.length / 2; }
    return new Shape(width, height, colStart, Int32Array.from(ys));
  }

  static fromBits(bits, height, width) {
    return Shape.fromCounts(encodeBits(bits, height, width), height, width);
  }

  contains(x, y) {
    const column = Math.floor(x), row = Math.floor(y);
    if (column < 0 || column >= this.width || row < 0 || row >= this.height) return false;
    for (let k = this.colStart[column]; k < this.colStart[column + 1]; k++) {
      if (row < this.ys[2 * k]) return false;
      if (row < this.ys[2 * k + 1]) return true;
    }
    return false;
  }

  // Column-major 0/1 bytes (index x * height + y), as COCO lays masks out.
  toBits() {
    const bits = new Uint8Array(this.width * this.height);
    for (let x = 0; x < this.width; x++) {
      for (let k = this.colStart[x]; k < this.colStart[x + 1]; k++) {
        bits.fill(1, x * this.height + this.ys[2 * k], x * this.height + this.ys[2 * k + 1]);
      }
    }
    return bits;
  }

  // The boundary as closed loops along pixel edges (outer loops clockwise on screen, holes the other
  // way), built once; fill it with "evenodd" (or "nonzero") and stroke it for the outline.
  get path() {
    if (!this._path) {
      this._path = new Path2D();
      for (const loop of boundaryLoops(this)) {
        this._path.moveTo(loop[0], loop[1]);
        for (let i = 2; i < loop.length; i += 2) this._path.lineTo(loop[i], loop[i + 1]);
        this._path.closePath();
      }
    }
    return this._path;
  }
}

// Run lengths (COCO order: down each column, starting with 0s) of column-major 0/1 bytes.
export function encodeBits(bits, height, width) {
  const counts = [];
  let value = 0, run = 0;
  const total = height * width;
  for (let i = 0; i < total; i++) {
    if (bits[i] !== value) { counts.push(run); run = 0; value = bits[i]; }
    run += 1;
  }
  counts.push(run);
  return counts;
}

// Set (value 1) or clear (0) a disc of radius r centred at (cx, cy) in column-major bits.
export function stampDisc(bits, height, width, cx, cy, r, value) {
  const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(width - 1, Math.ceil(cx + r));
  for (let x = x0; x <= x1; x++) {
    const dx = x + 0.5 - cx;
    if (Math.abs(dx) > r) continue;
    const half = Math.sqrt(r * r - dx * dx);
    const y0 = Math.max(0, Math.ceil(cy - half - 0.5)), y1 = Math.min(height - 1, Math.floor(cy + half - 0.5));
    if (y1 >= y0) bits.fill(value, x * height + y0, x * height + y1 + 1);
  }
}

// Discs along a polyline [[x, y], ...] with radius r, spaced closely enough to leave no gaps.
export function stampStroke(bits, height, width, points, r, value) {
  const spacing = Math.max(0.5, r / 3);
  points.forEach(([x, y], index) => {
    if (index === 0) { stampDisc(bits, height, width, x, y, r, value); return; }
    const [px, py] = points[index - 1];
    const steps = Math.max(1, Math.ceil(Math.hypot(x - px, y - py) / spacing));
    for (let s = 1; s <= steps; s++) stampDisc(bits, height, width, px + ((x - px) * s) / steps, py + ((y - py) * s) / steps, r, value);
  });
}

// Share of the image that none of the shapes covers (0..1).
export function uncoveredShare(shapes, width, height) {
  if (!width || !height) return 0;
  let covered = 0;
  const starts = [], ends = [];
  for (let x = 0; x < width; x++) {
    starts.length = 0; ends.length = 0;
    for (const shape of shapes) {
      for (let k = shape.colStart[x]; k < shape.colStart[x + 1]; k++) { starts.push(shape.ys[2 * k]); ends.push(shape.ys[2 * k + 1]); }
    }
    if (!starts.length) continue;
    const order = starts.map((_, i) => i).sort((a, b) => starts[a] - starts[b]);
    let s = starts[order[0]], e = ends[order[0]];
    for (const i of order) {
      if (starts[i] > e) { covered += e - s; s = starts[i]; e = ends[i]; } else e = Math.max(e, ends[i]);
    }
    covered += e - s;
  }
  return 1 - covered / (width * height);
}

// ---------------------------------------------------------------------------------------- outlines
// Every boundary edge, oriented with the mask on its right (clockwise on screen), chained into loops.
// Vertices are found through an open-addressing hash of typed arrays (a Map is several times slower).
function boundaryLoops(shape) {
  const { width, colStart, ys } = shape;
  const runs = colStart[width];
  const capacity = 6 * runs + 8;
  const sx = new Int32Array(capacity), sy = new Int32Array(capacity), ex = new Int32Array(capacity), ey = new Int32Array(capacity);
  let count = 0;
  const add = (a, b, c, d) => { sx[count] = a; sy[count] = b; ex[count] = c; ey[count] = d; count += 1; };
  for (let x = 0; x < width; x++) {
    for (let k = colStart[x]; k < colStart[x + 1]; k++) {
      add(x, ys[2 * k], x + 1, ys[2 * k]);               // top edge, rightwards
      add(x + 1, ys[2 * k + 1], x, ys[2 * k + 1]);       // bottom edge, leftwards
    }
  }
  for (let x = 0; x <= width; x++) {
    const l0 = x > 0 ? colStart[x - 1] : 0, l1 = x > 0 ? colStart[x] : 0;
    const r0 = x < width ? colStart[x] : 0, r1 = x < width ? colStart[x + 1] : 0;
    difference(ys, r0, r1, l0, l1, (a, b) => add(x, b, x, a));  // mask only right of line x: upwards
    difference(ys, l0, l1, r0, r1, (a, b) => add(x, a, x, b));  // mask only left of it: downwards
  }
  const stride = width + 1;
  const bits = Math.max(4, Math.ceil(Math.log2(2 * count + 2)));
  const mask = (1 << bits) - 1;
  const slotKey = new Int32Array(mask + 1).fill(-1), slotEdge = new Int32Array(mask + 1);
  const nextSame = new Int32Array(count).fill(-1), used = new Uint8Array(count);
  const slot = (key) => {
    let h = Math.imul(key, 0x9e3779b1) >>> (32 - bits);
    while (slotKey[h] !== -1 && slotKey[h] !== key) h = (h + 1) & mask;
    return h;
  };
  for (let e = 0; e < count; e++) {
    const h = slot(sy[e] * stride + sx[e]);
    if (slotKey[h] === -1) slotKey[h] = sy[e] * stride + sx[e]; else nextSame[e] = slotEdge[h];
    slotEdge[h] = e;
  }
  const loops = [];
  for (let first = 0; first < count; first++) {
    if (used[first]) continue;
    const loop = [sx[first], sy[first]];
    let e = first;
    while (e >= 0) {
      used[e] = 1;
      const x = ex[e], y = ey[e], n = loop.length;
      if (n >= 4 && ((loop[n - 4] === loop[n - 2] && loop[n - 2] === x) || (loop[n - 3] === loop[n - 1] && loop[n - 1] === y))) {
        loop[n - 2] = x; loop[n - 1] = y;  // same direction: extend the last segment
      } else loop.push(x, y);
      const h = slot(y * stride + x);
      let candidate = slotKey[h] === -1 ? -1 : slotEdge[h];
      while (candidate >= 0 && used[candidate]) candidate = nextSame[candidate];
      e = candidate;
    }
    loops.push(loop);
  }
  return loops;
}

// Intervals of runs a0..a1 minus runs b0..b1 (both sorted, disjoint, [y0, y1) pairs in ys).
function difference(ys, a0, a1, b0, b1, emit) {
  let j = b0;
  for (let i = a0; i < a1; i++) {
    let s = ys[2 * i];
    const e = ys[2 * i + 1];
    while (j < b1 && ys[2 * j + 1] <= s) j++;
    for (let k = j; s < e; k++) {
      if (k >= b1 || ys[2 * k] >= e) { emit(s, e); break; }
      if (ys[2 * k] > s) emit(s, ys[2 * k]);
      s = Math.max(s, ys[2 * k + 1]);
    }
  }
}
