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
      <td>{job.type === "preheat" ? `preheat ${job.args.type ?? ""}${job.args.recursive ? " -r" : ""}` : job.type}</td>
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

// Globs typed as "a, b" or "a b".
const globs = (s: string): string[] => s.split(/[\s,]+/).filter(Boolean);

const EMPTY_OBJECT = { recursive: false, include: "", exclude: "", revision: "", hubToken: "" };

// s3:// and hf:// preheats: every file under a prefix or repository
// (recursive, globs), a hub revision, and a hub token the manager keeps in
// memory for the job's life only (a password field: never shown again).
function objectArgs(url: string, o: typeof EMPTY_OBJECT): Record<string, unknown> {
  const hf = url.startsWith("hf://");
  if (!hf && !url.startsWith("s3://")) return {};
  return {
    ...(o.recursive ? { recursive: true, include: globs(o.include), exclude: globs(o.exclude) } : {}),
    ...(hf && o.revision.trim() ? { hf_revision: o.revision.trim() } : {}),
    ...(hf && o.hubToken ? { hf_token: o.hubToken } : {}),
  };
}

function ObjectFields({ url, o, set }: { url: string; o: typeof EMPTY_OBJECT; set: (o: typeof EMPTY_OBJECT) => void }) {
  const hf = url.startsWith("hf://");
  if (!hf && !url.startsWith("s3://")) return null;
  return (
    <>
      <label>
        <input name="recursive" type="checkbox" checked={o.recursive} onChange={(e) => set({ ...o, recursive: e.target.checked })} /> recursive
      </label>
      {o.recursive && <input name="include" placeholder="include globs" value={o.include} onChange={(e) => set({ ...o, include: e.target.value })} size={14} />}
      {o.recursive && <input name="exclude" placeholder="exclude globs" value={o.exclude} onChange={(e) => set({ ...o, exclude: e.target.value })} size={14} />}
      {hf && <input name="revision" placeholder="revision (main)" value={o.revision} onChange={(e) => set({ ...o, revision: e.target.value })} size={12} />}
      {hf && (
        <input
          name="hubToken"
          type="password"
          autoComplete="off"
          placeholder="hub token (optional, never stored)"
          value={o.hubToken}
          onChange={(e) => set({ ...o, hubToken: e.target.value })}
          size={20}
        />
      )}
    </>
  );
}

function PreheatForm({ onCreated }: { onCreated: (job: Job) => void }) {
  const [form, setForm] = useState({ type: "file", url: "", scope: "single_seed_peer", platform: "linux/amd64", header: "" });
  const [object, setObject] = useState(EMPTY_OBJECT);
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
        args: {
          type: form.type,
          url: form.url.trim(),
          scope: form.scope,
          headers,
          ...(form.type === "image" ? { platform: form.platform } : {}),
          ...objectArgs(form.url.trim(), object),
        },
      });
      onCreated(job);
      setForm({ ...form, url: "", header: "" });
      setObject(EMPTY_OBJECT);
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
        placeholder={form.type === "image" ? "https://registry/v2/repo/manifests/tag" : "https://…, s3://bucket/key or hf://owner/repo/file"}
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
      {form.type === "file" && <ObjectFields url={form.url.trim()} o={object} set={setObject} />}
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
