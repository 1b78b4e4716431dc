// Applied before the page paints: data-theme is the user's saved theme, else the system's
// (prefers-color-scheme), which it keeps following while nothing is saved.
(function () {
  var root = document.documentElement;
  var system = window.matchMedia("(prefers-color-scheme: dark)");
  function apply() {
    var saved = null;
    try { saved = localStorage.getItem("aikore-theme"); } catch (e) { /* storage disabled */ }
    if (saved !== "light" && saved !== "dark") saved = null;
    root.dataset.theme = saved || (system.matches ? "dark" : "light");
  }
  apply();
  system.addEventListener("change", apply);
})();
