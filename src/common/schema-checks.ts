// Checks and field groups the config schemas (schemas.ts) share.
import { field } from "./config.js";
import { parseHostPort } from "./address.js";

export const positive = (v: number) => (v > 0 ? undefined : "must be > 0");

export const httpUrl = (v: string) => {
  try {
    const u = new URL(v);
    return u.protocol === "http:" || u.protocol === "https:" ? undefined : "must be an http(s) URL";
  } catch {
    return "must be an http(s) URL";
  }
};
export const regexList = (v: string[]) => {
  for (const r of v) {
    try {
      new RegExp(r);
    } catch (err) {
      return `${JSON.stringify(r)} is not a regular expression: ${(err as Error).message}`;
    }
  }
  return undefined;
};

export const optionalHttpUrl = (v: string) => (v === "" ? undefined : httpUrl(v));
export const optionalAddress = (v: string) => {
  if (v === "") return undefined;
  try {
    parseHostPort(v);
    return undefined;
  } catch {
    return "must be HOST:PORT (or empty: off)";
  }
};
// Mutual TLS (docs/operations/security.md): the three together, or none.
export const tlsGroup = () => ({
  ca: field("string", "", "cluster CA certificate (PEM): only peers with a certificate it issued are served or dialled", { flag: true, legacy: "tlsCa" }),
  cert: field("string", "", "this component's certificate (PEM, its role in a spiffe://damselfly/ROLE/NAME URI SAN); re-read when it changes", {
    flag: true,
    legacy: "tlsCert",
  }),
  key: field("string", "", "this component's private key (PEM); re-read when it changes", { flag: true, legacy: "tlsKey" }),
});
export const insecureField = () =>
  field("bool", false, "without --tls-*: allow listening on non-loopback addresses in cleartext, unauthenticated (a network you trust only)");
