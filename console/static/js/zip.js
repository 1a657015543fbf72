// Zip packages in the browser: build one from files, or rewrite a stored one keeping the entries
// that were not edited byte for byte (binary files, large files, file modes such as a custom
// runtime's executable bootstrap). No zip64: packages are at most 50 MiB and 65,535 entries.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// Unix regular file, rw-r--r--, in the high half of the external attributes.
const DEFAULT_ATTRS = (0o100644 << 16) >>> 0;
const MADE_BY_UNIX = (3 << 8) | 20;

async function deflateRaw(bytes) {
  if (typeof CompressionStream === "undefined") return null;
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate-raw"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// A new entry from the file's bytes: deflated when that is smaller.
export async function entryOf(path, bytes, attrs = DEFAULT_ATTRS) {
  const deflated = bytes.length > 64 ? await deflateRaw(bytes) : null;
  const useDeflate = deflated !== null && deflated.length < bytes.length;
  return {
    path,
    method: useDeflate ? 8 : 0,
    crc: crc32(bytes),
    size: bytes.length,
    data: useDeflate ? deflated : bytes,
    attrs,
    madeBy: MADE_BY_UNIX,
    time: 0,
    date: (1 << 5) | 1 | ((2020 - 1980) << 9),
  };
}

function fail(msg) {
  throw new Error(`the stored package cannot be edited here: ${msg}`);
}

// The entries of a zip, each with its compressed data as stored.
export function readEntries(buf) {
  const bytes = new Uint8Array(buf);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 65557); i--) {
    if (view.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail("no end of central directory (not a zip?)");
  const count = view.getUint16(eocd + 10, true);
  let p = view.getUint32(eocd + 16, true);
  if (count === 0xffff || p === 0xffffffff) fail("zip64 archives are not supported");
  const decoder = new TextDecoder();
  const entries = [];
  for (let n = 0; n < count; n++) {
    if (view.getUint32(p, true) !== 0x02014b50) fail("a broken central directory");
    const nameLen = view.getUint16(p + 28, true);
    const extraLen = view.getUint16(p + 30, true);
    const commentLen = view.getUint16(p + 32, true);
    const csize = view.getUint32(p + 20, true);
    const local = view.getUint32(p + 42, true);
    if (csize === 0xffffffff || local === 0xffffffff) fail("zip64 entries are not supported");
    const path = decoder.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    if (view.getUint32(local, true) !== 0x04034b50) fail(`a broken entry (${path})`);
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    entries.push({
      path,
      method: view.getUint16(p + 10, true),
      time: view.getUint16(p + 12, true),
      date: view.getUint16(p + 14, true),
      crc: view.getUint32(p + 16, true),
      size: view.getUint32(p + 24, true),
      data: bytes.subarray(start, start + csize),
      attrs: view.getUint32(p + 38, true),
      madeBy: view.getUint16(p + 4, true),
    });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

// The zip of these entries (UTF-8 names, no data descriptors).
export function writeZip(entries) {
  const encoder = new TextEncoder();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const e of entries) {
    const name = encoder.encode(e.path);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint16(6, 0x0800, true); // names are UTF-8
    local.setUint16(8, e.method, true);
    local.setUint16(10, e.time, true);
    local.setUint16(12, e.date, true);
    local.setUint32(14, e.crc, true);
    local.setUint32(18, e.data.length, true);
    local.setUint32(22, e.size, true);
    local.setUint16(26, name.length, true);
    local.setUint16(28, 0, true);
    parts.push(new Uint8Array(local.buffer), name, e.data);
    const cd = new DataView(new ArrayBuffer(46));
    cd.setUint32(0, 0x02014b50, true);
    cd.setUint16(4, e.madeBy, true);
    cd.setUint16(6, 20, true);
    cd.setUint16(8, 0x0800, true);
    cd.setUint16(10, e.method, true);
    cd.setUint16(12, e.time, true);
    cd.setUint16(14, e.date, true);
    cd.setUint32(16, e.crc, true);
    cd.setUint32(20, e.data.length, true);
    cd.setUint32(24, e.size, true);
    cd.setUint16(28, name.length, true);
    cd.setUint32(38, e.attrs, true);
    cd.setUint32(42, offset, true);
    central.push(new Uint8Array(cd.buffer), name);
    offset += 30 + name.length + e.data.length;
  }
  const cdSize = central.reduce((n, b) => n + b.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, entries.length, true);
  end.setUint16(10, entries.length, true);
  end.setUint32(12, cdSize, true);
  end.setUint32(16, offset, true);
  const all = [...parts, ...central, new Uint8Array(end.buffer)];
  const out = new Uint8Array(all.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of all) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

// A new package: `files` maps path to text.
export async function zipTexts(files) {
  const encoder = new TextEncoder();
  const entries = [];
  for (const [path, text] of Object.entries(files)) {
    entries.push(await entryOf(path, encoder.encode(text)));
  }
  return writeZip(entries);
}

// The stored package with text files changed (`texts`: path -> text, for new and changed files)
// and `removed` paths left out; every other entry is copied as it was.
export async function rewriteZip(stored, texts, removed) {
  const encoder = new TextEncoder();
  const out = [];
  const seen = new Set();
  for (const e of readEntries(stored)) {
    if (removed.has(e.path)) continue;
    if (Object.prototype.hasOwnProperty.call(texts, e.path)) {
      out.push(await entryOf(e.path, encoder.encode(texts[e.path]), e.attrs || DEFAULT_ATTRS));
      seen.add(e.path);
    } else {
      out.push(e);
    }
  }
  for (const [path, text] of Object.entries(texts)) {
    if (!seen.has(path)) out.push(await entryOf(path, encoder.encode(text)));
  }
  return writeZip(out);
}

export function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

export function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
