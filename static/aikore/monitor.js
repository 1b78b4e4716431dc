// System monitoring: uPlot charts of the sampler's last 10 minutes (history on connect, then one
// sample per push over /ws/system/), per-instance CPU/RAM/VRAM bars, and a "no GPU" state.

import uPlot from "uplot";
import { api, liveSocket, el, $, formatBytes } from "./util.js";
import { store } from "./instances.js";

const WINDOW_SECONDS = 600;
const pct = (used, total) => (total ? (100 * used) / total : null);
const num = (v) => (typeof v === "number" && isFinite(v) ? v : null);
const fmt = (v, unit, digits = 0) => (v === null || v === undefined ? "–" : `${v.toFixed(digits)}${unit}`);

// Host values, tolerant of the collector's exact key names.
function hostValues(sample) {
  const h = (sample && sample.host) || {};
  const mem = h.memory || {};
  const cpu = h.cpu || {};
  const memTotal = num(mem.total ?? h.memory_total);
  const memUsed = num(mem.used ?? h.memory_used);
  return {
    cpu: num(cpu.percent ?? h.cpu_percent),
    cpuCount: num(cpu.count ?? cpu.logical ?? h.cpu_count) || 1,
    memUsed,
    memTotal,
    memPercent: num(mem.percent ?? h.memory_percent) ?? pct(memUsed, memTotal),
  };
}

const gpusOf = (sample) => (sample && sample.gpu && sample.gpu.gpus) || [];
const gpuIn = (sample, index) => gpusOf(sample).find((g) => g.index === index) || null;

// NVML names GPU processes by host PID. In a container with its own PID namespace those PIDs match
// nothing here (monitoring/collectors.py: pid_match "unavailable"): per-instance VRAM is then only
// known for a GPU that a single running instance uses. Say so, and how to get it (README: Docker).
export function vramNote(sample) {
  const gpu = (sample && sample.gpu) || {};
  if (!gpu.available || gpu.pid_match !== "unavailable") return "";
  return "Per-instance VRAM is unavailable here: AiKore runs in a PID namespace of its own (a container), " +
    "so the GPU driver's process IDs match none of its processes; a GPU used by a single running instance " +
    "is counted for that instance. To see each instance's VRAM, run the container with pid: host " +
    "(docker-compose.yml) or --pid=host (docker/podman run); the README's Docker section says what that allows.";
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// One chart: a title with the current value, a uPlot with 1-2 series sharing the sampler's clock.
class Chart {
  constructor(parent, { key, title, series, now }) {
    Object.assign(this, { key, series, now });
    this.box = el("div.chart", { dataset: { chart: key, points: "0" } },
      el("h4", {}, el("span", {}, title), this.nowEl = el("span.now")),
      this.plotEl = el("div.plot"));
    parent.append(this.box);
    const axisStroke = cssVar("--chart-axis");
    const grid = { stroke: cssVar("--chart-grid"), width: 1 };
    const scales = { x: { time: true } };
    const axes = [{ stroke: axisStroke, grid, ticks: grid, size: 28, font: "11px system-ui" }];
    for (const [i, s] of series.entries()) {
      if (!scales[s.scale]) {
        scales[s.scale] = s.range ? { range: s.range } : { range: (u, min, max) => [0, Math.max(1, max * 1.1)] };
        axes.push({
          scale: s.scale, stroke: axisStroke, grid: i === 0 ? grid : { show: false }, ticks: grid,
          side: i === 0 ? 3 : 1, size: 50, font: "11px system-ui", values: (u, vals) => vals.map((v) => v + s.unit),
        });
      }
    }
    this.plot = new uPlot({
      width: Math.max(200, this.plotEl.clientWidth || 260),
      height: 120,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales,
      axes,
      series: [{}, ...series.map((s) => ({
        label: s.label, scale: s.scale, stroke: cssVar(s.color), width: 1.5,
        fill: s.fill ? cssVar(s.color) + "22" : undefined, points: { show: false }, spanGaps: false,
      }))],
    }, [[], ...series.map(() => [])], this.plotEl);
    this.resizer = new ResizeObserver(() => {
      const width = this.plotEl.clientWidth;
      if (width > 0 && Math.abs(width - this.plot.width) > 1) this.plot.setSize({ width, height: 120 });
    });
    this.resizer.observe(this.plotEl);
  }

  update(samples) {
    const xs = samples.map((s) => s.ts);
    const data = [xs, ...this.series.map((s) => samples.map((sample) => s.value(sample)))];
    this.plot.setData(data);
    this.box.dataset.points = String(xs.length);
    this.nowEl.textContent = samples.length ? this.now(samples[samples.length - 1]) : "";
  }

  destroy() {
    this.resizer.disconnect();
    this.plot.destroy();
    this.box.remove();
  }
}

export class Monitor {
  constructor() {
    this.samples = [];
    this.charts = [];
    this.gpuKey = null;
    this.dirty = false;
    this.chartsEl = $("#charts");
    document.addEventListener("visibilitychange", () => this.schedule());
    store.on(() => this.renderUsage());
  }

  start() {
    let everUp = false;
    let failures = 0;
    this.socket = liveSocket(() => "/ws/system/", {
      onMessage: (msg) => {
        if (msg.type === "history") this.setHistory(msg.samples || []);
        else if (msg.type === "sample") this.add(msg.sample);
      },
      onState: (state) => {
        everUp ||= state === "up";
        if (state === "down" && !everUp && ++failures >= 2) {
          this.socket.close();
          this.poll(true);
        }
      },
    });
  }

  // Fallback without websockets: the REST API's history, then its latest sample every 2 s.
  async poll(first = false) {
    try {
      const stats = await api("GET", first ? `/system/stats?history=${WINDOW_SECONDS}` : "/system/stats");
      if (first) this.setHistory(stats.history || [stats.latest]);
      else this.add(stats.latest);
    } catch { /* try again */ }
    setTimeout(() => this.poll(false), 2000);
  }

  setHistory(samples) {
    this.samples = samples.filter((s) => s && typeof s.ts === "number");
    this.schedule();
  }

  add(sample) {
    if (!sample || typeof sample.ts !== "number") return;
    const last = this.samples[this.samples.length - 1];
    if (last && sample.ts <= last.ts) return;
    this.samples.push(sample);
    this.schedule();
  }

  schedule() {
    if (this.dirty || document.hidden) return;
    this.dirty = true;
    requestAnimationFrame(() => { this.dirty = false; this.render(); });
  }

  // Rebuild the charts (theme change, GPUs appearing).
  rebuild() {
    for (const chart of this.charts) chart.destroy();
    this.charts = [];
    this.gpuKey = null;
    this.render();
  }

  render() {
    const cutoff = (this.samples.length ? this.samples[this.samples.length - 1].ts : 0) - WINDOW_SECONDS;
    let drop = 0;
    while (drop < this.samples.length && this.samples[drop].ts < cutoff) drop++;
    if (drop) this.samples.splice(0, drop);
    const latest = this.samples[this.samples.length - 1];
    if (!latest) return;
    const gpus = gpusOf(latest);
    const gpuKey = gpus.map((g) => `${g.index}:${g.name}`).join("|");
    if (gpuKey !== this.gpuKey) this.createCharts(gpus, gpuKey);
    for (const chart of this.charts) chart.update(this.samples);
    this.renderGpuState(latest);
    this.renderSummary(latest);
    this.renderUsage();
  }

  createCharts(gpus, gpuKey) {
    for (const chart of this.charts) chart.destroy();
    this.gpuKey = gpuKey;
    const add = (opts) => this.charts.push(new Chart(this.chartsEl, opts));
    add({
      key: "cpu", title: "CPU",
      series: [{ label: "CPU", scale: "%", unit: "%", range: [0, 100], color: "--c1", fill: true, value: (s) => hostValues(s).cpu }],
      now: (s) => fmt(hostValues(s).cpu, "%"),
    });
    add({
      key: "ram", title: "RAM",
      series: [{ label: "RAM", scale: "%", unit: "%", range: [0, 100], color: "--c3", fill: true, value: (s) => hostValues(s).memPercent }],
      now: (s) => { const h = hostValues(s); return `${formatBytes(h.memUsed)} / ${formatBytes(h.memTotal)}`; },
    });
    for (const gpu of gpus) {
      const i = gpu.index;
      add({
        key: `gpu${i}-load`, title: `GPU ${i} · ${gpu.name} — load & VRAM`,
        series: [
          { label: "Utilisation", scale: "%", unit: "%", range: [0, 100], color: "--c1", value: (s) => num(gpuIn(s, i)?.utilization_gpu) },
          { label: "VRAM", scale: "%", unit: "%", range: [0, 100], color: "--c4", value: (s) => { const g = gpuIn(s, i); return g ? pct(g.memory_used, g.memory_total) : null; } },
        ],
        now: (s) => { const g = gpuIn(s, i) || {}; return `${fmt(num(g.utilization_gpu), "%")} · ${formatBytes(g.memory_used)} / ${formatBytes(g.memory_total)}`; },
      });
      add({
        key: `gpu${i}-power`, title: `GPU ${i} — temperature & power`,
        series: [
          { label: "Temperature", scale: "°C", unit: "°", color: "--c2", value: (s) => num(gpuIn(s, i)?.temperature) },
          { label: "Power", scale: "W", unit: "W", color: "--c3", value: (s) => num(gpuIn(s, i)?.power_draw) },
        ],
        now: (s) => { const g = gpuIn(s, i) || {}; return `${fmt(num(g.temperature), " °C")} · ${fmt(num(g.power_draw), " W")}${g.power_limit ? ` / ${fmt(num(g.power_limit), " W")}` : ""}`; },
      });
    }
  }

  renderGpuState(sample) {
    const gpu = sample.gpu || {};
    const box = $("#gpu-missing");
    const none = !gpu.available || !gpusOf(sample).length;
    box.hidden = !none;
    box.textContent = none
      ? `No GPU detected${gpu.reason ? ` — ${gpu.reason}` : ""}. GPU charts appear when an NVIDIA GPU and its driver are available.`
      : "";
  }

  renderSummary(sample) {
    const h = hostValues(sample);
    const n = gpusOf(sample).length;
    $("#monitor-summary").textContent = `CPU ${fmt(h.cpu, "%")} · RAM ${fmt(h.memPercent, "%")} · ${n ? `${n} GPU${n > 1 ? "s" : ""}` : "no GPU"}`;
  }

  renderUsage() {
    const sample = this.samples[this.samples.length - 1];
    const box = $("#instance-usage");
    const usage = (sample && sample.instances) || {};
    const ids = Object.keys(usage).filter((id) => store.get(id));
    if (!ids.length) { box.replaceChildren(el("p.muted", {}, "No running instance.")); return; }
    const h = hostValues(sample);
    const vramTotal = gpusOf(sample).reduce((sum, g) => sum + (num(g.memory_total) || 0), 0);
    const bar = (label, value, fraction) => el("div.bar", { title: label },
      el("i", { style: `width: ${Math.max(0, Math.min(100, (fraction || 0) * 100)).toFixed(1)}%` }), el("span", {}, label));
    box.replaceChildren(...ids.sort((a, b) => store.get(a).name.localeCompare(store.get(b).name)).map((id) => {
      const u = usage[id] || {};
      const cpu = num(u.cpu_percent);
      return el("div.row", { dataset: { instance: id } },
        el("strong", {}, store.get(id).name),
        bar(`CPU ${fmt(cpu, "%")}`, cpu, cpu === null ? 0 : cpu / (100 * h.cpuCount)),
        bar(`RAM ${formatBytes(u.rss)}`, u.rss, h.memTotal ? (u.rss || 0) / h.memTotal : 0),
        bar(vramTotal ? `VRAM ${formatBytes(u.vram)}` : "VRAM –", u.vram, vramTotal ? (u.vram || 0) / vramTotal : 0));
    }));
    const note = vramNote(sample);
    if (note) box.append(el("p.muted.vram-note", {}, note));
  }
}
