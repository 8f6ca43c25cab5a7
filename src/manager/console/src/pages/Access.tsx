import { useEffect, useState, type FormEvent } from "react";
import { api, type Role, type Token, type User } from "../api";
import { ErrorNote } from "../components/ErrorNote";

const RESOURCES = ["cluster", "job", "user", "role", "audit"];

function Tokens() {
  const [tokens, setTokens] = useState<Token[] | null>(null);
  const [created, setCreated] = useState<Token | null>(null);
  const [form, setForm] = useState({ name: "", scopes: ["job"], days: "90" });
  const [error, setError] = useState<unknown>(null);
  const load = () => api<Token[]>("GET", "/api/v1/personal-access-tokens").then(setTokens, setError);
  useEffect(() => void load(), []);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      const expired_at = new Date(Date.now() + Number(form.days) * 86_400_000).toISOString();
      setCreated(await api<Token>("POST", "/api/v1/personal-access-tokens", { name: form.name, scopes: form.scopes, expired_at }));
      setForm({ ...form, name: "" });
      await load();
    } catch (err) {
      setError(err);
    }
  };
  const revoke = async (id: number) => {
    await api("DELETE", `/api/v1/personal-access-tokens/${id}`).catch(setError);
    await load();
  };
  return (
    <div>
      <h3>Your personal access tokens</h3>
      {created?.token && (
        <p className="ok" role="status">
          New token <b>{created.name}</b>: <code className="secret">{created.token}</code> — copy it now, it is not shown again.
        </p>
      )}
      <form onSubmit={submit} className="inline">
        <input name="tokenName" placeholder="name (e.g. harbor)" value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} required />
        {RESOURCES.map((r) => (
          <label key={r} className="check">
            <input
              type="checkbox"
              checked={form.scopes.includes(r)}
              onChange={(e) => setForm({ ...form, scopes: e.target.checked ? [...form.scopes, r] : form.scopes.filter((x) => x !== r) })}
            />{" "}
            {r}
          </label>
        ))}
        <label>
          expires in <input type="number" min={1} max={1825} value={form.days} onChange={(e) => setForm({ ...form, days: e.target.value })} size={4} /> days
        </label>
        <button type="submit">Create token</button>
      </form>
      <ErrorNote error={error} />
      {tokens && tokens.length === 0 && <p className="empty">No token yet.</p>}
      {tokens && tokens.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Scopes</th>
              <th>Expires</th>
              <th>Last used</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {tokens.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>{t.scopes.join(", ")}</td>
                <td>{new Date(t.expires_at).toLocaleDateString()}</td>
                <td>{t.last_used_at ? new Date(t.last_used_at).toLocaleString() : "never"}</td>
                <td>
                  <button onClick={() => revoke(t.id)}>Revoke</button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Users({ roles }: { roles: Role[] }) {
  const [users, setUsers] = useState<User[] | null>(null);
  const [form, setForm] = useState({ name: "", password: "", role: "guest" });
  const [error, setError] = useState<unknown>(null);
  const load = () => api<User[]>("GET", "/api/v1/users").then(setUsers, setError);
  useEffect(() => void load(), []);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      await api("POST", "/api/v1/users", form);
      setForm({ name: "", password: "", role: "guest" });
      await load();
    } catch (err) {
      setError(err);
    }
  };
  const setRole = async (u: User, role: string) => {
    await api("PATCH", `/api/v1/users/${u.id}`, { role }).catch(setError);
    await load();
  };
  return (
    <div>
      <h3>Users</h3>
      <form onSubmit={submit} className="inline">
        <input name="userName" placeholder="name" value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} required />
        <input
          name="userPassword"
          type="password"
          placeholder="password (8+ characters)"
          value={form.password}
          onChange={(e) => setForm({ ...form, password: e.target.value })}
          required
          minLength={8}
        />
        <select value={form.role} onChange={(e) => setForm({ ...form, role: e.target.value })}>
          {roles.map((r) => (
            <option key={r.id}>{r.name}</option>
          ))}
        </select>
        <button type="submit">Add user</button>
      </form>
      <ErrorNote error={error} />
      {users && (
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Role</th>
            </tr>
          </thead>
          <tbody>
            {users.map((u) => (
              <tr key={u.id}>
                <td>{u.name}</td>
                <td>
                  <select value={u.role} onChange={(e) => setRole(u, e.target.value)}>
                    {roles.map((r) => (
                      <option key={r.id}>{r.name}</option>
                    ))}
                  </select>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Roles({ roles, reload }: { roles: Role[]; reload: () => void }) {
  const [form, setForm] = useState({ name: "", permissions: [] as string[] });
  const [error, setError] = useState<unknown>(null);
  const toggle = (p: string, on: boolean) => setForm({ ...form, permissions: on ? [...form.permissions, p] : form.permissions.filter((x) => x !== p) });
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      await api("POST", "/api/v1/roles", form);
      setForm({ name: "", permissions: [] });
      reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <div>
      <h3>Roles</h3>
      <table>
        <thead>
          <tr>
            <th>Role</th>
            <th>Permissions</th>
          </tr>
        </thead>
        <tbody>
          {roles.map((r) => (
            <tr key={r.id}>
              <td>
                {r.name}
                {r.builtin ? " (built-in)" : ""}
              </td>
              <td>{r.permissions.join(", ")}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form onSubmit={submit} className="inline">
        <input name="roleName" placeholder="new role" value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} required />
        {RESOURCES.flatMap((r) => ["read", "write"].map((a) => `${r}:${a}`)).map((p) => (
          <label key={p} className="check">
            <input type="checkbox" checked={form.permissions.includes(p)} onChange={(e) => toggle(p, e.target.checked)} /> {p}
          </label>
        ))}
        <button type="submit">Add role</button>
      </form>
      <ErrorNote error={error} />
    </div>
  );
}

export function Access({ canManageUsers }: { canManageUsers: boolean }) {
  const [roles, setRoles] = useState<Role[]>([]);
  const loadRoles = () => void api<Role[]>("GET", "/api/v1/roles").then(setRoles, () => setRoles([]));
  useEffect(() => {
    if (canManageUsers) loadRoles();
  }, [canManageUsers]);
  return (
    <section>
      <h2>Users and access</h2>
      <Tokens />
      {canManageUsers && <Users roles={roles} />}
      {canManageUsers && <Roles roles={roles} reload={loadRoles} />}
    </section>
  );
}
