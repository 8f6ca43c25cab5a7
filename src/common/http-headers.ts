// RFC 9110 token characters: what a header name may contain.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// A value must not smuggle a second header or request.
const BAD_VALUE = /[\r\n\0]/;

export function isHeaderName(name: string): boolean {
  return HEADER_NAME.test(name);
}

export function isHeaderValue(value: string): boolean {
  return !BAD_VALUE.test(value);
}
