// Swagger UI from the swagger-ui-bundle package, served locally (no CDN; works air-gapped).
window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true });
});
