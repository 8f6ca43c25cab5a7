import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from "kysely";
import { DamselflyError } from "../../common/errors.js";
import { migrationProvider, type Dialect } from "./migrations.js";
import type { Tables } from "./tables.js";

export interface Database {
  readonly db: Kysely<Tables>;
  readonly dialect: Dialect;
  close(): Promise<void>;
}

const require = createRequire(import.meta.url);

// "sqlite:PATH" (embedded, better-sqlite3) or "postgres://..." (pg). The
// driver for the other database is never loaded.
export async function openDatabase(url: string): Promise<Database> {
  let db: Kysely<Tables>;
  let dialect: Dialect;
  if (url.startsWith("sqlite:")) {
    const path = resolve(url.slice("sqlite:".length));
    if (path === "") throw new DamselflyError("DF_ERR_CONFIG", "database sqlite: needs a path");
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const BetterSqlite = require("better-sqlite3") as typeof import("better-sqlite3");
    let raw: import("better-sqlite3").Database;
    try {
      raw = new BetterSqlite(path);
    } catch (err) {
      throw new DamselflyError("DF_ERR_DATABASE", `cannot open ${path}: ${(err as Error).message}`, { cause: err });
    }
    // WAL lets the API read while a job writes; foreign keys are off by
    // default in SQLite.
    raw.pragma("journal_mode = WAL");
    raw.pragma("foreign_keys = ON");
    raw.pragma("busy_timeout = 5000");
    db = new Kysely<Tables>({ dialect: new SqliteDialect({ database: raw }) });
    dialect = "sqlite";
  } else if (/^postgres(ql)?:\/\//.test(url)) {
    const pg = require("pg") as typeof import("pg");
    const pool = new pg.Pool({ connectionString: url, max: 10 });
    db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
    dialect = "postgres";
  } else {
    throw new DamselflyError("DF_ERR_CONFIG", `database ${JSON.stringify(url)}: expected sqlite:PATH or postgres://...`);
  }
  const migrator = new Migrator({ db, provider: migrationProvider(dialect) });
  const { error } = await migrator.migrateToLatest();
  if (error) {
    await db.destroy();
    throw new DamselflyError("DF_ERR_DATABASE", `migrating the database failed: ${(error as Error).message ?? String(error)}`, { cause: error });
  }
  return { db, dialect, close: () => db.destroy() };
}
