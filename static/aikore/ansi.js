// ANSI SGR colours -> DOM spans (textContent only: log text is never parsed as HTML).
// Other escape sequences (cursor moves, erase line, OSC titles) are dropped.

// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[()#][0-9A-Za-z]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]/g;

export const initialState = () => ({ fg: null, bg: null, b: false, d: false, i: false, u: false, s: false, inv: false });

// 16 base colours: the same hues on both themes, tuned to be readable on light and dark logs.
const BASE = ["#3b3b3b", "#d9363e", "#3f9a3f", "#b58900", "#3a78d6", "#b045b5", "#1a9aa8", "#a0a0a0",
  "#707070", "#f0545c", "#5cc45c", "#d9a800", "#5c9cf5", "#d36ad8", "#2cc2d0", "#e8e8e8"];

function colour256(n) {
  if (n < 16) return BASE[n];
  if (n < 232) {
    const v = [0, 95, 135, 175, 215, 255];
    n -= 16;
    return `rgb(${v[Math.floor(n / 36)]},${v[Math.floor(n / 6) % 6]},${v[n % 6]})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

function applySgr(params, st) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => parseInt(p || "0", 10));
  for (let k = 0; k < codes.length; k++) {
    const c = codes[k];
    if (c === 0) Object.assign(st, initialState());
    else if (c === 1) st.b = true;
    else if (c === 2) st.d = true;
    else if (c === 3) st.i = true;
    else if (c === 4) st.u = true;
    else if (c === 7) st.inv = true;
    else if (c === 9) st.s = true;
    else if (c === 22) st.b = st.d = false;
    else if (c === 23) st.i = false;
    else if (c === 24) st.u = false;
    else if (c === 27) st.inv = false;
    else if (c === 29) st.s = false;
    else if (c >= 30 && c <= 37) st.fg = BASE[c - 30];
    else if (c >= 90 && c <= 97) st.fg = BASE[c - 90 + 8];
    else if (c >= 40 && c <= 47) st.bg = BASE[c - 40];
    else if (c >= 100 && c <= 107) st.bg = BASE[c - 100 + 8];
    else if (c === 39) st.fg = null;
    else if (c === 49) st.bg = null;
    else if (c === 38 || c === 48) {
      let colour = null;
      if (codes[k + 1] === 5) { colour = colour256(codes[k + 2] & 255); k += 2; }
      else if (codes[k + 1] === 2) { colour = `rgb(${codes[k + 2] & 255},${codes[k + 3] & 255},${codes[k + 4] & 255})`; k += 4; }
      if (c === 38) st.fg = colour; else st.bg = colour;
    }
  }
}

function span(text, st) {
  const plain = !st.fg && !st.bg && !st.b && !st.d && !st.i && !st.u && !st.s && !st.inv;
  if (plain) return document.createTextNode(text);
  const node = document.createElement("span");
  node.textContent = text;
  node.className = ["b", "d", "i", "u", "s"].filter((k) => st[k]).join(" ");
  const fg = st.inv ? st.bg || "var(--log-bg)" : st.fg;
  const bg = st.inv ? st.fg || "var(--log-fg)" : st.bg;
  if (fg) node.style.color = fg;
  if (bg) node.style.backgroundColor = bg;
  return node;
}

// Render one line into `target` starting from `state`; returns the state at the end of the line.
export function renderAnsi(line, state, target) {
  const st = { ...state };
  let last = 0;
  ESCAPES.lastIndex = 0;
  for (let m = ESCAPES.exec(line); m; m = ESCAPES.exec(line)) {
    if (m.index > last) target.append(span(line.slice(last, m.index), st));
    if (m[2] === "m") applySgr(m[1], st);
    last = ESCAPES.lastIndex;
  }
  if (last < line.length) target.append(span(line.slice(last), st));
  return st;
}

export function stripAnsi(line) {
  return line.replace(ESCAPES, "");
}
