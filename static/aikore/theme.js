// Applied before the page paints: the user's saved theme, else the system's (prefers-color-scheme).
(function () {
  try {
    var saved = localStorage.getItem("aikore-theme");
    if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
  } catch (e) { /* storage disabled: follow the system */ }
})();
