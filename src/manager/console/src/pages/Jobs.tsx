import { useEffect, useState, type FormEvent } from "react";
import { api, type Job } from "../api";
import { ErrorNote } from "../components/ErrorNote";

function JobRow({ job }: { job: Job }) {
  const results = job.result.job_states?.[0]?.results ?? [];
  const ok = results.reduce((n, r) => n + (r.success_tasks?.length ?? 0), 0);
  const failed = results.flatMap((r) => r.failure_tasks ?? []);
  const peers = results.flatMap((r) => r.peers ?? []);
  const summary =
    job.type === "get_task"
      ? `${peers.length} host(s): ${peers.map((p) => `${p.hostname} (${p.state})`).join(", ") || "none"}`
      : job.type === "delete_task"
        ? `deleted on ${ok}, ${failed.length} failed`
        : `${ok} preheated, ${failed.length} failed`;
  return (
    <tr data-job={job.id}>
      <td>#{job.id}</td>
      <td>{job.type === "preheat" ? `preheat ${job.args.type ?? ""}` : job.type}</td>
      <td className="url" title={job.args.url ?? job.args.task_id}>
        {job.args.url ?? job.args.task_id}
      </td>
      <td>{job.args.scope ?? "single_seed_peer"}</td>
      <td>
        <span className={`badge ${job.state.toLowerCase()}`}>{job.state}</span>
      </td>
      <td>
        {job.state === "PENDING" ? "running…" : summary}
        {job.result.job_states?.[0]?.error && <div className="error">{job.result.job_states[0].error}</div>}
        {failed.slice(0, 5).map((f, i) => (
          <div key={i} className="error small">
            {f.hostname || "-"}: {f.description}
          </div>
        ))}
      </td>
      <td>{new Date(job.created_at).toLocaleString()}</td>
    </tr>
  );
}

export function Jobs({ canWrite }: { canWrite: boolean }) {
  const [jobs, setJobs] = useState<Job[] | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    let stop = false;
    const load = () =>
      api<Job[]>("GET", "/api/v1/jobs?limit=50").then(
        (js) => !stop && (setJobs(js), setError(null)),
        (err) => !stop && setError(err),
      );
    void load();
    const t = setInterval(load, 1000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, []);

  return (
    <section>
      <h2>Jobs</h2>
      {canWrite && <PreheatForm onCreated={(job) => setJobs((js) => [job, ...(js ?? [])])} />}
      <ErrorNote error={error} />
      {jobs === null ? (
        <p className="muted">Loading jobs…</p>
      ) : jobs.length === 0 ? (
        <p className="empty">No job yet.{canWrite ? " Preheat a file or an image above." : ""}</p>
      ) : (
        <table className="jobs">
          <thead>
            <tr>
              <th>Job</th>
              <th>Type</th>
              <th>URL</th>
              <th>Scope</th>
              <th>State</th>
              <th>Result</th>
              <th>Created</th>
            </tr>
          </thead>
          <tbody>
            {jobs.map((j) => (
              <JobRow key={j.id} job={j} />
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function PreheatForm({ onCreated }: { onCreated: (job: Job) => void }) {
  const [form, setForm] = useState({ type: "file", url: "", scope: "single_seed_peer", platform: "linux/amd64", header: "" });
  const [formError, setFormError] = useState<unknown>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setFormError(null);
    const headers: Record<string, string> = {};
    if (form.header.trim()) {
      const i = form.header.indexOf(":");
      if (i < 1) return setFormError(new Error("header must be 'Name: value'"));
      headers[form.header.slice(0, i).trim()] = form.header.slice(i + 1).trim();
    }
    try {
      const job = await api<Job>("POST", "/api/v1/jobs", {
        type: "preheat",
        args: { type: form.type, url: form.url.trim(), scope: form.scope, headers, ...(form.type === "image" ? { platform: form.platform } : {}) },
      });
      onCreated(job);
      setForm({ ...form, url: "", header: "" });
    } catch (err) {
      setFormError(err);
    }
  };

  return (
    <form onSubmit={submit} className="inline">
      <h3>Preheat</h3>
      <select name="type" value={form.type} onChange={(e) => setForm({ ...form, type: e.target.value })}>
        <option value="file">file</option>
        <option value="image">image</option>
      </select>
      <input
        name="url"
        placeholder={form.type === "image" ? "https://registry/v2/repo/manifests/tag" : "https://example.com/file.bin"}
        value={form.url}
        onChange={(e) => setForm({ ...form, url: e.target.value })}
        required
        size={50}
      />
      <select name="scope" value={form.scope} onChange={(e) => setForm({ ...form, scope: e.target.value })}>
        <option value="single_seed_peer">single seed peer</option>
        <option value="all_seed_peers">all seed peers</option>
        <option value="all_peers">all peers</option>
      </select>
      {form.type === "image" && <input name="platform" value={form.platform} onChange={(e) => setForm({ ...form, platform: e.target.value })} size={12} />}
      <input
        name="header"
        placeholder="Authorization: Bearer … (optional, never stored)"
        value={form.header}
        onChange={(e) => setForm({ ...form, header: e.target.value })}
        size={30}
      />
      <button type="submit">Preheat</button>
      <ErrorNote error={formError} />
    </form>
  );
}
