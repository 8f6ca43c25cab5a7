// Preloaded into a child (NODE_OPTIONS=--import=<this file>): at exit it
// writes whether the tracing implementation was ever loaded in the process
// to $TRACING_PROBE_OUT.<pid>. The tracing-off test reads it.
import { writeFileSync } from "node:fs";

const out = process.env.TRACING_PROBE_OUT;
if (out) {
  process.on("exit", () => {
    const loaded = (globalThis as Record<symbol, unknown>)[Symbol.for("damselfly.tracing.loaded")] === true;
    writeFileSync(`${out}.${process.pid}`, loaded ? "loaded" : "not-loaded");
  });
}
