// How masks look: a colour per class from a fixed palette, fills at the chosen opacity, and outlines
// drawn twice (a dark halo under the colour) so that they stand out on any image.
"use strict";

// Distinct, saturated colours (Okabe-Ito and Tableau-like), class k takes PALETTE[k % 12].
export const PALETTE = [
  [230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25], [145, 30, 180], [245, 130, 48],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 128, 128], [170, 110, 40], [128, 128, 255],
];
export const UNLABELLED_COLOR = [235, 235, 235];
export const LIVE_COLOR = [30, 144, 255];
export const PROPOSAL_COLOR = [255, 200, 0];
export const UNCOVERED_COLOR = [255, 0, 200];

export function classColor(index) {
  return index < 0 ? UNLABELLED_COLOR : PALETTE[index % PALETTE.length];
}

export function rgba(color, alpha) {
  return `rgba(${color[0]},${color[1]},${color[2]},${alpha})`;
}

// Draw one mask (its Shape's Path2D, in image coordinates under the view transform `scale`).
// style: {color, fill (0..1), outline (CSS px), selected, dashed}
export function drawMask(context, path, scale, style) {
  const { color, fill = 0.35, outline = 1.5, selected = false, dashed = false } = style;
  if (fill > 0) {
    context.fillStyle = rgba(color, Math.min(1, selected ? fill + 0.2 : fill));
    context.fill(path, "evenodd");
  }
  if (outline <= 0) return;
  const width = (selected ? outline + 1 : outline) / scale;
  context.lineJoin = "round";
  context.setLineDash([]);
  context.strokeStyle = selected ? "rgba(255,255,255,0.95)" : "rgba(0,0,0,0.75)";
  context.lineWidth = width + (selected ? 4 : 2) / scale;
  context.stroke(path);
  if (dashed) context.setLineDash([6 / scale, 4 / scale]);
  context.strokeStyle = rgba(color, 1);
  context.lineWidth = width;
  context.stroke(path);
  context.setLineDash([]);
}

// A click: a disc of constant screen size, green (foreground) or red (background), white rim.
export function drawPoint(context, sx, sy, foreground) {
  context.beginPath();
  context.arc(sx, sy, 5, 0, 2 * Math.PI);
  context.fillStyle = foreground ? "#2ecc40" : "#ff4136";
  context.fill();
  context.lineWidth = 1.5;
  context.strokeStyle = "#fff";
  context.stroke();
}
