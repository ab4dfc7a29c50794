#!/usr/bin/env bash
# Measures one pull of a ~512 MiB, 4-layer, JWE-encrypted image (two layers
# of random bytes, two of text) with `cloister image pull`, against
# `skopeo copy --decryption-key` + `umoci unpack` of the same image.
# Wall time and max RSS from /usr/bin/time -v. Needs docker-registry,
# skopeo, umoci, openssl, python3, and a release build of cloister:
#   cargo build --release -p cloister
#   guest/image/bench/pull-512mib.sh [WORKDIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/../../.." && pwd)
cloister=${CLOISTER:-$here/target/release/cloister}
work=${1:-$(mktemp -d /var/tmp/cloister-pull-bench.XXXXXX)}
mkdir -p "$work"
cd "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cat > registry.yml <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YML
/usr/bin/docker-registry serve registry.yml > registry.log 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem 2>/dev/null
openssl pkey -pubout -in key.pem -out key.pub.pem

if [ ! -d layout ]; then
  umoci init --layout layout
  umoci new --image layout:big
  python3 - <<'PY'
import os, random, tarfile, io
random.seed(7)
words = open('/usr/share/dict/words').read().split() if os.path.exists('/usr/share/dict/words') else \
    "the quick brown fox jumps over lazy dog image layer registry container guest host key".split()
mib = 1 << 20
for i, kind in enumerate(["random", "random", "text", "text"]):
    os.makedirs(f"l{i}/data{i}", exist_ok=True)
    for j in range(4):  # 4 files of 32 MiB per layer
        with open(f"l{i}/data{i}/f{j}", "wb") as f:
            if kind == "random":
                f.write(os.urandom(32 * mib))
            else:
                n = 0
                while n < 32 * mib:
                    line = (" ".join(random.choice(words) for _ in range(12)) + "\n").encode()
                    f.write(line)
                    n += len(line)
PY
  for i in 0 1 2 3; do
    tar -C "l$i" -cf "l$i.tar" "data$i"
    umoci raw add-layer --image layout:big "l$i.tar"
    rm -rf "l$i" "l$i.tar"
  done
  umoci config --image layout:big --os linux --architecture amd64
fi
skopeo copy --quiet --dest-tls-verify=false --encryption-key jwe:key.pub.pem \
  oci:layout:big docker://127.0.0.1:$port/big:1
du -sh registry
# Sign it, and pull under a policy that requires that signature, so the
# figure includes signature verification as well as decryption.
rm -f cosign.key cosign.pub
COSIGN_PASSWORD= "$cloister" image keygen --output-key-prefix cosign
COSIGN_PASSWORD= "$cloister" image sign --key cosign.key --registry-insecure-http 127.0.0.1:$port/big:1
cat > policy.json <<POLICY
{"default": [{"type": "reject"}],
 "transports": {"docker": {"127.0.0.1:$port/big": [{"type": "sigstoreSigned", "keyPath": "$PWD/cosign.pub"}]}}}
POLICY

sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
rm -rf cloister-rootfs
echo "== cloister image pull"
/usr/bin/time -v "$cloister" image pull 127.0.0.1:$port/big:1 --dest cloister-rootfs \
  --insecure-http --decryption-key key.pem --signature-policy policy.json 2> cloister.time
grep -E "Elapsed|Maximum resident" cloister.time

sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
rm -rf skopeo-layout bundle
echo "== skopeo copy --decryption-key"
/usr/bin/time -v skopeo copy --quiet --src-tls-verify=false --decryption-key key.pem \
  docker://127.0.0.1:$port/big:1 oci:skopeo-layout:big 2> skopeo.time
grep -E "Elapsed|Maximum resident" skopeo.time
echo "== umoci unpack"
/usr/bin/time -v umoci unpack --image skopeo-layout:big bundle > /dev/null 2> umoci.time
grep -E "Elapsed|Maximum resident" umoci.time
cmp cloister-rootfs/data3/f3 bundle/rootfs/data3/f3 && echo "rootfs contents agree"
echo "work dir: $work"
