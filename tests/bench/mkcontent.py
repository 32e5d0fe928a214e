#!/usr/bin/env python3
"""Generates the benchmark content once into a cache directory (reused across runs).

usage: mkcontent.py DIR BLOB_BYTES LAYER_BYTES SMALL_IMAGE_BYTES

DIR/blob.bin            BLOB_BYTES of random data (raw upload), digest in blob.bin.digest
DIR/small4k.bin         4 KiB of random data, digest in small4k.bin.digest
DIR/smallcfg.json       config of the small manifest (digest in smallcfg.json.digest)
DIR/manifest.json       small OCI image manifest: smallcfg.json + small4k.bin as its layer
DIR/big/                OCI layout, one image (ref "latest") of 4 layers, each a tar holding
                        one random file of LAYER_BYTES, wrapped in gzip *without* compression
                        (stored deflate blocks).  Plain uncompressed tar layers would be
                        gzip-compressed by skopeo on every push to a registry (docker://
                        destinations ask for compressed layers), and the push figure would
                        measure skopeo's gzip instead of the registry; a layer that is
                        already gzip is passed through unchanged, digest and all.
DIR/many/               OCI layout, 16 distinct images (refs img00..img15), each one layer
                        holding a random file of SMALL_IMAGE_BYTES
DIR/complete            written last; holds the parameters, so a changed size regenerates

Everything is random (incompressible), so no layer of any image equals another.
"""
import gzip
import hashlib
import json
import os
import shutil
import sys
import tarfile

CHUNK = 4 << 20
LAYER_MT = "application/vnd.oci.image.layer.v1.tar+gzip"
RAW_LAYER_MT = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MT = "application/vnd.oci.image.config.v1+json"
MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"


def random_file(path, size):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            b = os.urandom(min(CHUNK, left))
            f.write(b)
            h.update(b)
            left -= len(b)
    return "sha256:" + h.hexdigest()


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


class Layout:
    def __init__(self, root):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        with open(os.path.join(root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.manifests = []

    def put_file(self, tmp):
        d = file_digest(tmp)
        size = os.path.getsize(tmp)
        os.replace(tmp, os.path.join(self.blobs, d.split(":", 1)[1]))
        return d, size

    def put_bytes(self, data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobs, d.split(":", 1)[1]), "wb") as f:
            f.write(data)
        return d, len(data)

    def tar_layer(self, name, size, scratch):
        """A layer holding one random file `name` of `size` bytes: a tar in a gzip stream of
        stored (level 0) deflate blocks; returns (digest, size, diff_id)."""
        data = os.path.join(scratch, "data")
        random_file(data, size)
        tmp = os.path.join(self.root, "layer.tmp")
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:
            ti = t.gettarinfo(data, arcname=name)
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname, ti.mode = 0, 0, 0, "", "", 0o644
            with open(data, "rb") as f:
                t.addfile(ti, f)
        os.unlink(data)
        diff_id = file_digest(tmp)
        gz = tmp + ".gz"
        with open(tmp, "rb") as src, open(gz, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=0, mtime=0) as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        os.unlink(tmp)
        return (*self.put_file(gz), diff_id)

    def image(self, ref, layers):
        """layers: list of (digest, size, diff_id)."""
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [i for _, _, i in layers]},
            "history": [{"created_by": "ocireg bench"} for _ in layers],
        }
        cd, cs = self.put_bytes(json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MT,
            "config": {"mediaType": CONFIG_MT, "digest": cd, "size": cs},
            "layers": [{"mediaType": LAYER_MT, "digest": d, "size": s} for d, s, _ in layers],
        }
        md, ms = self.put_bytes(json.dumps(manifest, sort_keys=True).encode())
        self.manifests.append({"mediaType": MANIFEST_MT, "digest": md, "size": ms,
                               "annotations": {"org.opencontainers.image.ref.name": ref}})

    def finish(self):
        with open(os.path.join(self.root, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": self.manifests}, f)


def main():
    root, blob_size, layer_size, small_size = sys.argv[1], *map(int, sys.argv[2:5])
    params = f"blob={blob_size} layer={layer_size} small={small_size} v=2\n"
    stamp = os.path.join(root, "complete")
    if os.path.exists(stamp) and open(stamp).read() == params:
        return
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    scratch = os.path.join(root, "scratch")
    os.makedirs(scratch)

    def write(name, text):
        with open(os.path.join(root, name), "w") as f:
            f.write(text)

    print(f"generating content in {root} ({params.strip()})", file=sys.stderr)
    write("blob.bin.digest", random_file(os.path.join(root, "blob.bin"), blob_size) + "\n")
    d4k = random_file(os.path.join(root, "small4k.bin"), 4096)
    write("small4k.bin.digest", d4k + "\n")
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": [d4k]}}, sort_keys=True)
    write("smallcfg.json", cfg)
    cfgd = "sha256:" + hashlib.sha256(cfg.encode()).hexdigest()
    write("smallcfg.json.digest", cfgd + "\n")
    man = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_MT,
                      "config": {"mediaType": CONFIG_MT, "digest": cfgd, "size": len(cfg)},
                      "layers": [{"mediaType": RAW_LAYER_MT, "digest": d4k, "size": 4096}]},
                     sort_keys=True)
    write("manifest.json", man)
    write("manifest.json.digest", "sha256:" + hashlib.sha256(man.encode()).hexdigest() + "\n")

    big = Layout(os.path.join(root, "big"))
    big.image("latest", [big.tar_layer(f"layer{i}/data.bin", layer_size, scratch)
                         for i in range(4)])
    big.finish()

    many = Layout(os.path.join(root, "many"))
    for i in range(16):
        many.image(f"img{i:02d}", [many.tar_layer(f"img{i:02d}/data.bin", small_size, scratch)])
    many.finish()

    shutil.rmtree(scratch)
    write("complete", params)


if __name__ == "__main__":
    main()
