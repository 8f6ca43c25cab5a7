// Upload rate of the cluster's hosts over the last minutes, from the upload
// byte counters the schedulers report (sampled by the page every few seconds).

export interface Sample {
  at: number;
  // hostname -> upload bytes total
  bytes: Record<string, number>;
}

const W = 640;
const H = 160;
const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"];

function rate(a: Sample, b: Sample, host: string): number {
  const dt = (b.at - a.at) / 1000;
  const d = (b.bytes[host] ?? 0) - (a.bytes[host] ?? 0);
  return dt > 0 && d > 0 ? d / dt : 0;
}

export function formatRate(bps: number): string {
  if (bps >= 1024 ** 2) return `${(bps / 1024 ** 2).toFixed(1)} MiB/s`;
  if (bps >= 1024) return `${(bps / 1024).toFixed(1)} KiB/s`;
  return `${bps.toFixed(0)} B/s`;
}

export function TrafficChart({ samples }: { samples: Sample[] }) {
  if (samples.length < 2) return <p className="muted">Collecting upload traffic… (a point every few seconds)</p>;
  const hosts = [...new Set(samples.flatMap((s) => Object.keys(s.bytes)))].sort();
  const series = hosts.map((h) => samples.slice(1).map((s, i) => rate(samples[i]!, s, h)));
  const max = Math.max(1, ...series.flat());
  const n = samples.length - 1;
  const x = (i: number) => (n <= 1 ? 0 : (i / (n - 1)) * W);
  const y = (v: number) => H - (v / max) * (H - 10);
  return (
    <figure className="chart" aria-label="upload traffic">
      <svg viewBox={`0 0 ${W} ${H}`} width="100%" height={H} preserveAspectRatio="none" role="img">
        <line x1="0" y1={H} x2={W} y2={H} stroke="#ccc" />
        {series.map((pts, k) => (
          <polyline key={hosts[k]} fill="none" stroke={COLORS[k % COLORS.length]} strokeWidth="2" points={pts.map((v, i) => `${x(i)},${y(v)}`).join(" ")} />
        ))}
      </svg>
      <figcaption>
        peak {formatRate(max)} ·{" "}
        {hosts.map((h, k) => (
          <span key={h} style={{ color: COLORS[k % COLORS.length], marginRight: "1em" }}>
            ● {h} {formatRate(series[k]![series[k]!.length - 1] ?? 0)}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}
