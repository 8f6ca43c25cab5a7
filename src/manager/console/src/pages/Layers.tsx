import { useState, type FormEvent } from "react";
import { api } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { useAction } from "../components/useAction";

// Layer locality: which nodes hold which layers of an image, for one
// platform (GET /api/v1/images/layers: the manager resolves the image at its
// registry, one the daemons pulled from, and asks every cluster's scheduler).

interface LayerHolders {
  digest: string;
  size: number;
  task_id: string;
  nodes: string[];
}
interface ImageLayers {
  image: string;
  platform: string;
  layers: LayerHolders[];
}

const PLATFORM = /^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/;

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

export function Layers() {
  const [image, setImage] = useState("");
  const [platform, setPlatform] = useState("linux/amd64");
  const [answer, setAnswer] = useState<ImageLayers | null>(null);
  const { busy, error, run } = useAction();

  const find = (e: FormEvent) => {
    e.preventDefault();
    setAnswer(null);
    return run(async () => {
      const q = new URLSearchParams({ image: image.trim(), platform: platform.trim() });
      setAnswer(await api<ImageLayers>("GET", `/api/v1/images/layers?${q}`));
    });
  };

  return (
    <section>
      <h2>Layers</h2>
      <p className="muted">Which nodes already hold each layer of an image (what the scheduler extender scores pods by).</p>
      <form onSubmit={find} className="inline">
        <input
          name="image"
          placeholder="image reference, e.g. registry.example.com/team/app:1.2"
          value={image}
          onChange={(e) => setImage(e.target.value)}
          required
          maxLength={1024}
          size={60}
        />
        <input
          name="platform"
          placeholder="os/arch"
          value={platform}
          onChange={(e) => setPlatform(e.target.value)}
          required
          pattern={PLATFORM.source}
          size={14}
        />
        <button type="submit" disabled={busy}>
          Find holders
        </button>
      </form>
      <ErrorNote error={error} />
      {answer && <LayerTable answer={answer} />}
    </section>
  );
}

function LayerTable({ answer }: { answer: ImageLayers }) {
  const total = answer.layers.reduce((s, l) => s + l.size, 0);
  return (
    <>
      <p>
        <code>{answer.image}</code> ({answer.platform}): {answer.layers.length} layers, {bytes(total)}
      </p>
      <table className="layers">
        <thead>
          <tr>
            <th>Layer</th>
            <th>Size</th>
            <th>Nodes holding it</th>
          </tr>
        </thead>
        <tbody>
          {answer.layers.map((l) => (
            <tr key={l.task_id} data-digest={l.digest}>
              <td>
                <code title={`task ${l.task_id}`}>{l.digest.slice(0, 19)}…</code>
              </td>
              <td>{bytes(l.size)}</td>
              <td className="nodes">{l.nodes.length === 0 ? <span className="empty">none</span> : l.nodes.join(", ")}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
