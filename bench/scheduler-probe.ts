// Preloaded into the scheduler process by bench/scheduler-scale.ts
// (`node --expose-gc --import …/scheduler-probe.js bin/damselfly scheduler`).
// On SIGUSR2 it appends one JSON line to $DAMSELFLY_BENCH_PROBE: the event
// loop's delay and utilisation since the last probe, then memory figures
// after a full GC (so the bench can tell retained memory from garbage).
// Every second (or as soon after as a busy loop allows) it also appends the
// loop's cumulative active/idle time and the last interval's loop delay to
// $DAMSELFLY_BENCH_PROBE.ticks. It touches nothing else in the scheduler.
import { appendFileSync } from "node:fs";
import { monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks";

const out = process.env["DAMSELFLY_BENCH_PROBE"];
if (out) {
  // Wall clock against the monotonic clock that CPU profiles (--cpu-prof)
  // stamp their samples with, to place profile samples in wall time.
  appendFileSync(`${out}.epoch`, JSON.stringify({ wallMs: Date.now(), monoUs: Number(process.hrtime.bigint() / 1000n) }) + "\n");
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  let elu = performance.eventLoopUtilization();
  // Cumulative loop active/idle time, so the bench can compute utilisation
  // between any two ticks even when a saturated loop runs this timer late.
  const second = monitorEventLoopDelay({ resolution: 5 });
  second.enable();
  setInterval(() => {
    const u = performance.eventLoopUtilization();
    appendFileSync(
      `${out}.ticks`,
      JSON.stringify({ at: Date.now(), activeMs: u.active, idleMs: u.idle, delayP99Ms: second.percentile(99) / 1e6, delayMaxMs: second.max / 1e6 }) + "\n",
    );
    second.reset();
  }, 1000).unref();
  // Every GC pause on the main thread (wall clock start, duration, kind),
  // to line up with the latency probe's slow answers.
  const gcLines: string[] = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcLines.push(
        JSON.stringify({
          at: performance.timeOrigin + e.startTime,
          ms: e.duration,
          kind: ((e as { detail?: unknown }).detail as { kind?: number } | undefined)?.kind,
        }),
      );
    }
    if (gcLines.length >= 64) appendFileSync(`${out}.gc`, gcLines.splice(0).join("\n") + "\n");
  }).observe({ entryTypes: ["gc"] });
  process.on("exit", () => {
    if (gcLines.length) appendFileSync(`${out}.gc`, gcLines.splice(0).join("\n") + "\n");
  });
  process.on("SIGUSR2", () => {
    const u = performance.eventLoopUtilization(elu);
    elu = performance.eventLoopUtilization();
    const loop = {
      eluPct: 100 * u.utilization,
      activeMs: u.active,
      delayP50Ms: delay.percentile(50) / 1e6,
      delayP99Ms: delay.percentile(99) / 1e6,
      delayMaxMs: delay.max / 1e6,
    };
    delay.reset();
    const pre = process.memoryUsage();
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const m = process.memoryUsage();
    appendFileSync(
      out,
      JSON.stringify({
        at: Date.now(),
        gc: gc !== undefined,
        ...loop,
        rss: m.rss,
        heapUsed: m.heapUsed,
        heapTotal: m.heapTotal,
        external: m.external,
        arrayBuffers: m.arrayBuffers,
        heapUsedBeforeGc: pre.heapUsed,
      }) + "\n",
    );
  });
}
