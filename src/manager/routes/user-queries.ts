import { ROOT_ROLE } from "../auth/permissions.js";
import { badRequest } from "../http/errors.js";
import type { RouteContext } from "./context.js";

type Db = RouteContext["database"]["db"];

// The queries the user and session routes share.
export function userQueries(db: Db) {
  const view = (id: number) =>
    db
      .selectFrom("users")
      .innerJoin("roles", "roles.id", "users.role_id")
      .select(["users.id as id", "users.name as name", "roles.name as role", "users.created_at as created_at", "users.updated_at as updated_at"])
      .where("users.id", "=", id)
      .executeTakeFirst();
  // A user's role with its permissions; undefined for no such user.
  const roleOf = async (userId: number) => {
    const r = await db
      .selectFrom("users")
      .innerJoin("roles", "roles.id", "users.role_id")
      .select(["roles.name as name", "roles.permissions as permissions"])
      .where("users.id", "=", userId)
      .executeTakeFirst();
    return r && { name: r.name, permissions: JSON.parse(r.permissions) as string[] };
  };
  const role = async (name: string) => {
    const r = await db.selectFrom("roles").select(["id", "permissions"]).where("name", "=", name).executeTakeFirst();
    if (!r) throw badRequest(`role ${JSON.stringify(name)} does not exist`);
    return { id: r.id, name, permissions: JSON.parse(r.permissions) as string[] };
  };
  const rootCount = async () =>
    Number(
      (
        await db
          .selectFrom("users")
          .innerJoin("roles", "roles.id", "users.role_id")
          .select((eb) => eb.fn.countAll().as("n"))
          .where("roles.name", "=", ROOT_ROLE)
          .executeTakeFirstOrThrow()
      ).n,
    );
  return { view, roleOf, role, rootCount };
}

export type UserQueries = ReturnType<typeof userQueries>;
