// The create form's app catalogue: the blueprints that make instances, as cards grouped by category,
// searchable and filterable, each with what a user chooses by: what it is, its GPU memory need, how
// it is reached, what it needs besides Python, what it downloads at first start, its home page.
// Keyboard: the cards are one radio group (Tab enters it at the chosen app, arrow keys move between
// the visible ones); Enter in the search box picks the first match. The chosen id goes into the
// form's hidden `blueprint` input.

import { el } from "./util.js";

const ORDER = ["Image", "Video", "Training", "Audio", "LLM", "Tools"];
const REACHED = {
  strip: "in AiKore's apps origin, under /instance/<name>/",
  keep: "in AiKore's apps origin, under /instance/<name>/ (the app serves that path itself)",
  origin: "on a port or host name of its own (it needs the root of an origin)",
};

function categoryRank(category) {
  const i = ORDER.indexOf(category);
  return i === -1 ? ORDER.length : i;
}

function safeUrl(url) {
  return /^https?:\/\//i.test(url || "") ? url : "";
}

export class Catalogue {
  // root: the element holding the catalogue's markup (#bp-catalogue); input: the hidden form field;
  // onPick(blueprint): called when the user picks an app.
  constructor(root, input, { onPick = () => {} } = {}) {
    this.root = root;
    this.input = input;
    this.onPick = onPick;
    this.search = root.querySelector("#bp-search");
    this.chips = root.querySelector("#bp-categories");
    this.list = root.querySelector("#bp-list");
    this.summary = root.querySelector("#bp-desc");
    this.empty = root.querySelector("#bp-empty");
    this.blueprints = [];
    this.category = "";
    this.locked = false;
    this.search.addEventListener("input", () => this.filter());
    this.search.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault(); // not the form's submit: pick the first match
      const first = this.cards().find((card) => !card.hidden);
      if (first) { this.select(first.dataset.id, true); first.querySelector("input").focus(); }
    });
    this.list.addEventListener("change", (event) => {
      if (event.target.name === "bp-choice") this.select(event.target.value, true);
    });
  }

  cards() {
    return [...this.list.querySelectorAll(".bp-card")];
  }

  // Only apps are offered (functions.sh is a library, test scripts are tests). `selected` is the
  // instance's blueprint when editing (`locked`: shown alone, not changeable).
  fill(blueprints, selected = "", locked = false) {
    this.blueprints = blueprints.filter((b) => (b.kind || "app") === "app");
    if (selected && !this.blueprints.some((b) => b.id === selected)) {
      this.blueprints.push({ id: selected, name: selected, category: "", description: "(blueprint no longer available)" });
    }
    this.blueprints.sort((a, b) => categoryRank(a.category) - categoryRank(b.category)
      || (a.category || "").localeCompare(b.category || "") || (a.name || a.id).localeCompare(b.name || b.id));
    const categories = [...new Set(this.blueprints.map((b) => b.category || "Other"))];
    this.chips.replaceChildren(...["", ...categories].map((category) => el("button.chip-button", {
      type: "button", "aria-pressed": String(category === this.category), dataset: { category },
      onclick: () => { this.category = category; this.filter(); },
    }, category || "All")));
    const nodes = [];
    let group = null;
    for (const bp of this.blueprints) {
      const category = bp.category || "Other";
      if (category !== group) {
        group = category;
        nodes.push(el("p.bp-group", { dataset: { category } }, category));
      }
      nodes.push(this.card(bp));
    }
    this.list.replaceChildren(...nodes);
    this.search.value = "";
    this.input.value = "";
    this.select(selected, false);
    this.setLocked(locked);
  }

  card(bp) {
    const id = `bp-card-${bp.id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const facts = [];
    if (bp.vram) facts.push(el("span.bp-fact", {}, el("b", {}, "GPU memory: "), bp.vram));
    if (bp.proxy_mode) facts.push(el("span.bp-fact", {}, el("b", {}, "Opens: "), REACHED[bp.proxy_mode] || bp.proxy_mode));
    if (bp.requires) facts.push(el("span.bp-fact", {}, el("b", {}, "Needs: "), bp.requires));
    if (bp.downloads) facts.push(el("span.bp-fact", {}, el("b", {}, "Downloads: "), bp.downloads));
    const home = safeUrl(bp.homepage);
    const text = [bp.name, bp.id, bp.category, bp.description, bp.requires].filter(Boolean).join(" ").toLowerCase();
    return el("label.bp-card", { dataset: { id: bp.id, category: bp.category || "Other", text } },
      el("input", { type: "radio", name: "bp-choice", value: bp.id, "aria-labelledby": `${id}-name`,
        "aria-describedby": `${id}-about` }),
      el("span.bp-head", {},
        el("strong.bp-name", { id: `${id}-name` }, bp.name || bp.id),
        bp.category ? el("span.chip", {}, bp.category) : null,
        bp.custom ? el("span.chip", {}, "custom") : null,
        home ? el("a.bp-home", { href: home, target: "_blank", rel: "noopener noreferrer",
          title: `${bp.name || bp.id}'s home page` }, "home page ↗") : null),
      el("span.bp-about", { id: `${id}-about` },
        el("span.bp-text", {}, bp.description || ""),
        ...facts));
  }

  select(id, byUser) {
    const bp = this.blueprints.find((b) => b.id === id);
    this.input.value = bp ? bp.id : "";
    for (const card of this.cards()) {
      const input = card.querySelector("input");
      input.checked = card.dataset.id === this.input.value;
    }
    this.summary.textContent = bp ? `${bp.name || bp.id}: ${bp.description || ""}${bp.custom ? " (custom blueprint)" : ""}` : "";
    if (bp && byUser) this.onPick(bp);
  }

  // Editing an instance, or making a satellite (it runs its parent's app): only the app it runs.
  setLocked(locked) {
    this.locked = locked;
    this.root.classList.toggle("locked", locked);
    this.search.hidden = locked;
    this.chips.hidden = locked;
    for (const input of this.list.querySelectorAll("input")) input.disabled = locked;
    this.input.disabled = locked;
    this.filter();
  }

  filter() {
    const words = this.search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const card of this.cards()) {
      const visible = this.locked ? card.dataset.id === this.input.value
        : (!this.category || card.dataset.category === this.category) && words.every((w) => card.dataset.text.includes(w));
      card.hidden = !visible;
      if (visible) shown++;
    }
    for (const heading of this.list.querySelectorAll(".bp-group")) {
      heading.hidden = this.locked || !this.cards().some((c) => !c.hidden && c.dataset.category === heading.dataset.category);
    }
    for (const chip of this.chips.querySelectorAll("button")) {
      chip.setAttribute("aria-pressed", String(chip.dataset.category === this.category));
    }
    this.empty.hidden = shown > 0;
  }
}
