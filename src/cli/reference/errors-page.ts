// docs/reference/errors.md from the error table in src/common/error-codes.ts.
import { ERROR_CODES, ExitCode, RpcCode } from "../../common/errors.js";
import { code, generatedHeader, table } from "./markdown.js";

function nameOf(values: Record<string, number>, n: number): string {
  return Object.entries(values).find(([, v]) => v === n)?.[0] ?? String(n);
}

export function errorsPage(): string {
  const entries = Object.entries(ERROR_CODES) as [string, { message: string; when: string; exitCode: number; httpStatus: number; rpcCode: number }][];
  const exits = Object.entries(ExitCode).map(([name, n]) => [
    String(n),
    name.toLowerCase().replace(/_/g, " "),
    entries
      .filter(([, s]) => s.exitCode === n)
      .map(([c]) => code(c))
      .join(", "),
  ]);
  const codes = entries.map(([c, s]) => [code(c), String(s.exitCode), String(s.httpStatus), `${s.rpcCode} ${nameOf(RpcCode, s.rpcCode)}`, s.when]);
  return [
    generatedHeader("Error codes and exit codes", ["src/common/error-codes.ts"]),
    "Every error carries a stable code, used in logs, RPC metadata (`x-damselfly-error`), HTTP error bodies",
    '(`{"code": "DF_ERR_…", "message": "…"}`) and the CLI\'s `PREFIX: CODE: message` line; the process exits with',
    "the code's exit status. Codes are never reused or renamed.",
    "",
    "## Exit codes",
    "",
    table(["exit", "name", "error codes"], exits),
    "",
    "## Error codes",
    "",
    table(["code", "exit", "HTTP", "gRPC", "meaning"], codes),
    "",
  ].join("\n");
}
