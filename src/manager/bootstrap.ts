import type { Database } from "./db/database.js";
import { GUEST_PERMISSIONS, GUEST_ROLE, ROOT_PERMISSIONS, ROOT_ROLE } from "./auth/permissions.js";
import { hashPassword, newPassword } from "./auth/secrets.js";

export interface BootstrapResult {
  // Set only when this start created the root user with a generated password.
  generatedPassword?: string;
  createdRoot: boolean;
}

// First start: the built-in roles, a default scheduler cluster (id 1, what
// schedulers join when told nothing else), and the root user, whose password
// comes from DAMSELFLY_ADMIN_PASSWORD or is generated and shown once.
export async function bootstrap(database: Database, adminPassword: string | undefined): Promise<BootstrapResult> {
  const { db } = database;
  const t = new Date().toISOString();
  for (const [name, permissions, description] of [
    [ROOT_ROLE, ROOT_PERMISSIONS, "every permission"],
    [GUEST_ROLE, GUEST_PERMISSIONS, "reads clusters and jobs"],
  ] as const) {
    const has = await db.selectFrom("roles").select("id").where("name", "=", name).executeTakeFirst();
    if (!has)
      await db
        .insertInto("roles")
        .values({ name, description, permissions: JSON.stringify(permissions), builtin: 1, created_at: t })
        .execute();
  }
  const cluster = await db.selectFrom("scheduler_clusters").select("id").limit(1).executeTakeFirst();
  if (!cluster)
    await db
      .insertInto("scheduler_clusters")
      .values({ name: "default", description: "created on first start", config: "{}", created_at: t, updated_at: t })
      .execute();

  const anyUser = await db.selectFrom("users").select("id").limit(1).executeTakeFirst();
  if (anyUser) return { createdRoot: false };
  const root = await db.selectFrom("roles").select("id").where("name", "=", ROOT_ROLE).executeTakeFirstOrThrow();
  const password = adminPassword !== undefined && adminPassword !== "" ? adminPassword : newPassword();
  await db
    .insertInto("users")
    .values({ name: "root", password_hash: await hashPassword(password), role_id: root.id, created_at: t, updated_at: t })
    .execute();
  return password === adminPassword ? { createdRoot: true } : { createdRoot: true, generatedPassword: password };
}
