import type { FastifyError, FastifyInstance } from "fastify";
import { DamselflyError, ERROR_CODES } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";

// Every error leaves the manager as {"code": "DF_ERR_...", "message": "..."}
// with the code's HTTP status. Internal details stay in the log.
export function installErrorHandlers(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: FastifyError | DamselflyError, req, reply) => {
    if (err instanceof DamselflyError) {
      if (err.httpStatus >= 500) log.error({ code: err.code, err: err.message, method: req.method, url: req.routeOptions.url }, "request failed");
      return reply.status(err.httpStatus).send({ code: err.code, message: err.message });
    }
    const fe = err as FastifyError;
    if (fe.validation) {
      return reply.status(400).send({ code: "DF_ERR_INVALID_REQUEST", message: `invalid request: ${fe.message}` });
    }
    const status = typeof fe.statusCode === "number" ? fe.statusCode : 500;
    if (status >= 400 && status < 500) {
      return reply.status(status).send({ code: "DF_ERR_INVALID_REQUEST", message: fe.message });
    }
    log.error({ err: fe.message, stack: fe.stack, method: req.method, url: req.routeOptions.url }, "request failed");
    return reply.status(500).send({ code: "DF_ERR_INTERNAL", message: ERROR_CODES.DF_ERR_INTERNAL.message });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send({ code: "DF_ERR_NOT_FOUND", message: `no route ${req.method} ${req.url.split("?")[0]}` });
  });
}

export function notFound(what: string): DamselflyError {
  return new DamselflyError("DF_ERR_NOT_FOUND", `${what} not found`);
}

export function conflict(what: string): DamselflyError {
  return new DamselflyError("DF_ERR_CONFLICT", `${what} already exists`);
}

export function badRequest(why: string): DamselflyError {
  return new DamselflyError("DF_ERR_INVALID_REQUEST", why);
}

// Unique-constraint violations from either database.
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === "23505" || e?.code === "SQLITE_CONSTRAINT_UNIQUE" || /UNIQUE constraint failed/.test(e?.message ?? "");
}
