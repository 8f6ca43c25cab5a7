// A hand-written SVG: completion time (last peer: solid, median: dashed) vs N
// for each mode, and the Kumar-Ross bound T* (black).
export interface PlotPoint {
  mode: string;
  n: number;
  lastS: number | null;
  medianS: number | null;
}

const COLORS: Record<string, string> = {
  native: "#d62728",
  bittorrent: "#1f77b4",
  damselfly: "#2ca02c",
  "damselfly-peer": "#9467bd",
};
const FALLBACK = ["#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

// 1, 2, 5 x 10^k step giving about `want` ticks up to max.
function niceStep(max: number, want: number): number {
  const raw = max / want;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

export function renderPlot(title: string, points: PlotPoint[], bound: Array<{ n: number; tStarS: number }>): string {
  const W = 800;
  const H = 480;
  const L = 70;
  const R = 215;
  const Tm = 50;
  const Bm = 60;
  const ns = [...new Set([...points.map((p) => p.n), ...bound.map((b) => b.n)])].sort((a, b) => a - b);
  const maxN = Math.max(...ns);
  const ys = [...points.flatMap((p) => [p.lastS, p.medianS]), ...bound.map((b) => b.tStarS)].filter((y): y is number => y !== null);
  const step = niceStep(Math.max(1, ...ys) * 1.05, 6);
  const maxY = Math.ceil((Math.max(1, ...ys) * 1.05) / step) * step;
  const x = (n: number) => L + (n / maxN) * (W - L - R);
  const y = (v: number) => H - Bm - (v / maxY) * (H - Tm - Bm);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="14">${esc(title)}</text>`);
  // grid and axes
  for (let v = 0; v <= maxY + 1e-9; v += step) {
    out.push(`<line x1="${L}" y1="${y(v).toFixed(1)}" x2="${W - R}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`);
    out.push(`<text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${Number(v.toPrecision(6))}</text>`);
  }
  for (const n of ns) {
    out.push(`<line x1="${x(n).toFixed(1)}" y1="${H - Bm}" x2="${x(n).toFixed(1)}" y2="${H - Bm + 5}" stroke="black"/>`);
    out.push(`<text x="${x(n).toFixed(1)}" y="${H - Bm + 18}" text-anchor="middle">${n}</text>`);
  }
  out.push(`<line x1="${L}" y1="${H - Bm}" x2="${W - R}" y2="${H - Bm}" stroke="black"/>`);
  out.push(`<line x1="${L}" y1="${Tm}" x2="${L}" y2="${H - Bm}" stroke="black"/>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 18}" text-anchor="middle">peers (N)</text>`);
  out.push(`<text x="18" y="${(Tm + H - Bm) / 2}" text-anchor="middle" transform="rotate(-90 18 ${(Tm + H - Bm) / 2})">completion time (s)</text>`);

  const series = (pts: Array<[number, number]>, color: string, dash: string, marker: "circle" | "square" | "none") => {
    if (pts.length === 0) return;
    const d = pts.map(([n, v], i) => `${i ? "L" : "M"}${x(n).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`);
    for (const [n, v] of pts) {
      if (marker === "circle") out.push(`<circle cx="${x(n).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3.5" fill="${color}"/>`);
      if (marker === "square")
        out.push(`<rect x="${(x(n) - 3).toFixed(1)}" y="${(y(v) - 3).toFixed(1)}" width="6" height="6" fill="white" stroke="${color}"/>`);
    }
  };
  const legend: Array<{ label: string; color: string; dash: string }> = [];
  const modes = [...new Set(points.map((p) => p.mode))];
  modes.forEach((m, i) => {
    const color = COLORS[m] ?? FALLBACK[i % FALLBACK.length]!;
    const pts = points.filter((p) => p.mode === m).sort((a, b) => a.n - b.n);
    series(
      pts.filter((p) => p.lastS !== null).map((p) => [p.n, p.lastS!]),
      color,
      "",
      "circle",
    );
    series(
      pts.filter((p) => p.medianS !== null).map((p) => [p.n, p.medianS!]),
      color,
      "6 4",
      "square",
    );
    legend.push({ label: `${m} last`, color, dash: "" }, { label: `${m} median`, color, dash: "6 4" });
  });
  series(
    [...bound].sort((a, b) => a.n - b.n).map((b) => [b.n, b.tStarS]),
    "black",
    "2 3",
    "none",
  );
  legend.push({ label: "Kumar-Ross T*", color: "black", dash: "2 3" });
  legend.forEach((e, i) => {
    const ly = Tm + 10 + i * 20;
    out.push(
      `<line x1="${W - R + 15}" y1="${ly}" x2="${W - R + 45}" y2="${ly}" stroke="${e.color}" stroke-width="2"${e.dash ? ` stroke-dasharray="${e.dash}"` : ""}/>`,
    );
    out.push(`<text x="${W - R + 52}" y="${ly + 4}">${esc(e.label)}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
