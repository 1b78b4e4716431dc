// Starts Swagger UI on /api/docs (templates/api/docs.html) from a file, not inline code (the CSP).
// "Try it out" sends the session's CSRF token with writes, as the dashboard does.
(function () {
  const config = JSON.parse(document.getElementById("swagger-settings").textContent);
  const meta = document.querySelector('meta[name="csrf-token"]');
  config.dom_id = "#swagger-ui";
  config.presets = [window.SwaggerUIBundle.presets.apis];
  config.requestInterceptor = (request) => {
    if (meta && meta.content) request.headers["X-CSRFToken"] = meta.content;
    return request;
  };
  window.SwaggerUIBundle(config);
})();
