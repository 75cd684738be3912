// DOM building without markup strings: data only ever becomes text (textContent, attributes).
// No `style` attribute is ever set (CSP style-src 'self'): looks come from classes in app.css.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.setAttribute("class", String(value));
    else if (key === "testid") node.setAttribute("data-testid", String(value));
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "style" || key === "innerHTML") throw new Error(`refusing to set ${key}`);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: el("a", {href, text}, ...children). */
export function el(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, same conventions as el(). */
export function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`missing #${id}`);
  return node;
}

/** A date or instant as the clinician reads it (local time for instants). */
export function formatTime(value) {
  if (!value) return "";
  if (/^\d{4}(-\d{2}){0,2}$/.test(value)) return value;
  const when = new Date(value);
  if (Number.isNaN(when.getTime())) return String(value);
  return when.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

export function statusBadge(status) {
  const known = ["preliminary", "final", "amended", "entered-in-error", "cancelled"];
  const cls = known.includes(status) ? `status status-${status}` : "status";
  return el("span", { class: cls, testid: "status", text: status || "unknown" });
}

export function aiLabel() {
  return el("span", { class: "ai-label", testid: "ai-label", text: "AI-generated" });
}

/** A random id for AG-UI threads and runs (works outside secure contexts too). */
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
