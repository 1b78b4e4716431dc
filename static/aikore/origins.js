// AiKore's origins in the browser (proxy/origins.py): the server names origins by id ("apps",
// "port:<n>", "host:<slug>") and never builds a URL from a Host header; the browser combines an id
// with its own location. Port-based origins keep the page's scheme and host name; host names under
// AIKORE_APPS_DOMAIN keep its scheme and port, and the dashboard is then at the domain itself.
// Behind a TLS proxy (AIKORE_PUBLIC_URL) the control plane is that URL and every app origin takes
// its scheme.

export function config() {
  const node = document.getElementById("aikore-origins");
  return node ? JSON.parse(node.textContent) : {};
}

const samePort = () => (location.port ? `:${location.port}` : "");
const scheme = (cfg) => cfg.scheme || location.protocol;

// The origin of an app origin id, or "" for an unknown id.
export function appOrigin(id, cfg = config()) {
  if (id === "apps") return `${scheme(cfg)}//${location.hostname}:${cfg.apps_port}`;
  if (/^port:\d{1,5}$/.test(id)) return `${scheme(cfg)}//${location.hostname}:${id.slice(5)}`;
  if (/^host:[a-z0-9-]+$/.test(id) && cfg.apps_domain) return `${scheme(cfg)}//${id.slice(5)}.${cfg.apps_domain}${samePort()}`;
  return "";
}

// The control plane, seen from a page on app origin `current` (or from the control plane itself).
export function controlOrigin(current = "", cfg = config()) {
  if (cfg.control_url) return cfg.control_url;
  if (current.startsWith("host:") && cfg.apps_domain) return `${scheme(cfg)}//${cfg.apps_domain}${samePort()}`;
  return `${scheme(cfg)}//${location.hostname}:${cfg.control_port}`;
}

// The URL of an instance's app, from its API summary.
export function appUrl(inst, cfg = config()) {
  const origin = appOrigin(inst.app_origin || "apps", cfg);
  return origin ? origin + (inst.app_path || `/instance/${inst.slug}/`) : `/instance/${inst.slug}/`;
}
