// Human-readable formatting shared by the CLI commands.

const BYTE_UNITS = ["KiB", "MiB", "GiB", "TiB", "PiB"];

// 0 B, 512 B, 1.0 KiB, 64.0 MiB (binary units, one decimal above 1 KiB).
export function formatBytes(n: number | bigint): string {
  let v = typeof n === "bigint" ? Number(n) : n;
  if (!Number.isFinite(v) || v < 0) return `${v} B`;
  if (v < 1024) return `${Math.round(v)} B`;
  let unit = -1;
  do {
    v /= 1024;
    unit++;
  } while (v >= 1024 && unit < BYTE_UNITS.length - 1);
  // 1023.95 KiB would print as "1024.0 KiB": move up a unit instead.
  if (v >= 1023.95 && unit < BYTE_UNITS.length - 1) {
    v /= 1024;
    unit++;
  }
  return `${v.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

// Bytes per second, e.g. "52.0 MiB/s".
export function formatRate(bytes: number | bigint, ms: number | bigint): string {
  const secs = Math.max(Number(ms), 1) / 1000;
  return `${formatBytes(Number(bytes) / secs)}/s`;
}

// Elapsed time for humans: "0.12s", "1.23s", "2m05s", "1h02m03s".
export function formatElapsed(ms: number | bigint): string {
  const v = Number(ms);
  if (v < 60_000) return `${(v / 1000).toFixed(2)}s`;
  const total = Math.round(v / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (x: number) => String(x).padStart(2, "0");
  return h > 0 ? `${h}h${pad(m)}m${pad(s)}s` : `${m}m${pad(s)}s`;
}

// A duration in milliseconds as the config parser accepts it back: "30s",
// "5m", "1h", "250ms".
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

// A progress bar's ETA: "42s", "3m05s", "2h07m".
export function formatEta(secs: number): string {
  if (secs < 60) return `${Math.ceil(secs)}s`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m${String(Math.round(secs % 60)).padStart(2, "0")}s`;
  return `${Math.floor(secs / 3600)}h${String(Math.floor((secs % 3600) / 60)).padStart(2, "0")}m`;
}
