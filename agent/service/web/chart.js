// Lab trend charts drawn as SVG (no library): the reference range as a shaded band, the values as
// a line with one focusable point each; hover or focus shows value and time, a click or Enter
// opens the point's Observation.

import { el, svg, formatTime } from "./dom.js";

// Drawn for a card about 22rem wide (two charts side by side): text stays legible when scaled.
const W = 380;
const H = 170;
const M = { left: 40, right: 10, top: 10, bottom: 22 };

function niceTicks(lo, hi, count = 5) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const step = [1, 2, 2.5, 5, 10].map((f) => f * 10 ** Math.floor(Math.log10(raw))).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function shortDate(ms) {
  return new Date(ms).toLocaleDateString(undefined, { year: "numeric", month: "short" });
}

function rangeText(low, high, unit) {
  const has = (v) => Number.isFinite(v);
  const text = has(low) && has(high) ? `${low}–${high}` : has(high) ? `≤ ${high}` : has(low) ? `≥ ${low}` : "";
  return text && `${text} ${unit}`.trim();
}

function numeric(value) {
  return value === null || value === undefined || value === "" ? null : Number(value);
}

/**
 * An SVG chart of one trend ({analyte, unit, points: [{time, value, reference}], referenceRange}).
 * `tip` is the shared tooltip element; `onPoint(reference)` opens a point's resource.
 */
// The point whose tip shows: the tip is placed in viewport coordinates, so a scroll moves it along.
let shown = null;

function placeTip(tip, dot) {
  const box = dot.getBoundingClientRect();
  // CSSOM (allowed by the CSP, unlike style attributes): the tip sits above the point.
  tip.style.left = `${Math.round(box.left + box.width / 2 + 8)}px`;
  tip.style.top = `${Math.round(box.top - 30)}px`;
}

window.addEventListener("scroll", () => shown && placeTip(shown.tip, shown.dot), { passive: true, capture: true });

export function trendChart(trend, { tip, onPoint }) {
  const points = (trend.points || [])
    .map((p) => ({ ...p, t: Date.parse(p.time), v: numeric(p.value) }))
    .filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v))
    .sort((a, b) => a.t - b.t);
  const range = trend.referenceRange || {};
  const low = numeric(range.low);
  const high = numeric(range.high);
  const unit = trend.unit || "";

  const values = points.map((p) => p.v);
  for (const bound of [low, high]) if (Number.isFinite(bound)) values.push(bound);
  let yLo = Math.min(...values);
  let yHi = Math.max(...values);
  const pad = (yHi - yLo || Math.abs(yHi) || 1) * 0.1;
  yLo -= pad;
  yHi += pad;
  let tLo = points.length ? points[0].t : 0;
  let tHi = points.length ? points[points.length - 1].t : 1;
  if (tHi === tLo) {
    tLo -= 86400000;
    tHi += 86400000;
  }
  const x = (t) => M.left + ((t - tLo) / (tHi - tLo)) * (W - M.left - M.right);
  const y = (v) => M.top + (1 - (v - yLo) / (yHi - yLo)) * (H - M.top - M.bottom);

  const title = `${trend.analyte}${unit ? ` (${unit})` : ""}`;
  const chart = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": `${title}: ${points.length} values`,
    testid: "trend-chart",
  });

  if (Number.isFinite(low) || Number.isFinite(high)) {
    const top = y(Number.isFinite(high) ? high : yHi);
    const bottom = y(Number.isFinite(low) ? low : yLo);
    chart.append(
      svg("rect", {
        class: "ref-band",
        testid: "ref-band",
        x: M.left,
        y: top,
        width: W - M.left - M.right,
        height: Math.max(bottom - top, 0),
      }, svg("title", { text: `Reference range ${rangeText(low, high, unit)}` })),
    );
  }
  for (const tick of niceTicks(yLo, yHi)) {
    chart.append(
      svg("line", { class: "axis", x1: M.left, x2: W - M.right, y1: y(tick), y2: y(tick) }),
      svg("text", { class: "tick", x: M.left - 6, y: y(tick) + 3, "text-anchor": "end", text: String(tick) }),
    );
  }
  if (points.length) {
    chart.append(
      svg("text", { class: "tick", x: M.left, y: H - 6, text: shortDate(points[0].t) }),
      svg("text", { class: "tick", x: W - M.right, y: H - 6, "text-anchor": "end", text: shortDate(points[points.length - 1].t) }),
      svg("path", { class: "series", d: points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ") }),
    );
  }

  for (const p of points) {
    const label = `${p.v} ${unit} on ${formatTime(p.time)}`.replace(/\s+/g, " ");
    const out = (Number.isFinite(low) && p.v < low) || (Number.isFinite(high) && p.v > high);
    const dot = svg("circle", { class: out ? "point out" : "point", cx: x(p.t), cy: y(p.v), r: 5 });
    const link = svg(
      "a",
      {
        href: "#",
        role: "link",
        "aria-label": `${trend.analyte} ${label}`,
        testid: "trend-point",
        "data-reference": p.reference || "",
      },
      dot,
    );
    const show = () => {
      tip.textContent = label;
      tip.hidden = false;
      shown = { tip, dot };
      placeTip(tip, dot);
    };
    const hide = () => {
      tip.hidden = true;
      shown = null;
    };
    link.addEventListener("mouseenter", show);
    link.addEventListener("focus", show);
    link.addEventListener("mouseleave", hide);
    link.addEventListener("blur", hide);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      hide();
      if (p.reference) onPoint(p.reference);
    });
    chart.append(link);
  }

  const caption = [];
  if (Number.isFinite(low) || Number.isFinite(high)) caption.push(`reference ${rangeText(low, high, unit)}`);
  if (trend.direction) caption.push(String(trend.direction));
  return el(
    "figure",
    { class: "trend", testid: "trend", "data-code": trend.code || "" },
    el("h3", { text: title }),
    chart,
    el("figcaption", { class: "meta", text: caption.join(" · ") }),
  );
}
