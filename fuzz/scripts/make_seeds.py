#!/usr/bin/env python3
"""Regenerates the seed inputs of the fuzz targets from the conformance vectors.

    python3 fuzz/scripts/make_seeds.py          (from the repository root or anywhere)

- seeds/ltx/                  every .ltx file of testdata/conformance (valid/, invalid/,
                              chains/*/, compacted/*/), flattened names; shared by the
                              decoder and random_access targets.
- corpus/decoder/seed-ctl-*   small files behind a control prefix (decoder split modes).
- corpus/page_index/seed-*    control prefix + the real tail and page index of each file.
- corpus/header/seed-*        the 100-byte header + 16-byte trailer of each file, and
                              a few file names.
- corpus/merge/seed-*         deterministic pseudo-random inputs (0.5-3 KB, so libFuzzer
                              starts with inputs long enough for real page contents),
                              one per combination of the generator's global flag bits.

Only the standard library is used. Existing seed files are overwritten; fuzzer-found
corpus entries are left alone.
"""
import hashlib
import os
import random
import struct

FUZZ = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(os.path.dirname(FUZZ), "testdata", "conformance")


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def ltx_files():
    out = []
    for top in ("valid", "invalid", "chains", "compacted"):
        for dirpath, _, names in os.walk(os.path.join(CONF, top)):
            for n in names:
                if n.endswith(".ltx"):
                    p = os.path.join(dirpath, n)
                    out.append((os.path.relpath(p, CONF), p))
    return sorted(out)


def short(data):
    return hashlib.sha1(data).hexdigest()[:12]


def main():
    files = ltx_files()
    seen_hdr = set()
    small = []
    for rel, path in files:
        data = open(path, "rb").read()
        write(os.path.join(FUZZ, "seeds", "ltx", rel.replace("/", "__")), data)
        if len(data) >= 116:
            hdr = data[:100] + data[-16:]
            if hdr not in seen_hdr:
                seen_hdr.add(hdr)
                write(os.path.join(FUZZ, "corpus", "header", "seed-" + short(hdr)), hdr)
        if rel.startswith("valid/") and len(data) <= 12000:
            small.append((len(data), rel, data))
        # page_index: a structured case from the real header, tail and index.
        if len(data) < 131 or data[:4] != b"LTX1":
            continue
        flags, page_size, commit = struct.unpack(">III", data[4:16])
        min_txid = struct.unpack(">Q", data[16:24])[0]
        if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
            continue
        index_size = struct.unpack(">Q", data[-24:-16])[0]
        if index_size == 0 or index_size > len(data) - 24 - 106:
            continue
        index_offset = len(data) - 24 - index_size
        index = data[index_offset:len(data) - 16]
        exp = (page_size // 512).bit_length() - 1
        mode = 1 | (exp << 1) | (0x10 if flags & 2 else 0) | (0x20 if min_txid == 1 else 0)
        case = (bytes([mode]) + struct.pack(">IQQ", commit, len(data), index_offset)
                + data[-24:] + index)
        write(os.path.join(FUZZ, "corpus", "page_index", "seed-" + short(case)), case)
    for name in ("0000000000000001-0000000000000001.ltx", "00000000000000ff-0000000000000a0b.ltx",
                 "0000000000000001-000000000000000A.ltx"):
        write(os.path.join(FUZZ, "corpus", "header", "seed-name-" + short(name.encode())),
              name.encode())
    # decoder control prefixes: bytewise; 1/2/3-byte chunks; mixed small and large.
    small.sort()
    prefixes = [b"\x00", b"\x03\x00\x01\x02", b"\x12\x05\x81", b"\x14\x0f\x3f\x80\x00"]
    for i, (_, rel, data) in enumerate(small[:8]):
        pre = prefixes[i % len(prefixes)]
        write(os.path.join(FUZZ, "corpus", "decoder", "seed-ctl-" + short(pre + data)), pre + data)
    # merge: g = every combination of bits 0-5; s = 0 (chain starts with a snapshot)
    # or 1; then random bytes.
    rng = random.Random(0x17C)
    for g in range(64):
        case = bytes([g, 0 if g % 3 else 1]) + rng.randbytes(rng.randrange(500, 3000))
        write(os.path.join(FUZZ, "corpus", "merge", "seed-%02x-%s" % (g, short(case))), case)


if __name__ == "__main__":
    main()
