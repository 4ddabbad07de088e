import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  floatToBf16,
  floatToHalf,
  halfToFloat,
  openCheckpointTensors,
  readSafetensorsHeader,
  readTensorF32,
  SafetensorsError,
  writeSafetensors,
} from './safetensors';

const tmp = () => mkdtempSync(join(tmpdir(), 'st-'));

describe('safetensors', () => {
  it('round-trips f32 exactly and f16/bf16 within their precision', () => {
    const dir = tmp();
    const data = Float32Array.from([0, 1, -2.5, 3.25, 1e-3, 65504, -1e-8, 0.1]);
    const p = join(dir, 'a.safetensors');
    writeSafetensors(p, {
      'b.f32': { shape: [2, 4], data },
      'a.f16': { shape: [8], data, dtype: 'F16' },
      'c.bf16': { shape: [4, 2], data, dtype: 'BF16' },
    });
    const h = readSafetensorsHeader(p);
    expect([...h.tensors.keys()]).toEqual(['a.f16', 'b.f32', 'c.bf16']);
    expect(h.tensors.get('c.bf16')?.shape).toEqual([4, 2]);
    expect(h.metadata).toEqual({ format: 'pt' });
    expect(readTensorF32(h, 'b.f32')).toEqual(data);
    const f16 = readTensorF32(h, 'a.f16');
    const bf16 = readTensorF32(h, 'c.bf16');
    for (let i = 0; i < data.length; i++) {
      expect(Math.abs(f16[i] - data[i])).toBeLessThanOrEqual(Math.abs(data[i]) * 2 ** -11 + 6e-8);
      expect(Math.abs(bf16[i] - data[i])).toBeLessThanOrEqual(Math.abs(data[i]) * 2 ** -8);
    }
    // the header is 8-byte aligned, as the format recommends
    const len = Number(readFileSync(p).readBigUInt64LE(0));
    expect((8 + len) % 8).toBe(0);
  });

  it('decodes half and bfloat16 bit patterns', () => {
    expect(halfToFloat(0x3c00)).toBe(1);
    expect(halfToFloat(0xc000)).toBe(-2);
    expect(halfToFloat(0x7bff)).toBe(65504);
    expect(halfToFloat(0x0001)).toBe(2 ** -24);
    expect(halfToFloat(0x7c00)).toBe(Number.POSITIVE_INFINITY);
    expect(floatToHalf(1)).toBe(0x3c00);
    expect(floatToHalf(2 ** -24)).toBe(0x0001);
    expect(floatToHalf(1e6)).toBe(0x7c00);
    expect(floatToBf16(1)).toBe(0x3f80);
    expect(floatToBf16(-2)).toBe(0xc000);
    // round to nearest even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7
    expect(floatToBf16(1 + 2 ** -8)).toBe(0x3f80);
  });

  it('reads sharded checkpoints through model.safetensors.index.json', () => {
    const dir = tmp();
    writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), {
      x: { shape: [2], data: Float32Array.from([1, 2]) },
    });
    writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), {
      y: { shape: [1], data: Float32Array.from([3]) },
    });
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({
        metadata: {},
        weight_map: { x: 'model-00001-of-00002.safetensors', y: 'model-00002-of-00002.safetensors' },
      }),
    );
    const ck = openCheckpointTensors(dir);
    expect(ck.names().sort()).toEqual(['x', 'y']);
    expect(ck.shape('x')).toEqual([2]);
    expect([...ck.read('x').data]).toEqual([1, 2]);
    expect([...ck.read('y').data]).toEqual([3]);
    expect(() => ck.read('z')).toThrow(/checkpoint_missing_tensor/);
  });

  it('rejects a folder without weights and a corrupt header with codes', () => {
    const dir = tmp();
    expect(() => openCheckpointTensors(dir)).toThrow(/checkpoint_no_weights/);
    const p = join(dir, 'bad.safetensors');
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(1000n);
    writeFileSync(p, b);
    let err: unknown;
    try {
      readSafetensorsHeader(p);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).code).toBe('safetensors_truncated');
  });
});
