import type { Generated, Insertable, Selectable } from "kysely";

// The manager's tables, the same in SQLite and PostgreSQL. Times are ISO-8601
// text and JSON columns are text, so one schema serves both databases.
// Secrets are never stored: passwords as scrypt hashes, session and personal
// access tokens as SHA-256 of high-entropy random values, and the registry
// credentials a preheat job carries stay in memory only.

export interface UsersTable {
  id: Generated<number>;
  name: string;
  password_hash: string;
  role_id: number;
  created_at: string;
  updated_at: string;
}

export interface RolesTable {
  id: Generated<number>;
  name: string;
  description: string;
  // JSON array of "resource:action" ("*" for every permission).
  permissions: string;
  builtin: number;
  created_at: string;
}

export interface SessionsTable {
  id: Generated<number>;
  token_hash: string;
  user_id: number;
  expires_at: string;
  created_at: string;
}

export interface PersonalAccessTokensTable {
  id: Generated<number>;
  name: string;
  token_hash: string;
  user_id: number;
  // JSON array of resources the token may act on.
  scopes: string;
  expires_at: string;
  created_at: string;
  last_used_at: string | null;
}

export interface AuditsTable {
  id: Generated<number>;
  user_id: number | null;
  user_name: string;
  method: string;
  path: string;
  resource: string;
  resource_id: string;
  status_code: number;
  created_at: string;
}

export interface SchedulerClustersTable {
  id: Generated<number>;
  name: string;
  description: string;
  // JSON object of SchedulerClusterConfig keys (camelCase).
  config: string;
  created_at: string;
  updated_at: string;
}

export interface SchedulersTable {
  id: Generated<number>;
  cluster_id: number;
  hostname: string;
  ip: string;
  port: number;
  last_seen_at: string;
  created_at: string;
  updated_at: string;
}

export interface JobsTable {
  id: Generated<number>;
  type: string;
  state: string;
  // JSON of the request args, without headers (they may carry credentials).
  args: string;
  scheduler_cluster_ids: string;
  // JSON of the Harbor-shaped result, or "{}".
  result: string;
  error: string;
  user_id: number;
  created_at: string;
  updated_at: string;
}

export interface Tables {
  users: UsersTable;
  roles: RolesTable;
  sessions: SessionsTable;
  personal_access_tokens: PersonalAccessTokensTable;
  audits: AuditsTable;
  scheduler_clusters: SchedulerClustersTable;
  schedulers: SchedulersTable;
  jobs: JobsTable;
}

export type User = Selectable<UsersTable>;
export type Role = Selectable<RolesTable>;
export type Token = Selectable<PersonalAccessTokensTable>;
export type Audit = Selectable<AuditsTable>;
export type SchedulerCluster = Selectable<SchedulerClustersTable>;
export type SchedulerRow = Selectable<SchedulersTable>;
export type Job = Selectable<JobsTable>;
export type NewJob = Insertable<JobsTable>;
