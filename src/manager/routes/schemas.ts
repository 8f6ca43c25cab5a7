import { Type } from "@sinclair/typebox";

// Request/response shapes shared by the route files (TypeBox: JSON Schema
// for Fastify's validation and the OpenAPI document, types for TypeScript).

export const IdParams = Type.Object({ id: Type.Integer({ minimum: 1 }) });

export const ErrorBody = Type.Object({ code: Type.String(), message: Type.String() }, { $id: "Error" });

export const Name = Type.String({ minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$" });
export const Password = Type.String({ minLength: 8, maxLength: 256 });

export const UserBody = Type.Object({ id: Type.Integer(), name: Type.String(), role: Type.String(), created_at: Type.String(), updated_at: Type.String() });

export const Permission = Type.String({ pattern: "^(\\*|(cluster|job|user|role|audit):(read|write))$" });

export const errorResponses = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };
