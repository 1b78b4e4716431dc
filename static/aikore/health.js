// A banner under the top bar while /api/health says AiKore is degraded: low disk space in the
// data dir first (instances fill it with outputs and logs), then any other part that is not right.

const POLL_MS = 15000;
const MB = 1024 * 1024;

export function healthMessage(health) {
  if (!health || health.status === "ok") return "";
  const parts = [];
  if (health.disk && health.disk.low) {
    parts.push(`Low disk space: ${Math.floor(health.disk.free_bytes / MB)} MB free in AiKore's data dir. ` +
      "Free some space (outputs, models, old instances); logs lose output and instances may fail when it runs out.");
  }
  const others = (health.reasons || []).filter((reason) => !reason.startsWith("low disk space"));
  if (others.length) parts.push(`AiKore is degraded: ${others.join("; ")}.`);
  return parts.join(" ");
}

export function startHealthBanner(banner, { interval = POLL_MS } = {}) {
  async function poll() {
    let text = "";
    try {
      const response = await fetch("/api/health", { headers: { Accept: "application/json" } });
      text = healthMessage(await response.json());
    } catch {
      text = ""; // the live-connection indicator already says when AiKore is unreachable
    }
    banner.textContent = text;
    banner.hidden = !text;
  }
  poll();
  return setInterval(poll, interval);
}
