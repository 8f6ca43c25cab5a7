import { ApiError } from "../api";

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : new ApiError(0, "DF_ERR_INTERNAL", String((error as Error)?.message ?? error));
  return (
    <p className="error" role="alert">
      {e.message} <code>{e.code}</code>
    </p>
  );
}
