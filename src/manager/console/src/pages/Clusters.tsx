import { useEffect, useRef, useState, type FormEvent } from "react";
import { api, type Cluster, type Host, type Scheduler } from "../api";
import { CLUSTER_CONFIG } from "../../../../common/cluster-config";
import { ErrorNote } from "../components/ErrorNote";
import { TrafficChart, type Sample } from "../components/TrafficChart";

// The dynamic keys and their bounds: the one table the manager validates with.
const KEYS = CLUSTER_CONFIG;
const REFRESH_MS = 2000;

function ConfigForm({ cluster, onSaved, canWrite }: { cluster: Cluster; onSaved: (c: Cluster) => void; canWrite: boolean }) {
  const [values, setValues] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  useEffect(() => setValues(Object.fromEntries(KEYS.map(({ key: k }) => [k, cluster.config[k] === undefined ? "" : String(cluster.config[k])]))), [cluster]);
  const save = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setSaved(false);
    const config: Record<string, number> = {};
    for (const { key: k } of KEYS) if (values[k] !== "" && values[k] !== undefined) config[k] = Number(values[k]);
    try {
      onSaved(await api<Cluster>("PATCH", `/api/v1/scheduler-clusters/${cluster.id}`, { config }));
      setSaved(true);
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form onSubmit={save} className="config">
      <h3>Dynamic config</h3>
      <p className="muted">
        Schedulers apply changes at their next keep-alive (a few seconds), daemons started with --manager and --cluster-id at their next refresh, without a
        restart. Empty: each scheduler's own value.
      </p>
      {KEYS.map(({ key: k, label, min }) => (
        <label key={k}>
          {label}
          <input
            name={k}
            type="number"
            min={min}
            value={values[k] ?? ""}
            disabled={!canWrite}
            onChange={(e) => setValues({ ...values, [k]: e.target.value })}
          />
        </label>
      ))}
      {canWrite && <button type="submit">Save config</button>}
      {saved && <span className="ok"> Saved.</span>}
      <ErrorNote error={error} />
    </form>
  );
}

function SchedulerTable({ schedulers, clusterId }: { schedulers: Scheduler[]; clusterId: number | null }) {
  return (
    <>
      <h3>Schedulers</h3>
      {schedulers.length === 0 ? (
        <p className="empty">
          No scheduler has registered in this cluster. Start one with{" "}
          <code>
            damselfly scheduler --manager {location.origin} --cluster-id {clusterId}
          </code>
          .
        </p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Host</th>
              <th>Address</th>
              <th>State</th>
              <th>Last seen</th>
            </tr>
          </thead>
          <tbody>
            {schedulers.map((s) => (
              <tr key={s.id}>
                <td>{s.hostname}</td>
                <td>
                  {s.ip}:{s.port}
                </td>
                <td>
                  <span className={`badge ${s.state}`}>{s.state}</span>
                </td>
                <td>{new Date(s.last_seen_at).toLocaleTimeString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

function HostTable({ hosts }: { hosts: Host[] }) {
  return (
    <>
      <h3>Seed peers and peers</h3>
      {hosts.length === 0 ? (
        <p className="empty">No daemon is announced to this cluster's schedulers.</p>
      ) : (
        <table className="hosts">
          <thead>
            <tr>
              <th>Host</th>
              <th>Type</th>
              <th>Address</th>
              <th>Uploading now</th>
              <th>Uploaded</th>
            </tr>
          </thead>
          <tbody>
            {hosts.map((h) => (
              <tr key={h.id}>
                <td>{h.hostname}</td>
                <td>{h.type === "seed" ? "seed peer" : "peer"}</td>
                <td>
                  {h.ip}:{h.upload_port}
                </td>
                <td>{h.concurrent_uploads}</td>
                <td>{(h.upload_bytes_total / 1024 ** 2).toFixed(1)} MiB</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

export function Clusters({ canWrite }: { canWrite: boolean }) {
  const [clusters, setClusters] = useState<Cluster[] | null>(null);
  const [selected, setSelected] = useState<number | null>(null);
  const [schedulers, setSchedulers] = useState<Scheduler[]>([]);
  const [hosts, setHosts] = useState<Host[]>([]);
  const [error, setError] = useState<unknown>(null);
  const samples = useRef<Sample[]>([]);
  const [, force] = useState(0);

  useEffect(() => {
    api<Cluster[]>("GET", "/api/v1/scheduler-clusters").then((cs) => {
      setClusters(cs);
      if (cs.length > 0) setSelected((s) => s ?? cs[0]!.id);
    }, setError);
  }, []);

  useEffect(() => {
    if (selected === null) return;
    samples.current = [];
    let stop = false;
    const load = async () => {
      try {
        const [ss, hs] = await Promise.all([api<Scheduler[]>("GET", "/api/v1/schedulers"), api<Host[]>("GET", `/api/v1/scheduler-clusters/${selected}/hosts`)]);
        if (stop) return;
        setSchedulers(ss.filter((s) => s.cluster_id === selected));
        setHosts(hs);
        samples.current = [...samples.current, { at: Date.now(), bytes: Object.fromEntries(hs.map((h) => [h.hostname, h.upload_bytes_total])) }].slice(-60);
        force((n) => n + 1);
        setError(null);
      } catch (err) {
        if (!stop) setError(err);
      }
    };
    void load();
    const t = setInterval(load, REFRESH_MS);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [selected]);

  if (clusters === null) return error ? <ErrorNote error={error} /> : <p className="muted">Loading clusters…</p>;
  if (clusters.length === 0) return <p className="empty">No scheduler cluster yet.</p>;
  const cluster = clusters.find((c) => c.id === selected);
  return (
    <section>
      <h2>Clusters</h2>
      <nav className="tabs">
        {clusters.map((c) => (
          <button key={c.id} className={c.id === selected ? "active" : ""} onClick={() => setSelected(c.id)}>
            {c.name} <span className="muted">#{c.id}</span>
          </button>
        ))}
      </nav>
      <ErrorNote error={error} />
      <SchedulerTable schedulers={schedulers} clusterId={selected} />
      <HostTable hosts={hosts} />
      <h3>Upload traffic</h3>
      <TrafficChart samples={samples.current} />
      {cluster && <ConfigForm cluster={cluster} canWrite={canWrite} onSaved={(c) => setClusters(clusters.map((x) => (x.id === c.id ? c : x)))} />}
    </section>
  );
}
