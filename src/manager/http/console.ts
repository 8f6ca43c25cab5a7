import type { FastifyInstance } from "fastify";

// The console's place at "/". Until the web UI is built this page points to
// the API docs.
export function consoleRoutes() {
  return async (app: FastifyInstance) => {
    app.get("/", { schema: { hide: true } }, async (_req, reply) =>
      reply
        .type("text/html; charset=utf-8")
        .send(
          `<!doctype html><html><head><meta charset="utf-8"><title>Damselfly manager</title></head><body style="font-family:sans-serif;max-width:40em;margin:3em auto">` +
            `<h1>Damselfly manager</h1><p>The REST API is under <code>/api/v1</code>, the open API (personal access tokens) under <code>/oapi/v1</code>.</p>` +
            `<p><a href="/docs">API documentation</a> · <a href="/api/v1/openapi.json">OpenAPI JSON</a></p></body></html>`,
        ),
    );
  };
}
