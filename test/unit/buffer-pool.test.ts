import { test } from "node:test";
import assert from "node:assert/strict";
import { BufferPool } from "../../src/peer/buffer-pool.js";

test("a buffer put back is handed out again, also when given back as a view", () => {
  const pool = new BufferPool(1024);
  const a = pool.get(100);
  pool.put(a);
  assert.equal(pool.idleBytes, 100);
  assert.equal(pool.get(100), a);
  pool.put(a.subarray(10, 20));
  const b = pool.get(100);
  assert.equal(b.buffer, a.buffer);
  assert.equal(b.length, 100);
  assert.equal(pool.idleBytes, 0);
});

test("memory the pool did not hand out is ignored", () => {
  const pool = new BufferPool(1024);
  pool.put(Buffer.alloc(100));
  pool.put(Buffer.allocUnsafe(100));
  assert.equal(pool.idleBytes, 0);
});

test("the cap holds; idle buffers of other sizes make room for the size in use", () => {
  const pool = new BufferPool(300);
  const small = [pool.get(100), pool.get(100), pool.get(100)];
  for (const b of small) pool.put(b);
  assert.equal(pool.idleBytes, 300);
  const big = pool.get(200);
  pool.put(big);
  assert.equal(pool.idleBytes, 300, "two small ones dropped for the big one");
  assert.equal(pool.get(200), big);
  pool.put(pool.get(400));
  assert.equal(pool.idleBytes, 100, "larger than the cap: not kept");
});

test("a reservation keeps buffers beyond the cap until it is released", () => {
  const pool = new BufferPool(100);
  const release = pool.reserve(1000, 2);
  const a = pool.get(1000);
  const b = pool.get(1000);
  pool.put(a);
  pool.put(b);
  assert.equal(pool.idleBytes, 2000);
  release();
  assert.equal(pool.idleBytes, 0);
  release();
  pool.put(pool.get(1000));
  assert.equal(pool.idleBytes, 0);
});
