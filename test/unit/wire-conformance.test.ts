// The hand codecs in src/protocol/fast/ against the generated descriptors:
// they take their tags from the descriptors, and here every field of the
// messages they handle must be one they handle, in field number order (the
// order toBinary writes). Adding a field to one of these messages fails this
// test until the codec writes or reads it. Byte-for-byte agreement with
// toBinary/fromBinary is tested beside each codec.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { DescMessage } from "@bufbuild/protobuf";
import { schedulerv1 as S } from "../../src/protocol/index.js";
import { DECODED_FIELDS } from "../../src/protocol/fast/announce-peer-decoder.js";
import { ENCODED_FIELDS } from "../../src/protocol/fast/normal-task-encoder.js";
import { ENCODED_FIELDS as CLIENT_ENCODED_FIELDS } from "../../src/protocol/fast/announce-peer-client.js";
import { fieldTag } from "../../src/protocol/fast/wire.js";

const bySchema = new Map<string, DescMessage>();
for (const v of Object.values(S) as unknown[]) {
  const d = v as DescMessage;
  if (typeof v === "object" && v !== null && d.kind === "message") bySchema.set(d.typeName, d);
}

function assertCovers(what: string, fields: Record<string, readonly string[]>): void {
  for (const [typeName, names] of Object.entries(fields)) {
    const desc = bySchema.get(typeName);
    assert.ok(desc, `${what}: ${typeName} is not a generated message`);
    const byNumber = [...desc.fields].sort((a, b) => a.number - b.number).map((f) => f.localName);
    assert.deepEqual(names, byNumber, `${what}: ${typeName}'s fields, in field number order`);
  }
}

test("the AnnouncePeerRequest decoder reads every field of the messages it decodes", () => {
  assertCovers("decoder", DECODED_FIELDS);
});

test("the normal_task encoder writes every field of the messages it encodes", () => {
  assertCovers("encoder", ENCODED_FIELDS);
});

test("the daemon-side AnnouncePeerRequest encoder writes every field of the messages it encodes", () => {
  assertCovers("client encoder", CLIENT_ENCODED_FIELDS);
});

test("fieldTag derives tags from the descriptors and refuses a type the codec does not expect", () => {
  const f = S.PiecesFinishedRequestSchema.field.pieces;
  assert.equal(fieldTag(f, "repeated message"), (f.number << 3) | 2);
  assert.equal(fieldTag(S.PieceFinishedRequestSchema.field.length, "uint64"), (S.PieceFinishedRequestSchema.field.length.number << 3) | 0);
  assert.equal(fieldTag(S.AnnouncePeerRequestSchema.field.piecesFinished, "message"), (20 << 3) | 2);
  assert.throws(() => fieldTag(S.PieceFinishedRequestSchema.field.length, "uint32"), /PieceFinishedRequest\.length is uint64, the codec expects uint32/);
});
