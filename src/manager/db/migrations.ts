import { sql, type Kysely, type Migration, type MigrationProvider } from "kysely";

// One list of migrations for SQLite and PostgreSQL. Only the primary key
// differs (serial in PostgreSQL, INTEGER PRIMARY KEY AUTOINCREMENT in SQLite);
// everything else uses types both understand.
export type Dialect = "sqlite" | "postgres";

type CreateTable = (db: Kysely<unknown>, table: string) => ReturnType<Kysely<unknown>["schema"]["createTable"]>;

function migrations(dialect: Dialect): Record<string, Migration> {
  const pk: CreateTable = (db, table) =>
    dialect === "postgres"
      ? db.schema.createTable(table).addColumn("id", "serial", (c) => c.primaryKey())
      : db.schema.createTable(table).addColumn("id", "integer", (c) => c.primaryKey().autoIncrement());
  return {
    "0001_init": {
      async up(db) {
        await createAccessTables(db, pk);
        await createClusterTables(db, pk);
        await sql`SELECT 1`.execute(db);
      },
    },
  };
}

// Users, roles, sessions, tokens and the audit log.
async function createAccessTables(db: Kysely<unknown>, pk: CreateTable): Promise<void> {
  await pk(db, "roles")
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn("description", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("permissions", "text", (c) => c.notNull())
    .addColumn("builtin", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
  await pk(db, "users")
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn("password_hash", "text", (c) => c.notNull())
    .addColumn("role_id", "integer", (c) => c.notNull().references("roles.id"))
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .execute();
  await pk(db, "sessions")
    .addColumn("token_hash", "text", (c) => c.notNull().unique())
    .addColumn("user_id", "integer", (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn("expires_at", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
  await pk(db, "personal_access_tokens")
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("token_hash", "text", (c) => c.notNull().unique())
    .addColumn("user_id", "integer", (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn("scopes", "text", (c) => c.notNull())
    .addColumn("expires_at", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("last_used_at", "text")
    .execute();
  await pk(db, "audits")
    .addColumn("user_id", "integer")
    .addColumn("user_name", "text", (c) => c.notNull())
    .addColumn("method", "text", (c) => c.notNull())
    .addColumn("path", "text", (c) => c.notNull())
    .addColumn("resource", "text", (c) => c.notNull())
    .addColumn("resource_id", "text", (c) => c.notNull())
    .addColumn("status_code", "integer", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
}

// Scheduler clusters, their schedulers and the jobs run on them.
async function createClusterTables(db: Kysely<unknown>, pk: CreateTable): Promise<void> {
  await pk(db, "scheduler_clusters")
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn("description", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("config", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .execute();
  await pk(db, "schedulers")
    .addColumn("cluster_id", "integer", (c) => c.notNull().references("scheduler_clusters.id").onDelete("cascade"))
    .addColumn("hostname", "text", (c) => c.notNull())
    .addColumn("ip", "text", (c) => c.notNull())
    .addColumn("port", "integer", (c) => c.notNull())
    .addColumn("last_seen_at", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addUniqueConstraint("schedulers_ip_port", ["ip", "port"])
    .execute();
  await pk(db, "jobs")
    .addColumn("type", "text", (c) => c.notNull())
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("args", "text", (c) => c.notNull())
    .addColumn("scheduler_cluster_ids", "text", (c) => c.notNull())
    .addColumn("result", "text", (c) => c.notNull())
    .addColumn("error", "text", (c) => c.notNull().defaultTo(""))
    .addColumn("user_id", "integer", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("jobs_state").on("jobs").column("state").execute();
  await db.schema.createIndex("audits_created_at").on("audits").column("created_at").execute();
}

export function migrationProvider(dialect: Dialect): MigrationProvider {
  return { getMigrations: async () => migrations(dialect) };
}
