#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into corpus/TARGET/ (run once;
the seeds are committed). Seeds are small real inputs: the public SEV-SNP
reports and TDX quotes of ../../shared/testdata, tars with the shapes a
hostile layer takes, ttrpc frames as the shim sends them, and so on. The
ocicrypt seed comes from skopeo (see keys/README.md)."""
import base64, io, json, os, struct, sys, tarfile

here = os.path.dirname(os.path.abspath(__file__))
testdata = os.path.join(here, "..", "..", "shared", "testdata")

def out(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def prefixed(first, rest):
    return struct.pack("<H", len(first)) + first + rest

def read(*p):
    with open(os.path.join(testdata, *p), "rb") as f:
        return f.read()

# SNP: report, VCEK, chain (and once with no chain: AMD's built-in one).
rep, vcek, chain = read("snp/virtee-sev/report_milan.bin"), read("snp/virtee-sev/vcek_milan.der"), read("snp/virtee-sev/cert_chain_milan")
out("snp_report", "milan-chain", prefixed(rep, prefixed(vcek, chain)))
out("snp_report", "milan-builtin", prefixed(rep, prefixed(vcek, b"")))

# TDX: quotes v4 and v5, one with its PCK chain given beside it.
out("tdx_quote", "v4", prefixed(read("tdx/trustee/tdx_quote_4.dat"), b""))
out("tdx_quote", "v5-chain", prefixed(read("tdx/trustee/tdx_quote_5.dat"), read("tdx/trustee/tdx_quote_5.pck_chain.pem")))

# Tars: ordinary entries, and each shape of escape the unpacker refuses.
unpack_dir = "/tmp/cloister-fuzz-unpack"
def tar(entries, fmt=tarfile.GNU_FORMAT):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.type = e.get("type", tarfile.REGTYPE)
            ti.linkname = e.get("link", "")
            ti.mode = e.get("mode", 0o644)
            data = e.get("data", b"")
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            if "pax" in e:
                ti.pax_headers = e["pax"]
            t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return b.getvalue()

tars = {
    "files": tar([{"name": "etc/", "type": tarfile.DIRTYPE, "mode": 0o755},
                  {"name": "etc/hostname", "data": b"web\n"},
                  {"name": "bin/sh", "data": b"\x7fELF" + b"\0" * 60, "mode": 0o755},
                  {"name": "bin/ash", "type": tarfile.LNKTYPE, "link": "bin/sh"},
                  {"name": "usr/bin/env", "type": tarfile.SYMTYPE, "link": "../../bin/sh"}]),
    "dotdot": tar([{"name": "../outside/x", "data": b"escape"}]),
    "abs-symlink": tar([{"name": "evil", "type": tarfile.SYMTYPE, "link": unpack_dir + "/outside"},
                        {"name": "evil/x", "data": b"escape"}]),
    "rel-symlink": tar([{"name": "a/", "type": tarfile.DIRTYPE},
                        {"name": "a/up", "type": tarfile.SYMTYPE, "link": "../../outside"},
                        {"name": "a/up/x", "data": b"escape"}]),
    "hardlink-out": tar([{"name": "h", "type": tarfile.LNKTYPE, "link": "../outside/x"}]),
    "whiteouts": tar([{"name": "d/", "type": tarfile.DIRTYPE},
                      {"name": "d/.wh..wh..opq", "data": b""},
                      {"name": "d/.wh.gone", "data": b""}]),
    "pax-long": tar([{"name": "p/" + "n" * 200, "data": b"long", "pax": {"path": "p/" + "n" * 200, "user.x": "1"}}], tarfile.PAX_FORMAT),
    "gnu-long": tar([{"name": "g/" + "m" * 150, "type": tarfile.SYMTYPE, "link": "t" * 150}]),
    "device": tar([{"name": "dev/null", "type": tarfile.CHRTYPE}]),
}
for name, data in tars.items():
    out("tar_reader", name, data)
    out("tar_unpack", name, data)

# containers-policy.json (selector byte 0) and simple-signing payloads (1).
policies = [
    {"default": [{"type": "reject"}], "transports": {"docker": {
        "registry.example/team": [{"type": "sigstoreSigned", "keyData": base64.b64encode(b"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n").decode(),
                                   "signedIdentity": {"type": "matchRepository"}}],
        "*.example": [{"type": "insecureAcceptAnything"}],
        "registry.example/team/app:1.0": [{"type": "sigstoreSigned", "keyPath": "/etc/k.pub", "signedIdentity": {"type": "remapIdentity", "prefix": "registry.example", "signedPrefix": "mirror.example"}}]}}},
    {"default": [{"type": "insecureAcceptAnything"}]},
]
for i, p in enumerate(policies):
    out("signature", f"policy-{i}", b"\0" + json.dumps(p).encode())
payload = {"critical": {"identity": {"docker-reference": "registry.example/team/app:1.0"},
                        "image": {"docker-manifest-digest": "sha256:" + "ab" * 32},
                        "type": "cosign container image signature"}, "optional": None}
out("signature", "payload", b"\x01" + json.dumps(payload).encode())

# initdata: every field.
out("initdata", "full", b'''version = "0.1.0"
algorithm = "sha256"

[data]
"policy.rego" = \'\'\'
package agent_policy
default HealthCheckRequest := true
\'\'\'
"policy-data.json" = \'\'\'{"containers": []}\'\'\'
"image-policy.json" = \'\'\'{"default": [{"type": "reject"}]}\'\'\'
"kbs-url" = "https://kbs.example:8080"
''')
out("initdata", "minimal", b'version = "0.1.0"\nalgorithm = "sha384"\n')

# ttrpc frames: header (len, stream id, type 1, flags) + ttrpc.Request
# {service=1, method=2, payload=3}; payloads are the agent's messages.
def pb_str(field, s):
    s = s.encode() if isinstance(s, str) else s
    return bytes([field << 3 | 2]) + varint(len(s)) + s
def varint(n):
    b = b""
    while True:
        x = n & 0x7f; n >>= 7
        if n: b += bytes([x | 0x80])
        else: return b + bytes([x])
def frame(stream, service, method, payload):
    body = pb_str(1, service) + pb_str(2, method) + pb_str(3, payload)
    return struct.pack(">IIBB", len(body), stream, 1, 0) + body
A = "cloister.agent.v1.Agent"
spec = json.dumps({"ociVersion": "1.1.0", "process": {"args": ["httpd", "-f"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}},
                   "root": {"path": "rootfs", "readonly": False}, "hostname": "web",
                   "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
                   "annotations": {"io.kubernetes.cri.container-name": "web"}}).encode()
create = pb_str(1, "web") + pb_str(2, "registry.example/web:1") + pb_str(3, spec)
execp = pb_str(1, "web") + pb_str(2, "e1") + pb_str(3, pb_str(1, "sh") + pb_str(1, "-c") + pb_str(1, "id") + pb_str(3, "/"))
for choice in (0, 1, 3, 11):
    out("agent_ttrpc", f"create-{choice}", bytes([choice]) + frame(1, A, "CreateContainer", create))
out("agent_ttrpc", "session", bytes([11]) + frame(1, "cloister.agent.v1.Health", "Check", b"") + frame(3, A, "StartContainer", pb_str(1, "web"))
    + frame(5, A, "ExecProcess", execp) + frame(7, A, "SetPolicy", pb_str(1, "package agent_policy\n")) + frame(9, A, "CopyFile", pb_str(1, "/etc/hosts") + pb_str(2, b"127.0.0.1 localhost\n")))

# vsock: TX header+data chains (REQUEST to the listening port, then RW) and
# a device-writable RX buffer. Layout: see fuzz_targets/vsock_queue.rs.
def desc(addr, length, flags, nxt):
    return struct.pack("<QIHH", addr, length, flags, nxt)
def hdr(op, src_port, dst_port, length):
    return struct.pack("<QQIIIHHIII", 3, 2, src_port, dst_port, length, 1, op, 0, 65536, 0)
NEXT, WRITE = 1, 2
tx = desc(0x1000, 44, NEXT, 1) + desc(0x1100, 0, 0, 0) + desc(0x1200, 44, NEXT, 3) + desc(0x1300, 5, 0, 0)
tx += desc(0x1400, 44, 0, 0)
tx = tx.ljust(256, b"\0")
tx_avail = struct.pack("<HHH", 0, 2, 4).ljust(32, b"\0")
rx = (desc(0x3000, 4096, WRITE, 0) + desc(0x4000, 4096, WRITE, 0)).ljust(256, b"\0")
rx_avail = struct.pack("<HH", 0, 1).ljust(32, b"\0")
mem = bytearray(0x500)
mem[0x000:0x02c] = hdr(1, 5000, 1234, 0)          # REQUEST
mem[0x200:0x22c] = hdr(5, 5000, 1234, 5)          # RW "hello"
mem[0x300:0x305] = b"hello"
mem[0x400:0x42c] = hdr(7, 5001, 1024, 0)          # CREDIT_REQUEST, no connection
out("vsock_queue", "request-rw", bytes([3, 2]) + tx + tx_avail + rx + rx_avail + bytes(mem))
loop = desc(0x1000, 44, NEXT, 1) + desc(0x1100, 16, NEXT, 0)
out("vsock_queue", "loop", bytes([1, 0]) + loop.ljust(256, b"\0") + bytes(32) + bytes(256) + bytes(32))

# KBS: an attestation body of each TEE's shape (choice byte: 0 snp, 1 tdx, 2 sample).
def att(evidence):
    return json.dumps({"runtime-data": {"nonce": "bm9uY2U=", "tee-pubkey": {"kty": "EC", "crv": "P-256", "alg": "ES256", "x": "AA", "y": "AA"}},
                       "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
                       "init-data": {"format": "toml", "body": "version = \"0.1.0\"\nalgorithm = \"sha256\"\n"}}).encode()
b64 = lambda b: base64.b64encode(b).decode()
out("kbs_rcar", "snp", b"\0" + att({"report": b64(rep), "vcek": b64(vcek), "chain": chain.decode(), "product": "Milan"}))
out("kbs_rcar", "tdx", b"\1" + att({"quote": b64(read("tdx/trustee/tdx_quote_4.dat"))}))
out("kbs_rcar", "sample", b"\2" + att({"report": b64(rep), "vcek": b64(vcek), "chain": chain.decode()}))
out("kbs_rcar", "auth", b"\2" + b'{"version":"0.4.0","tee":"sample","extra-params":""}')
