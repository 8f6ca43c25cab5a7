// The store is private to the daemon's user: task data may be a tenant's
// private blob, so no other local user reads it from disk (they get it
// through the API, which checks, and by stream: docs/operations/security.md,
// "Tenant isolation").
export const STORE_DIR_MODE = 0o700;
export const STORE_FILE_MODE = 0o600;
