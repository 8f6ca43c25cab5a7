// The hand codecs in src/protocol/fast/ against the generated descriptors:
// they take their tags from the descriptors, and here every field of the
// messages they handle must be one they handle, in field number order (the
// order toBinary writes). Adding a field to one of these messages fails this
// test until the codec writes or reads it. Byte-for-byte agreement with
// toBinary/fromBinary is tested beside each codec.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ScalarType } from "@bufbuild/protobuf";
import { schedulerv1 as S } from "../../src/protocol/index.js";
import { ANNOUNCE_PEER_REQUEST, ANNOUNCE_PEER_RESPONSE, WHOLE } from "../../src/protocol/fast/scheduler-tags.js";
import { fieldTag } from "../../src/protocol/fast/wire.js";

test("the hand codecs handle every field of the messages they handle whole, in field number order", () => {
  for (const m of WHOLE) {
    const byNumber = [...m.desc.fields].sort((a, b) => a.number - b.number).map((f) => f.localName);
    assert.deepEqual(m.fields, byNumber, m.desc.typeName);
  }
});

test("AnnouncePeerResponse: the codecs know every answer kind", () => {
  const oneof = ANNOUNCE_PEER_RESPONSE.desc.oneofs.find((o) => o.localName === "response")!;
  assert.deepEqual([...ANNOUNCE_PEER_RESPONSE.fields].sort(), oneof.fields.map((f) => f.localName).sort());
});

test("tags are the descriptors' field numbers and wire types", () => {
  for (const m of [...WHOLE, ANNOUNCE_PEER_REQUEST, ANNOUNCE_PEER_RESPONSE]) {
    for (const k of m.fields) {
      const f = m.desc.field[k]!;
      const len = f.fieldKind === "message" || f.fieldKind === "list" || (f.fieldKind === "scalar" && f.scalar === ScalarType.STRING);
      assert.equal((m.tag as Record<string, number>)[k], (f.number << 3) | (len ? 2 : 0), `${m.desc.typeName}.${k}`);
    }
  }
});

test("fieldTag derives tags from the descriptors and refuses a type the codec does not expect", () => {
  const f = S.PiecesFinishedRequestSchema.field.pieces;
  assert.equal(fieldTag(f, "repeated message"), (f.number << 3) | 2);
  assert.equal(fieldTag(S.PieceFinishedRequestSchema.field.length, "uint64"), (S.PieceFinishedRequestSchema.field.length.number << 3) | 0);
  assert.equal(fieldTag(S.AnnouncePeerRequestSchema.field.piecesFinished, "message"), (20 << 3) | 2);
  assert.throws(() => fieldTag(S.PieceFinishedRequestSchema.field.length, "uint32"), /PieceFinishedRequest\.length is uint64, the codec expects uint32/);
});
