// Starts Swagger UI on /docs. A file rather than the inline script FastAPI's own page has,
// so the Content-Security-Policy allows scripts from this origin only.
window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  layout: 'BaseLayout',
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  // No "valid" badge: it would send the document to a public validator.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
