#!/usr/bin/python3
"""Independent decoder for redis-backup objects (formats 1 and 2).

Written from vendor-notes/FORMAT.md alone, without reading the Rust sources,
so that `make test` can check that the page is enough to read a backup.
Needs Debian's python3 (3.11) with python3-cryptography; nothing else.

    decode.py --key KEYFILE OBJECT [--record RECORD.json] [--expect-id ID] [--out RDB]

It follows "What a reader must check, in this order", authenticates the
record per "Records" when --record is given (before reading the object, since
step 8 needs it), and prints one JSON line:

    {"ok": true, "format": N, "raw_size": N, "raw_sha256": "...",
     "identity": {...} | null, "rdb_version": N, ...}
    {"ok": false, "error": CLASS, "message": "..."}

Exit status: 0 success, 5 integrity failure, 2 key-file problem or a usage /
I/O error (a file that cannot be read: nothing was decoded).
--out is written only when every check has passed.

Error classes (bold names of the reader steps, lowercased; the others are
from the "What each failure means" table, where the steps have no bold name):
  object, steps 1-11:  truncated, not_a_backup, unsupported_version,
      wrong_key, invalid_header, tampered_header, not_the_backup_asked_for,
      object_or_record_replaced, invalid_frame_flags, invalid_frame_length,
      frame_failed_authentication, corrupt_frame, empty_frame,
      oversized_frame, trailing_bytes, content_does_not_match_trailer
  record:  record_damaged, record_wrong_key, record_failed_authentication,
      record_not_the_backup_asked_for, content_does_not_match_record
  content, step 12:  not_an_rdb, unsupported_rdb_version, rdb_checksum_mismatch
  exit 2:  key_file, usage
"""
import argparse
import datetime
import hashlib
import hmac
import json
import os
import re
import struct
import sys
import zlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class Fail(Exception):
    def __init__(self, error, message, status=5):
        super().__init__(message)
        self.error, self.message, self.status = error, message, status


# ---- primitives -------------------------------------------------------------

