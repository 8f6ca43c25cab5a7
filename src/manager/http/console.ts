import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";

const require = createRequire(import.meta.url);

// dist/console (the Vite build of src/manager/console), found from this file
// whether it runs from dist/src/manager/http or elsewhere in dist.
export function consoleDir(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, "console");
    if (existsSync(join(candidate, "index.html"))) return candidate;
    dir = dirname(dir);
  }
  return undefined;
}

// The console at "/": static files, no server-side rendering; it talks to
// the manager through the REST API like any other client. Without a build
// (`npm run build:console`), "/" says so and points to the API docs.
export function consoleRoutes() {
  return async (app: FastifyInstance) => {
    const dir = consoleDir();
    if (dir) {
      await app.register(require("@fastify/static") as typeof import("@fastify/static").default, {
        root: dir,
        prefix: "/",
        index: ["index.html"],
        wildcard: false,
        decorateReply: false,
      });
      return;
    }
    app.get("/", { schema: { hide: true } }, async (_req, reply) =>
      reply
        .type("text/html; charset=utf-8")
        .send(
          `<!doctype html><html><head><meta charset="utf-8"><title>Damselfly manager</title></head><body>` +
            `<h1>Damselfly manager</h1><p>The console is not built (<code>npm run build:console</code>). The REST API is under <code>/api/v1</code>, the open API (personal access tokens) under <code>/oapi/v1</code>.</p>` +
            `<p><a href="/docs">API documentation</a> · <a href="/api/v1/openapi.json">OpenAPI JSON</a></p></body></html>`,
        ),
    );
  };
}
