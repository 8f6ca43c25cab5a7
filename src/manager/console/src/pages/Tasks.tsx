import { useState, type FormEvent } from "react";
import { api, type Job } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { useAction } from "../components/useAction";

type Peer = { hostname: string; ip: string; type: string; state: string; finished_pieces: number; total_pieces: number };

// Runs a get_task or delete_task job and waits for it (they take a moment:
// the manager asks every cluster's scheduler).
async function runJob(type: "get_task" | "delete_task", args: Record<string, string>): Promise<Job> {
  let job = await api<Job>("POST", "/api/v1/jobs", { type, args });
  while (job.state === "PENDING") {
    await new Promise((r) => setTimeout(r, 300));
    job = await api<Job>("GET", `/api/v1/jobs/${job.id}`);
  }
  return job;
}

export function Tasks({ canWrite }: { canWrite: boolean }) {
  const [query, setQuery] = useState("");
  const [peers, setPeers] = useState<(Peer & { cluster: number })[] | null>(null);
  const [taskId, setTaskId] = useState("");
  const [note, setNote] = useState("");
  const { busy, error, run } = useAction();
  const args = (): Record<string, string> => (/^[0-9a-f]{64}$/.test(query.trim()) ? { task_id: query.trim() } : { url: query.trim() });

  const find = (e?: FormEvent) => {
    e?.preventDefault();
    setNote("");
    return run(async () => {
      const job = await runJob("get_task", args());
      const results = (job.result.job_states?.[0]?.results ?? []) as unknown as {
        scheduler_cluster_id: number;
        task_id: string;
        peers?: Peer[];
        error?: string;
      }[];
      setTaskId(results[0]?.task_id ?? "");
      setPeers(results.flatMap((r) => (r.peers ?? []).map((p) => ({ ...p, cluster: r.scheduler_cluster_id }))));
      const errs = results.filter((r) => r.error).map((r) => `cluster ${r.scheduler_cluster_id}: ${r.error}`);
      if (job.state === "FAILURE") setNote(job.result.job_states?.[0]?.error || errs.join("; ") || job.error);
    });
  };

  const remove = async () => {
    if (!confirm("Delete this task from every host that holds it?")) return;
    await run(async () => {
      const job = await runJob("delete_task", args());
      setNote(job.state === "SUCCESS" ? "Deleted from every host." : `Delete failed: ${job.result.job_states?.[0]?.error ?? job.error}`);
      await find();
    });
  };

  return (
    <section>
      <h2>Tasks</h2>
      <form onSubmit={find} className="inline">
        <input name="task" placeholder="URL or 64-hex task ID" value={query} onChange={(e) => setQuery(e.target.value)} required size={70} />
        <button type="submit" disabled={busy}>
          Find hosts
        </button>
      </form>
      <ErrorNote error={error} />
      {note && <p className="muted">{note}</p>}
      {peers !== null && (
        <>
          <p>
            Task <code>{taskId}</code>
          </p>
          {peers.length === 0 ? <p className="empty">No host of any active cluster holds or fetches this task.</p> : <PeerTable peers={peers} />}
          {canWrite && peers.length > 0 && (
            <button onClick={remove} disabled={busy}>
              Delete from every host
            </button>
          )}
        </>
      )}
    </section>
  );
}

function PeerTable({ peers }: { peers: (Peer & { cluster: number })[] }) {
  return (
    <table>
      <thead>
        <tr>
          <th>Cluster</th>
          <th>Host</th>
          <th>Type</th>
          <th>State</th>
          <th>Pieces</th>
        </tr>
      </thead>
      <tbody>
        {peers.map((p, i) => (
          <tr key={i}>
            <td>#{p.cluster}</td>
            <td>
              {p.hostname} <span className="muted">{p.ip}</span>
            </td>
            <td>{p.type === "seed" ? "seed peer" : "peer"}</td>
            <td>{p.state}</td>
            <td>
              {p.finished_pieces}/{p.total_pieces}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