def hmac256(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf(salt, ikm, info, length):
    """RFC 5869 HKDF-SHA256; salt None means 32 zero bytes."""
    prk = hmac256(salt if salt is not None else bytes(32), ikm)
    okm, block, n = b"", b"", 1
    while len(okm) < length:
        block = hmac256(prk, block + info + bytes([n]))
        okm, n = okm + block, n + 1
    return okm[:length]


def aes_ctr(key, i, data):
    iv = struct.pack(">Q", i) + bytes(8)
    dec = Cipher(algorithms.AES(key), modes.CTR(iv)).decryptor()
    return dec.update(data) + dec.finalize()


# CRC-64/Jones, reflected: table from the bit-reversed polynomial.
_POLY = int(format(0xAD93D23594C935A9, "064b")[::-1], 2)
_TABLE = []
for _b in range(256):
    _c = _b
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc64(data, crc=0):
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA


# ---- key file ---------------------------------------------------------------

def read_key(path):
    try:
        st = os.stat(path)
        if st.st_size > 1024:
            raise Fail("key_file", f"key file {path} is larger than 1 KiB", 2)
        if st.st_mode & 0o077:
            raise Fail("key_file", f"key file {path} is readable or writable by group or others "
                       f"(mode {st.st_mode & 0o777:04o})", 2)
        with open(path, "rb") as f:
            data = f.read(1025)
    except OSError as e:
        raise Fail("key_file", f"cannot read key file {path}: {e.strerror}", 2)
    if not re.fullmatch(rb"[0-9a-fA-F]{64}\n?", data):
        raise Fail("key_file", f"key file {path} is not 64 hex digits and an optional newline", 2)
    return bytes.fromhex(data[:64].decode())


# ---- identity ---------------------------------------------------------------

FIELDS = ("backup_id", "instance", "created_at", "server_name", "server_version", "source")
BACKUP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CREATED_AT = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?Z")


def valid_created_at(s):
    m = CREATED_AT.fullmatch(s)
    if not m:
        return False
    try:
        datetime.datetime(*(int(g) for g in m.groups()[:6]))
    except ValueError:
        return False
    return True


def parse_identity(ident):
    """Step 7: six u16-LE-counted UTF-8 fields, nothing after the sixth."""
    bad = lambda why: Fail("invalid_header", f"the header's identity is invalid: {why}")
    fields, pos = [], 0
    for name in FIELDS:
        if pos + 2 > len(ident):
            raise bad(f"it ends before its {name}")
        (n,) = struct.unpack_from("<H", ident, pos)
        if n > 1024 or pos + 2 + n > len(ident):
            raise bad(f"its {name} claims {n} bytes")
        try:
            fields.append(ident[pos + 2:pos + 2 + n].decode("utf-8"))
        except UnicodeDecodeError:
            raise bad(f"its {name} is not UTF-8")
        pos += 2 + n
    if pos != len(ident):
        raise bad(f"{len(ident) - pos} bytes after its sixth field")
    identity = dict(zip(FIELDS, fields))
    if not BACKUP_ID.fullmatch(identity["backup_id"]):
        raise bad(f"backup ID {identity['backup_id']!r}")
    if not valid_created_at(identity["created_at"]):
        raise bad(f"created_at {identity['created_at']!r}")
    return identity


# ---- record -----------------------------------------------------------------

def read_record(path, master, key_id_hex, want_id):
    """The "Records" reader steps 1-3. Returns the record (without its tag)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(65537)
    except OSError as e:
        raise Fail("usage", f"cannot read record {path}: {e.strerror}", 2)

    def no_dups(pairs):
        obj = dict(pairs)
        if len(obj) != len(pairs):
            raise ValueError("duplicate member")
        return obj

    def no_constants(name):
        raise ValueError(f"not JSON: {name}")

    try:
        if len(raw) > 65536:
            raise ValueError("larger than 64 KiB")
        rec = json.loads(raw.decode("utf-8"), object_pairs_hook=no_dups, parse_constant=no_constants)
        if not isinstance(rec, dict):
            raise ValueError("not a JSON object")
        fmt = rec.get("format")
        if type(fmt) is not int or fmt not in (1, 2):
            raise ValueError(f"format {fmt!r}")
    except (ValueError, RecursionError) as e:  # incl. UnicodeDecodeError, JSONDecodeError
        raise Fail("record_damaged", f"record {path} is damaged: {e}")

    if fmt == 2:
        if rec.get("key_id") != key_id_hex:
            raise Fail("record_wrong_key", f"record {path} is under key {rec.get('key_id')!r}, "
                       f"the key file has key {key_id_hex}: it cannot be authenticated with this key")
        tag = rec.pop("record_tag", None)
        record_key = hkdf(None, master, b"redis-backup v2 record", 32)
        try:
            canon = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate cannot be canonical
            canon = None
        if (not isinstance(tag, str) or not re.fullmatch(r"[0-9a-f]{64}", tag) or canon is None
                or not hmac.compare_digest(hmac256(record_key, canon), bytes.fromhex(tag))):
            raise Fail("record_failed_authentication", f"record of backup {rec.get('id')!r} failed authentication")
    if want_id is not None and rec.get("id") != want_id:
        raise Fail("record_not_the_backup_asked_for", f"the record asked for as {want_id!r} is of backup {rec.get('id')!r}")
    return rec


def same(a, b):
    return type(a) is type(b) and a == b


def compare_with_record(rec, version, level, identity):
    """Step 8, second half: the object and its record describe one backup."""
    server = rec.get("server") if isinstance(rec.get("server"), dict) else {}
    pairs = [("format version", version, rec.get("format"))]
    if version == 2:
        pairs += [
            ("ID", identity["backup_id"], rec.get("id")),
            ("instance", identity["instance"], rec.get("instance")),
            ("created_at", identity["created_at"], rec.get("created_at")),
            ("server name", identity["server_name"], server.get("name")),
            ("server version", identity["server_version"], server.get("version")),
            ("source", identity["source"], rec.get("source")),
            ("compression level", level, rec.get("compression_level")),
        ]
    for what, obj, rv in pairs:
        if not same(obj, rv):
            raise Fail("object_or_record_replaced", f"backup {rec.get('id')!r}: the object says {what} {obj!r}, "
                       f"its record says {rv!r}: the object or the record was replaced")


# ---- object -----------------------------------------------------------------

def read_exact(f, n):
    data = f.read(n)
    if len(data) != n:
        raise Fail("truncated", "backup is truncated")
    return data


def decode(f, master, want_id=None, rec=None):
    key_id = hkdf(None, master, b"redis-backup v1 key-id", 8)
    # 1-4
    header = read_exact(f, 60)
    if header[0:8] != b"REDISBAK":
        raise Fail("not_a_backup", "not a redis-backup backup")
    (version,) = struct.unpack_from("<H", header, 8)
    if version not in (1, 2):
        raise Fail("unsupported_version", f"backup format version {version} is not supported")
    if header[48:56] != key_id:
        raise Fail("wrong_key", f"backup was encrypted with key {header[48:56].hex()}, "
                   f"but the key file has key {key_id.hex()}: wrong key")
    compression, level = header[10], header[11]
    (frame_size,) = struct.unpack_from("<I", header, 12)
    salt = header[16:48]
    (identity_len,) = struct.unpack_from("<H", header, 56)
    # 5
    if version == 2:
        if identity_len > 4096:
            raise Fail("invalid_header", f"the header claims {identity_len} bytes of identity")
        ident = read_exact(f, identity_len)
    else:
        ident = b""
    header_tag = read_exact(f, 32)
    # 6
    if version == 2:
        n = struct.unpack_from("<H", ident, 0)[0] if len(ident) >= 2 else None
        if n is None or n > 1024 or 2 + n > len(ident):
            raise Fail("tampered_header", "header failed authentication: tampered backup (no backup ID in the identity)")
        info = b"redis-backup v2 keys\x00" + ident[2:2 + n]
    else:
        info = b"redis-backup v1 keys"
    okm = hkdf(salt, master, info, 64)
    enc_key, mac_key = okm[:32], okm[32:]
    if not hmac.compare_digest(hmac256(mac_key, header + ident), header_tag):
        raise Fail("tampered_header", "header failed authentication: tampered backup")
    # 7
    if compression not in (0, 1):
        raise Fail("invalid_header", f"unknown compression {compression}")
    if level > 9:
        raise Fail("invalid_header", f"compression level {level} outside 0..=9")
    if not 65536 <= frame_size <= 16777216:
        raise Fail("invalid_header", f"frame size {frame_size} outside 65536..=16777216")
    if any(header[56 if version == 1 else 58:60]):
        raise Fail("invalid_header", "reserved header bytes are not zero")
    identity = parse_identity(ident) if version == 2 else None
    # 8
    if version == 2 and want_id is not None and identity["backup_id"] != want_id:
        raise Fail("not_the_backup_asked_for", f"the object stored as backup {want_id} is backup {identity['backup_id']}")
    if rec is not None:
        compare_with_record(rec, version, level, identity)
    # 9
    plain, i = [], 0
    while True:
        prefix = read_exact(f, 5)
        flags = prefix[0]
        (length,) = struct.unpack_from("<I", prefix, 1)
        if flags not in (0x00, 0x01) and not (flags == 0x02 and compression == 1):
            raise Fail("invalid_frame_flags", f"a frame has invalid flags 0x{flags:02x} (frame {i})")
        if flags == 0x01 and length != 40 or flags != 0x01 and not 1 <= length <= frame_size + 64:
            raise Fail("invalid_frame_length", f"a frame claims {length} bytes (frame {i})")
        body = read_exact(f, length + 32)
        ciphertext, tag = body[:length], body[length:]
        if not hmac.compare_digest(hmac256(mac_key, struct.pack("<Q", i) + prefix + ciphertext), tag):
            raise Fail("frame_failed_authentication",
                       f"frame {i} failed authentication: tampered, reordered or truncated backup")
        payload = aes_ctr(enc_key, i, ciphertext)
        if flags == 0x01:
            trailer = payload
            break
        if compression == 1 and flags == 0x00:
            d = zlib.decompressobj(-15)
            try:
                payload = d.decompress(payload, frame_size + 1)
            except zlib.error as e:
                raise Fail("corrupt_frame", f"a compressed frame (frame {i}) is not valid deflate: {e}")
            if len(payload) > frame_size:
                raise Fail("corrupt_frame", f"a compressed frame (frame {i}) inflates past the frame size {frame_size}")
            if not d.eof:
                raise Fail("corrupt_frame", f"a compressed frame (frame {i}) does not end")
            if d.unused_data:
                raise Fail("corrupt_frame", f"a compressed frame (frame {i}) has bytes after its deflate stream")
            if not payload:
                raise Fail("empty_frame", f"frame {i} inflates to nothing")
        elif len(payload) > frame_size:
            raise Fail("oversized_frame", f"frame {i} holds {len(payload)} bytes, more than the frame size {frame_size}")
        plain.append(payload)
        i += 1
    # 10
    if f.read(1):
        raise Fail("trailing_bytes", "unexpected bytes after the final frame")
    # 11
    rdb = b"".join(plain)
    raw_size, raw_sha256 = struct.unpack_from("<Q", trailer, 0)[0], trailer[8:40]
    if len(rdb) != raw_size or hashlib.sha256(rdb).digest() != raw_sha256:
        raise Fail("content_does_not_match_trailer", "backup content does not match its trailer")
    if rec is not None and not (same(rec.get("raw_size"), raw_size) and same(rec.get("raw_sha256"), raw_sha256.hex())):
        raise Fail("content_does_not_match_record",
                   f"backup {rec.get('id')!r} decodes to {raw_size} bytes with SHA-256 {raw_sha256.hex()}, "
                   f"but its record says {rec.get('raw_size')!r} bytes with SHA-256 {rec.get('raw_sha256')!r}")
    # 12
    rdb_version = check_rdb(rdb)
    return {"ok": True, "format": version, "raw_size": raw_size, "raw_sha256": raw_sha256.hex(),
            "identity": identity, "rdb_version": rdb_version, "key_id": key_id.hex(),
            "compression": compression, "level": level, "frame_size": frame_size, "frames": i + 1,
            "record": None if rec is None else
            ("authenticated" if rec["format"] == 2 else "format 1 (identity not bound)")}, rdb


def check_rdb(rdb):
    """Step 12: REDIS + 4 ASCII digits (5..=13) ... 0xFF + u64 LE CRC-64/Jones (0 = unchecked)."""
    if len(rdb) < 18 or rdb[:5] != b"REDIS" or not re.fullmatch(rb"[0-9]{4}", rdb[5:9]) or rdb[-9] != 0xFF:
        raise Fail("not_an_rdb", "not an RDB file")
    rdb_version = int(rdb[5:9])
    if not 5 <= rdb_version <= 13:
        raise Fail("unsupported_rdb_version", f"RDB version {rdb_version} is not one any known Redis writes")
    (stored,) = struct.unpack_from("<Q", rdb, len(rdb) - 8)
    if stored != 0 and stored != crc64(rdb[:-8]):
        raise Fail("rdb_checksum_mismatch", "RDB checksum mismatch")
    return rdb_version


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--key", required=True, help="master key file (64 hex digits, mode 0600)")
    p.add_argument("object", help="the backup object (ID.rbk)")
    p.add_argument("--record", help="the backup's record (ID.json), authenticated and compared")
    p.add_argument("--expect-id", help="the backup ID asked for")
    p.add_argument("--out", help="write the plain RDB here once every check has passed")
    a = p.parse_args()
    try:
        master = read_key(a.key)
        key_id_hex = hkdf(None, master, b"redis-backup v1 key-id", 8).hex()
        rec = read_record(a.record, master, key_id_hex, a.expect_id) if a.record else None
        try:
            f = open(a.object, "rb")
        except OSError as e:
            raise Fail("usage", f"cannot read {a.object}: {e.strerror}", 2)
        with f:
            result, rdb = decode(f, master, a.expect_id, rec)
        if a.out:
            try:
                with open(a.out, "wb") as out:
                    out.write(rdb)
            except OSError as e:
                raise Fail("usage", f"cannot write {a.out}: {e.strerror}", 2)
    except Fail as e:
        print(json.dumps({"ok": False, "error": e.error, "message": e.message}))
        return e.status
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
