// A minimal ustar writer/reader for checkpoint archives: a checkpoint is one object in R2, and a
// tar of plain files is what every user can open (`tar xf`) to get a PEFT adapter folder or a full
// Hugging Face checkpoint. Regular files only, no directories; mtime 0 so archives are reproducible.
const BLOCK = 512;

function writeString(buf: Uint8Array, offset: number, length: number, value: string): void {
  const bytes = new TextEncoder().encode(value);
  buf.set(bytes.subarray(0, length), offset);
}

function writeOctal(buf: Uint8Array, offset: number, length: number, value: number): void {
  writeString(buf, offset, length, `${value.toString(8).padStart(length - 1, '0')}\0`);
}

export interface TarEntry {
  name: string;
  data: Uint8Array;
}

export function createTar(entries: readonly TarEntry[]): Uint8Array {
  const size = entries.reduce((n, e) => n + BLOCK + Math.ceil(e.data.length / BLOCK) * BLOCK, 2 * BLOCK);
  const out = new Uint8Array(size);
  let at = 0;
  for (const e of entries) {
    if (new TextEncoder().encode(e.name).length > 100) throw new Error(`tar: name too long: ${e.name}`);
    const h = out.subarray(at, at + BLOCK);
    writeString(h, 0, 100, e.name);
    writeOctal(h, 100, 8, 0o644);
    writeOctal(h, 108, 8, 0);
    writeOctal(h, 116, 8, 0);
    writeOctal(h, 124, 12, e.data.length);
    writeOctal(h, 136, 12, 0);
    h.fill(0x20, 148, 156);
    h[156] = 0x30; // '0': regular file
    writeString(h, 257, 6, 'ustar\0');
    writeString(h, 263, 2, '00');
    let sum = 0;
    for (const b of h) sum += b;
    writeString(h, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
    at += BLOCK;
    out.set(e.data, at);
    at += Math.ceil(e.data.length / BLOCK) * BLOCK;
  }
  return out;
}

export function readTar(bytes: Uint8Array): TarEntry[] {
  const entries: TarEntry[] = [];
  const dec = new TextDecoder();
  let at = 0;
  while (at + BLOCK <= bytes.length) {
    const h = bytes.subarray(at, at + BLOCK);
    if (h.every((b) => b === 0)) break;
    const name = dec.decode(h.subarray(0, 100)).replace(/\0.*$/s, '');
    const size = Number.parseInt(dec.decode(h.subarray(124, 136)).replace(/\0.*$/s, '').trim() || '0', 8);
    const type = String.fromCharCode(h[156]);
    at += BLOCK;
    if (type === '0' || type === '\0') entries.push({ name, data: bytes.slice(at, at + size) });
    at += Math.ceil(size / BLOCK) * BLOCK;
  }
  return entries;
}
