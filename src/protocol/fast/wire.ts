import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";

// The protobuf wire primitives the hand codecs in this folder share, and the
// tags they use, taken from the generated descriptors: a field renumbered or
// retyped in a .proto changes the codec with it, or stops the process at
// load (fieldTag throws) instead of putting wrong bytes on the wire.

export const VARINT = 0;
export const LEN = 2;
// What a Reader returns for what the fast path does not take.
export const BAIL = -1;

// The protobuf type a codec expects of a field.
export type FieldType = "string" | "uint32" | "uint64" | "bool" | "enum" | "message" | "repeated message";

const SCALARS: Partial<Record<FieldType, ScalarType>> = {
  string: ScalarType.STRING,
  uint32: ScalarType.UINT32,
  uint64: ScalarType.UINT64,
  bool: ScalarType.BOOL,
};

function typeOf(f: DescField): FieldType | undefined {
  switch (f.fieldKind) {
    case "scalar":
      return (Object.keys(SCALARS) as FieldType[]).find((k) => SCALARS[k] === f.scalar);
    case "enum":
      return "enum";
    case "message":
      return "message";
    case "list":
      return f.listKind === "message" ? "repeated message" : undefined;
    default:
      return undefined;
  }
}

// The tag (field number and wire type) of `f`, which must be of type `want`.
export function fieldTag(f: DescField, want: FieldType): number {
  const got = typeOf(f);
  if (got !== want) throw new Error(`hand codec: ${f.parent.typeName}.${f.name} is ${got ?? f.fieldKind}, the codec expects ${want}`);
  return (f.number << 3) | (want === "string" || want === "message" || want === "repeated message" ? LEN : VARINT);
}

// The tags a codec uses of one message, by field name. `fields` lists them
// in the order given, which for a codec that handles every field of the
// message must be field number order (the order toBinary writes);
// test/unit/wire-conformance.test.ts checks that against the descriptor.
export interface MessageTags<K extends string> {
  readonly desc: DescMessage;
  readonly fields: readonly K[];
  readonly tag: Readonly<Record<K, number>>;
}

export function tagsOf<K extends string>(desc: DescMessage, types: Record<K, FieldType>): MessageTags<K> {
  const fields = Object.keys(types) as K[];
  const tag = {} as Record<K, number>;
  for (const k of fields) {
    const f = desc.field[k];
    if (!f) throw new Error(`hand codec: ${desc.typeName} has no field ${k}`);
    tag[k] = fieldTag(f, types[k]);
  }
  return { desc, fields, tag: Object.freeze(tag) };
}

// Read position over one message's bytes.
export class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  // Varints below 2^28 (at most 4 bytes): tags, lengths, uint32 values.
  // fromBinary reads longer ones with 32-bit wraparound: left to it.
  u28(end: number): number {
    let v = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (this.pos >= end) return BAIL;
      const b = this.buf[this.pos++]!;
      v |= (b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
    return BAIL;
  }

  // uint64 values below 2^49 (at most 7 bytes) as the bigint fromBinary gives.
  u49(end: number): bigint | undefined {
    let v = 0;
    let mul = 1;
    for (let k = 0; k < 7; k++) {
      if (this.pos >= end) return undefined;
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) return BigInt(v);
      mul *= 128;
    }
    return undefined;
  }

  // Length-delimited field: its end, or BAIL.
  span(end: number): number {
    const len = this.u28(end);
    if (len === BAIL || this.pos + len > end) return BAIL;
    return this.pos + len;
  }

  // ASCII strings only: any other byte is left to fromBinary's UTF-8 check.
  ascii(end: number): string | undefined {
    const e = this.span(end);
    if (e === BAIL) return undefined;
    const b = this.buf;
    for (let i = this.pos; i < e; i++) if (b[i]! >= 0x80) return undefined;
    const s = e === this.pos ? "" : b.toString("latin1", this.pos, e);
    this.pos = e;
    return s;
  }
}

// Bytes of `s` in UTF-8; a lone surrogate counts as U+FFFD (3 bytes), as
// TextEncoder and Buffer.write encode it.
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      // A pair: 2 UTF-16 units, 4 bytes.
      n += 2;
      i++;
    } else n += 2;
  }
  return n;
}

export function varintLength(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
// A uint64 as a number when it is one exactly, else as a bigint.
export const u64 = (v: bigint): number | bigint => (v <= MAX_SAFE ? Number(v) : v);

export function u64Length(v: number | bigint): number {
  if (typeof v === "number") return varintLength(v);
  let n = 1;
  while (v >= 128n) {
    v >>= 7n;
    n++;
  }
  return n;
}

// int32 (and enums) on the wire: negative values as their 64-bit two's complement.
export const int32 = (v: number): number | bigint => (v >= 0 ? v : BigInt.asUintN(64, BigInt(v)));

export class Writer {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start = 0,
  ) {
    this.pos = start;
  }

  varint(v: number): void {
    const b = this.buf;
    while (v >= 128) {
      b[this.pos++] = (v % 128) | 128;
      v = Math.floor(v / 128);
    }
    b[this.pos++] = v;
  }

  u64(v: number | bigint): void {
    if (typeof v === "number") return this.varint(v);
    while (v >= 128n) {
      this.buf[this.pos++] = Number(v & 127n) | 128;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  // A string field; `bytes`: utf8Length(s), already computed for the
  // enclosing message's length.
  string(tag: number, s: string, bytes: number): void {
    this.varint(tag);
    this.varint(bytes);
    if (bytes === s.length) {
      const b = this.buf;
      for (let i = 0; i < s.length; i++) b[this.pos++] = s.charCodeAt(i);
    } else {
      this.pos += this.buf.write(s, this.pos, bytes, "utf8");
    }
  }
}
