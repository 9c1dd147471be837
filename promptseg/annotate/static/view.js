// The view: image pixels -> canvas pixels by a scale and an offset (screen = image * scale + offset).
"use strict";

export const MIN_SCALE = 1 / 64, MAX_SCALE = 64;

export class View {
  constructor() { this.scale = 1; this.tx = 0; this.ty = 0; this.fitted = true; }

  // Fit a width x height image inside a canvas of cw x ch (CSS pixels), centred, with a margin.
  fit(width, height, cw, ch, margin = 12) {
    this.scale = Math.max(MIN_SCALE, Math.min((cw - 2 * margin) / width, (ch - 2 * margin) / height));
    this.tx = (cw - width * this.scale) / 2;
    this.ty = (ch - height * this.scale) / 2;
    this.fitted = true;
  }

  // Zoom to `scale`, keeping the image point under canvas point (sx, sy) in place.
  zoomTo(scale, sx, sy) {
    const clamped = Math.max(MIN_SCALE, Math.min(MAX_SCALE, scale));
    const [ix, iy] = this.toImage(sx, sy);
    this.scale = clamped;
    this.tx = sx - ix * clamped;
    this.ty = sy - iy * clamped;
    this.fitted = false;
  }

  pan(dx, dy) { this.tx += dx; this.ty += dy; this.fitted = false; }

  toImage(sx, sy) { return [(sx - this.tx) / this.scale, (sy - this.ty) / this.scale]; }

  toScreen(ix, iy) { return [ix * this.scale + this.tx, iy * this.scale + this.ty]; }

  key() { return `${this.scale.toFixed(6)},${this.tx.toFixed(2)},${this.ty.toFixed(2)}`; }

  // Set a 2D context to draw in image pixels (dpr: device pixels per CSS pixel).
  apply(context, dpr) {
    context.setTransform(dpr * this.scale, 0, 0, dpr * this.scale, dpr * this.tx, dpr * this.ty);
  }
}
