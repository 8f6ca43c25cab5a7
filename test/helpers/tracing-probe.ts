// Preloaded into a child (NODE_OPTIONS=--import=<this file>): at exit it
// writes to $TRACING_PROBE_OUT.<pid> whether tracing code was loaded in the
// process: our SDK adapter (it marks itself) or any OpenTelemetry module. The
// tracing-off tests read it.
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const OTEL_PATH = /[\\/]node_modules[\\/]@opentelemetry[\\/]([^\\/]+)/;

// The OpenTelemetry packages loaded so far. The SDK's packages are CommonJS,
// so each of their files is in the require cache even when reached through
// import(). @opentelemetry/api is left out: prom-client's default metrics
// require it whether tracing is on or not.
export function otelPackagesLoaded(): string[] {
  const names = new Set<string>();
  for (const file of Object.keys(createRequire(import.meta.url).cache)) {
    const m = OTEL_PATH.exec(file);
    if (m && m[1] !== "api") names.add(`@opentelemetry/${m[1]}`);
  }
  return [...names].sort();
}

export function tracingLoaded(): string | undefined {
  const marked = (globalThis as Record<symbol, unknown>)[Symbol.for("damselfly.tracing.loaded")] === true;
  const pkgs = otelPackagesLoaded();
  if (!marked && pkgs.length === 0) return undefined;
  return `loaded: ${[...(marked ? ["common/otel/tracer-impl"] : []), ...pkgs].join(", ")}`;
}

const out = process.env.TRACING_PROBE_OUT;
if (out) {
  process.on("exit", () => {
    writeFileSync(`${out}.${process.pid}`, tracingLoaded() ?? "not-loaded");
  });
}
