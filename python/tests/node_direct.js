// The reference side of the parity tests (python/tests/test_ops.py): calls the public API of dist/lib
// directly, in this Node process, on inputs given in a JSON file, and writes the results as JSON. It shares
// no code with the bridge: tensors arrive base64-encoded as {"$b64", dtype, shape, tensor}, built here as the
// TypeScript API's own types (a Tensor {data, shape, dtype} when "tensor" is true, else a TypedArray).
// Usage: node node_direct.js cases.json results.json
'use strict';
const fs = require('fs');
const path = require('path');
const api = require(path.resolve(__dirname, '..', '..', 'dist', 'lib', 'index.js'));

const KINDS = {
  float32: [Float32Array, 'f32'], float64: [Float64Array, 'f64'], float16: [Uint16Array, 'f16'], bfloat16: [Uint16Array, 'bf16'],
  int8: [Int8Array], uint8: [Uint8Array], int16: [Int16Array], uint16: [Uint16Array], int32: [Int32Array],
  uint32: [Uint32Array], int64: [BigInt64Array], uint64: [BigUint64Array], bool: [Uint8Array],
};

function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value === null || typeof value !== 'object') return value;
  if ('$b64' in value) {
    const [Ctor, tensorDtype] = KINDS[value.dtype];
    const bytes = Buffer.from(value.$b64, 'base64');
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    const data = new Ctor(copy.buffer, 0, bytes.length / Ctor.BYTES_PER_ELEMENT);
    return value.tensor ? { data, shape: value.shape, dtype: tensorDtype } : data;
  }
  if ('$num' in value) return Number(value.$num);
  const out = {};
  for (const [k, v] of Object.entries(value)) out[k] = decode(v);
  return out;
}

function encode(value) {
  if (typeof value === 'number') return Number.isFinite(value) ? value : { $num: String(value) };
  if (typeof value === 'bigint') return { $bigint: value.toString() };
  if (value === null || typeof value !== 'object') return value;
  if (ArrayBuffer.isView(value)) {
    const name = value.constructor.name;
    const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return { $b64: b.toString('base64'), kind: name, length: value.length };
  }
  if (Array.isArray(value)) return value.map(encode);
  const out = {};
  for (const [k, v] of Object.entries(value)) if (typeof v !== 'function' && v !== undefined) out[k] = encode(v);
  return out;
}

async function main() {
  const [input, output] = process.argv.slice(2);
  const cases = JSON.parse(fs.readFileSync(input, 'utf8'));
  const results = [];
  for (const c of cases) {
    try {
      const fn = c.op.split('.').reduce((o, k) => o[k], api);
      results.push({ ok: true, result: encode(await fn(...decode(c.args))) });
    } catch (error) {
      results.push({ ok: false, code: error.code, message: error.message });
    }
  }
  fs.writeFileSync(output, JSON.stringify(results));
}
main().catch((error) => {
  console.error(error);
  process.exit(1);
});
