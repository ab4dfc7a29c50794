#!/usr/bin/env python3
"""An independent implementation of cosign's key-based signatures, written
from the format (not from cloister's code), for cloister's tests.

Debian's skopeo cannot sign with sigstore, and Go cosign is not packaged, so
this script plays the other side: it makes and checks cosign signatures with
the `cryptography` package and plain HTTP to the registry.

  keygen  --out PREFIX                 PREFIX.key (PKCS#8 PEM) + PREFIX.pub
  sign    --key K --registry H:P --repo R (--tag T | --digest D)
          [--identity ID] [--claimed-digest D2] [--tamper]
          ECDSA P-256/SHA-256 signature of a simple-signing payload, appended
          as a layer to the sha256-<hex>.sig manifest (as cosign does).
          --claimed-digest signs a payload for another digest; --tamper
          uploads a payload other than the one signed.
  verify  --pub K --registry H:P --repo R (--tag T | --digest D) [--identity ID]
          exit 0 if some layer verifies with K, is for the digest and, if
          given, claims ID; prints a JSON report.
  decrypt-key --key K                  decrypts cosign's encrypted private
          key (scrypt + nacl secretbox; password from COSIGN_PASSWORD) and
          prints its public key PEM.
"""

import argparse
import base64
import hashlib
import json
import os
import struct
import sys
import urllib.error
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.poly1305 import Poly1305

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([
    OCI_MANIFEST,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- registry (OCI distribution API over plain HTTP) ---

def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_manifest(registry, repo, ref):
    status, headers, body = http("GET", f"http://{registry}/v2/{repo}/manifests/{ref}",
                                 headers={"Accept": ACCEPT})
    if status == 404:
        return None
    if status != 200:
        raise SystemExit(f"GET manifest {repo}:{ref}: HTTP {status}: {body[:200]!r}")
    return body


def get_blob(registry, repo, digest):
    status, _, body = http("GET", f"http://{registry}/v2/{repo}/blobs/{digest}")
    if status != 200:
        raise SystemExit(f"GET blob {digest}: HTTP {status}")
    if sha256(body) != digest:
        raise SystemExit(f"blob {digest} does not match its digest")
    return body


def put_blob(registry, repo, data):
    digest = sha256(data)
    status, headers, body = http("POST", f"http://{registry}/v2/{repo}/blobs/uploads/", b"")
    if status != 202:
        raise SystemExit(f"starting upload: HTTP {status}: {body[:200]!r}")
    location = headers.get("Location") or headers.get("location")
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    sep = "&" if "?" in location else "?"
    status, _, body = http("PUT", f"{location}{sep}digest={digest}", data,
                           {"Content-Type": "application/octet-stream"})
    if status != 201:
        raise SystemExit(f"finishing upload: HTTP {status}: {body[:200]!r}")
    return digest


def put_manifest(registry, repo, tag, manifest):
    status, _, body = http("PUT", f"http://{registry}/v2/{repo}/manifests/{tag}", manifest,
                           {"Content-Type": OCI_MANIFEST})
    if status != 201:
        raise SystemExit(f"PUT manifest {tag}: HTTP {status}: {body[:200]!r}")


def resolve(args):
    if args.digest:
        return args.digest
    body = get_manifest(args.registry, args.repo, args.tag)
    if body is None:
        raise SystemExit(f"{args.repo}:{args.tag} not found")
    return sha256(body)


def sig_tag(digest):
    algo, hexpart = digest.split(":", 1)
    return f"{algo}-{hexpart}.sig"


def payload_bytes(identity, digest):
    doc = {
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


# --- commands ---

def keygen(args):
    key = ec.generate_private_key(ec.SECP256R1())
    with open(args.out + ".key", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(args.out + ".pub", "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def sign(args):
    with open(args.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    digest = resolve(args)
    identity = args.identity or f"{args.registry}/{args.repo}:{args.tag}"
    payload = payload_bytes(identity, args.claimed_digest or digest)
    signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    if args.tamper:
        payload = payload_bytes(identity + "-tampered", args.claimed_digest or digest)

    tag = sig_tag(digest)
    existing = get_manifest(args.registry, args.repo, tag)
    layers = json.loads(existing)["layers"] if existing else []
    layers.append({
        "mediaType": SIMPLE_SIGNING,
        "size": len(payload),
        "digest": put_blob(args.registry, args.repo, payload),
        "annotations": {SIG_ANNOTATION: signature},
    })
    config = json.dumps({
        "architecture": "", "os": "", "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "size": len(config), "digest": put_blob(args.registry, args.repo, config)},
        "layers": layers,
    }).encode()
    put_manifest(args.registry, args.repo, tag, manifest)
    print(json.dumps({"digest": digest, "signature_tag": tag, "layers": len(layers)}))


def verify(args):
    with open(args.pub, "rb") as f:
        pub = serialization.load_pem_public_key(f.read())
    digest = resolve(args)
    manifest = get_manifest(args.registry, args.repo, sig_tag(digest))
    report = {"digest": digest, "layers": [], "accepted": False}
    if manifest is None:
        report["error"] = "no signature manifest"
    else:
        for layer in json.loads(manifest)["layers"]:
            entry = {"digest": layer["digest"]}
            payload = get_blob(args.registry, args.repo, layer["digest"])
            sig = base64.b64decode(layer.get("annotations", {}).get(SIG_ANNOTATION, ""))
            try:
                pub.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
                entry["signature"] = "valid"
            except InvalidSignature:
                entry["signature"] = "invalid"
            critical = json.loads(payload)["critical"]
            entry["identity"] = critical["identity"]["docker-reference"]
            entry["payload_digest"] = critical["image"]["docker-manifest-digest"]
            ok = (entry["signature"] == "valid"
                  and critical["type"] == "cosign container image signature"
                  and entry["payload_digest"] == digest
                  and (args.identity is None or entry["identity"] == args.identity))
            entry["accepted"] = ok
            report["accepted"] = report["accepted"] or ok
            report["layers"].append(entry)
    print(json.dumps(report))
    sys.exit(0 if report["accepted"] else 1)


# nacl secretbox (XSalsa20-Poly1305), for cosign's encrypted private keys.
# `cryptography` has Poly1305 but no (X)Salsa20, so the stream cipher is
# written out here from the Salsa20 specification.

def _rotl(v, c):
    return ((v << c) & 0xffffffff) | (v >> (32 - c))


def _salsa_rounds(x):
    x = list(x)
    for _ in range(10):
        for a, b, c, d in ((0, 4, 8, 12), (5, 9, 13, 1), (10, 14, 2, 6), (15, 3, 7, 11),
                           (0, 1, 2, 3), (5, 6, 7, 4), (10, 11, 8, 9), (15, 12, 13, 14)):
            x[b] ^= _rotl((x[a] + x[d]) & 0xffffffff, 7)
            x[c] ^= _rotl((x[b] + x[a]) & 0xffffffff, 9)
            x[d] ^= _rotl((x[c] + x[b]) & 0xffffffff, 13)
            x[a] ^= _rotl((x[d] + x[c]) & 0xffffffff, 18)
    return x


SIGMA = struct.unpack("<4I", b"expand 32-byte k")


def _state(key, sixteen):
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", sixteen)
    return [SIGMA[0], *k[:4], SIGMA[1], *n, SIGMA[2], *k[4:], SIGMA[3]]


def _hsalsa20(key, nonce16):
    x = _salsa_rounds(_state(key, nonce16))
    return struct.pack("<8I", *(x[i] for i in (0, 5, 10, 15, 6, 7, 8, 9)))


def _salsa20_stream(key, nonce8, length):
    out = bytearray()
    counter = 0
    while len(out) < length:
        s = _state(key, nonce8 + struct.pack("<Q", counter))
        x = _salsa_rounds(s)
        out += struct.pack("<16I", *((x[i] + s[i]) & 0xffffffff for i in range(16)))
        counter += 1
    return bytes(out[:length])


def secretbox_open(box, nonce, key):
    subkey = _hsalsa20(key, nonce[:16])
    stream = _salsa20_stream(subkey, nonce[16:], 32 + len(box) - 16)
    tag, ciphertext = box[:16], box[16:]
    Poly1305.verify_tag(stream[:32], ciphertext, tag)
    return bytes(c ^ s for c, s in zip(ciphertext, stream[32:]))


def decrypt_key(args):
    with open(args.key) as f:
        lines = [l.strip() for l in f if l.strip()]
    if lines[0] not in ("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----",
                        "-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----"):
        raise SystemExit(f"not an encrypted cosign key: {lines[0]}")
    doc = json.loads(base64.b64decode("".join(lines[1:-1])))
    kdf, cipher = doc["kdf"], doc["cipher"]
    assert kdf["name"] == "scrypt" and cipher["name"] == "nacl/secretbox", doc
    params = kdf["params"]
    password = os.environ.get("COSIGN_PASSWORD", "").encode()
    key = hashlib.scrypt(password, salt=base64.b64decode(kdf["salt"]), n=params["N"],
                         r=params["r"], p=params["p"], maxmem=512 * 1024 * 1024, dklen=32)
    der = secretbox_open(base64.b64decode(doc["ciphertext"]), base64.b64decode(cipher["nonce"]), key)
    private = serialization.load_der_private_key(der, password=None)
    sys.stdout.write(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen")
    k.add_argument("--out", required=True)
    for name in ("sign", "verify"):
        s = sub.add_parser(name)
        s.add_argument("--key" if name == "sign" else "--pub", required=True)
        s.add_argument("--registry", required=True)
        s.add_argument("--repo", required=True)
        s.add_argument("--tag")
        s.add_argument("--digest")
        s.add_argument("--identity")
        if name == "sign":
            s.add_argument("--claimed-digest")
            s.add_argument("--tamper", action="store_true")
    d = sub.add_parser("decrypt-key")
    d.add_argument("--key", required=True)
    args = p.parse_args()
    if args.cmd in ("sign", "verify") and not (args.tag or args.digest):
        p.error("--tag or --digest is required")
    if args.cmd == "sign" and not (args.identity or args.tag):
        p.error("--identity is required with --digest")
    {"keygen": keygen, "sign": sign, "verify": verify, "decrypt-key": decrypt_key}[args.cmd](args)


if __name__ == "__main__":
    main()
