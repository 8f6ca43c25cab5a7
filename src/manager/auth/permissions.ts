// Role-based access: a role holds "resource:action" permissions; root holds
// "*". A personal access token additionally names the resources (scopes) it
// may act on, so a token handed to Harbor can only run jobs.

export const RESOURCES = ["cluster", "job", "user", "role", "audit"] as const;
export type Resource = (typeof RESOURCES)[number];
export type Action = "read" | "write";

export const ROOT_ROLE = "root";
export const GUEST_ROLE = "guest";
export const ROOT_PERMISSIONS = ["*"];
// Guests see clusters and jobs, change nothing.
export const GUEST_PERMISSIONS = ["cluster:read", "job:read"];

export const PERMISSION_RE = /^(cluster|job|user|role|audit):(read|write)$/;

export function allows(permissions: readonly string[], resource: Resource, action: Action): boolean {
  if (permissions.includes("*")) return true;
  // Writing implies reading.
  return permissions.includes(`${resource}:${action}`) || (action === "read" && permissions.includes(`${resource}:write`));
}
