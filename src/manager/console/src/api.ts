// The console's only way to the manager: the same REST API as every other
// client, with the session token from sign-in (kept in sessionStorage, so it
// ends with the tab).

const KEY = "damselfly.session";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function session(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setSession(token: string | null): void {
  if (token) sessionStorage.setItem(KEY, token);
  else sessionStorage.removeItem(KEY);
}

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  const token = session();
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  } catch {
    throw new ApiError(0, "DF_ERR_MANAGER_UNAVAILABLE", "the manager cannot be reached");
  }
  const text = await res.text();
  const json = text ? (JSON.parse(text) as unknown) : undefined;
  if (!res.ok) {
    const e = (json ?? {}) as { code?: string; message?: string };
    if (res.status === 401 && path !== "/api/v1/users/signin") {
      setSession(null);
      window.dispatchEvent(new Event("damselfly:signed-out"));
    }
    throw new ApiError(res.status, e.code ?? "DF_ERR_INTERNAL", e.message ?? res.statusText);
  }
  return json as T;
}

export interface User {
  id: number;
  name: string;
  role: string;
  permissions?: string[];
}
export interface Cluster {
  id: number;
  name: string;
  description: string;
  config: Record<string, number>;
}
export interface Scheduler {
  id: number;
  cluster_id: number;
  hostname: string;
  ip: string;
  port: number;
  state: string;
  last_seen_at: string;
}
export interface Host {
  id: string;
  hostname: string;
  ip: string;
  type: string;
  upload_port: number;
  upload_bytes_total: number;
  concurrent_uploads: number;
}
export interface Job {
  id: number;
  type: string;
  state: string;
  args: { type?: string; url?: string; task_id?: string; scope?: string; recursive?: boolean; include?: string[]; exclude?: string[] };
  result: {
    job_states?: {
      error: string;
      results: {
        scheduler_cluster_id: number;
        success_tasks?: { url: string; hostname: string }[];
        failure_tasks?: { url: string; hostname: string; description: string }[];
        peers?: { hostname: string; state: string }[];
      }[];
    }[];
  };
  error: string;
  created_at: string;
  updated_at: string;
}
export interface Role {
  id: number;
  name: string;
  permissions: string[];
  builtin: boolean;
}
export interface Token {
  id: number;
  name: string;
  scopes: string[];
  expires_at: string;
  last_used_at: string | null;
  token?: string;
}
