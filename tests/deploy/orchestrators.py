"""Checks the orchestrator examples under deploy/ against the real ocireg binary.

    python3 orchestrators.py OCIREG HEALTHCHECK DEPLOY_DIR WORK_DIR

For each of kubernetes/ (kustomization + StatefulSet + Services + NetworkPolicy),
ecs/task-definition.json and compose/compose.yaml:
  * it parses (PyYAML, json) and has the structure asked of it (PVC template, probes,
    resources, non-root read-only security settings, port mappings, health check, volumes);
  * every --flag anywhere in the file is one `ocireg serve --help` lists;
  * its ports, probe paths and volume paths agree with its own `ocireg serve` arguments and with
    the image of deploy/image/build-image.sh (user 65532, /usr/local/bin/ocireg-healthcheck);
  * those arguments run: ocireg serve with exactly them, only --listen/--admin-listen moved to
    free loopback ports and --root to a temp dir; each probe path answers 200 on the admin
    port, /v2/ answers 401 (token auth), the health check command (the built
    ocireg-healthcheck) exits 0 against it; SIGTERM ends it with status 0.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import yaml

OCIREG, HEALTHCHECK, DEPLOY, WORK = sys.argv[1:5]
IMAGE_UID = "65532"
HEALTHCHECK_PATH = "/usr/local/bin/ocireg-healthcheck"
FAILURES = []


def log(msg):
    print(f"[orchestrators {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def check(cond, what):
    if cond:
        log(f"ok: {what}")
    else:
        log(f"FAIL: {what}")
        FAILURES.append(what)
    return cond


HELP = subprocess.run([OCIREG, "serve", "--help"], check=True, capture_output=True, text=True).stdout
HELP_FLAGS = set(re.findall(r"^\s+(--[a-z][a-z0-9-]*)", HELP, re.M))
assert "--listen" in HELP_FLAGS and "--admin-listen" in HELP_FLAGS, HELP_FLAGS

# The image these examples run: its user and health check binary, from the build script.
BUILD_IMAGE = open(os.path.join(DEPLOY, "image", "build-image.sh")).read()
check(f"APP_UID={IMAGE_UID}" in BUILD_IMAGE and f"APP_GID={IMAGE_UID}" in BUILD_IMAGE,
      f"build-image.sh makes the image's user {IMAGE_UID}:{IMAGE_UID}")
check("/usr/local/bin/ocireg-healthcheck" in BUILD_IMAGE,
      "build-image.sh installs /usr/local/bin/ocireg-healthcheck")


def check_flags(path):
    text = open(path).read()
    used = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)))
    unknown = [f for f in used if f not in HELP_FLAGS]
    check(not unknown, f"{os.path.relpath(path, DEPLOY)}: flags {' '.join(used) or '(none)'} "
          f"are in 'ocireg serve --help'" + (f" (not: {' '.join(unknown)})" if unknown else ""))


def flag(args, name):
    """The value of --name in an argument list (the last one wins, as in getopt)."""
    val = None
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            val = args[i + 1]
        elif a.startswith(name + "="):
            val = a.split("=", 1)[1]
    return val


def port_of(hostport):
    return int(hostport.rsplit(":", 1)[1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def run_server(name, args, probes, healthcheck_cmd):
    """Runs ocireg with ARGS (listen addresses and root moved); checks PROBES [(port, path)] on
    the admin listener, /v2/, and HEALTHCHECK_CMD (argv inside the container) with the built
    binary."""
    listen, admin = flag(args, "--listen"), flag(args, "--admin-listen")
    api_port, admin_port = free_port(), free_port()
    root = os.path.join(WORK, name + "-root")
    os.makedirs(root, exist_ok=True)
    moved = {"--listen": f"127.0.0.1:{api_port}", "--admin-listen": f"127.0.0.1:{admin_port}",
             "--root": root}
    argv = list(args)
    for i in range(len(argv) - 1):
        if argv[i] in moved:
            argv[i + 1] = moved[argv[i]]
    port_map = {port_of(listen): api_port, port_of(admin): admin_port}
    logf = open(os.path.join(WORK, name + ".log"), "w")
    log(f"{name}: ocireg {' '.join(argv)}")
    proc = subprocess.Popen([OCIREG] + argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    try:
        deadline = time.time() + 20
        while True:
            if proc.poll() is not None:
                logf.flush()
                log(open(logf.name).read())
                check(False, f"{name}: ocireg serve with the example's arguments stays up "
                      f"(exited {proc.returncode})")
                return
            try:
                if http_get(f"http://127.0.0.1:{admin_port}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                check(False, f"{name}: admin listener up within 20s")
                return
            time.sleep(0.05)
        for port, path in probes:
            status, body = http_get(f"http://127.0.0.1:{port_map.get(port, 0)}{path}")
            check(status == 200, f"{name}: probe {path} on port {port} answers 200 "
                  f"(got {status} {body.strip()!r})")
        status, _ = http_get(f"http://127.0.0.1:{api_port}/v2/")
        check(status == 401, f"{name}: /v2/ on the API port answers 401 with token auth (got {status})")
        if healthcheck_cmd:
            url = healthcheck_cmd[-1]
            m = re.match(r"http://127\.0\.0\.1:(\d+)(/.*)$", url)
            if check(m is not None and int(m.group(1)) in port_map and healthcheck_cmd[0] == HEALTHCHECK_PATH,
                     f"{name}: health check {healthcheck_cmd} is the image's probe on a port it serves"):
                real = f"http://127.0.0.1:{port_map[int(m.group(1))]}{m.group(2)}"
                rc = subprocess.run([HEALTHCHECK, real]).returncode
                check(rc == 0, f"{name}: the health check command exits 0 against ocireg ({real})")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        check(proc.returncode == 0, f"{name}: SIGTERM ends ocireg with status 0 (got {proc.returncode})")
    if healthcheck_cmd:
        rc = subprocess.run([HEALTHCHECK, f"http://127.0.0.1:{admin_port}/healthz"],
                            stderr=subprocess.DEVNULL).returncode
        check(rc != 0, f"{name}: the health check command fails once ocireg has stopped (exit {rc})")


def common_args_checks(name, args):
    check(args and args[0] == "serve", f"{name}: the arguments start with 'serve'")
    listen, admin = flag(args, "--listen"), flag(args, "--admin-listen")
    check(listen == "0.0.0.0:5000", f"{name}: --listen 0.0.0.0:5000")
    check(flag(args, "--auth") == "token", f"{name}: --auth token")
    check(admin == "0.0.0.0:5001", f"{name}: --admin-listen 0.0.0.0:5001 (probes)")
    check(flag(args, "--root") == "/var/lib/ocireg", f"{name}: --root /var/lib/ocireg (the image's volume)")


# ---- kubernetes ---------------------------------------------------------------------------------
def kubernetes():
    kdir = os.path.join(DEPLOY, "kubernetes")
    kust = yaml.safe_load(open(os.path.join(kdir, "kustomization.yaml")))
    docs = []
    for res in kust["resources"]:
        path = os.path.join(kdir, res)
        check(os.path.exists(path), f"kubernetes: {res} of kustomization.yaml exists")
        docs += [d for d in yaml.safe_load_all(open(path)) if d]
    for f in sorted(os.listdir(kdir)):
        check_flags(os.path.join(kdir, f))
    by_kind = {}
    for d in docs:
        check({"apiVersion", "kind", "metadata"} <= d.keys(), f"kubernetes: {d.get('kind')} has apiVersion, kind, metadata")
        by_kind.setdefault(d["kind"], []).append(d)
    (sts,) = by_kind["StatefulSet"]
    spec = sts["spec"]
    labels = spec["template"]["metadata"]["labels"]
    check(spec["selector"]["matchLabels"].items() <= labels.items(), "kubernetes: selector matches the pod labels")
    check(spec.get("replicas") == 1, "kubernetes: one replica (one storage root)")
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    check(spec["serviceName"] in services and services[spec["serviceName"]]["spec"].get("clusterIP") == "None",
          "kubernetes: serviceName is a headless Service")
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    common_args_checks("kubernetes", args)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("registry") == port_of(flag(args, "--listen")), "kubernetes: container port 'registry' is the --listen port")
    check(ports.get("admin") == port_of(flag(args, "--admin-listen")), "kubernetes: container port 'admin' is the --admin-listen port")
    for s in services.values():
        check(s["spec"]["selector"].items() <= labels.items(), f"kubernetes: Service {s['metadata']['name']} selects the pod")
        for p in s["spec"]["ports"]:
            check(p["targetPort"] in ports or p["targetPort"] in ports.values(),
                  f"kubernetes: Service {s['metadata']['name']} targets a container port ({p['targetPort']})")
    probes = []
    for kind, want in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", None)):
        pr = c.get(kind)
        if pr is None and want is None:
            continue
        g = pr["httpGet"]
        port = ports.get(g["port"], g["port"])
        check(port == port_of(flag(args, "--admin-listen")) and (want is None or g["path"] == want),
              f"kubernetes: {kind} is GET {g['path']} on the admin port ({g['port']} = {port})")
        probes.append((port, g["path"]))
    res = c["resources"]
    check(all(k in res.get(t, {}) for t in ("requests", "limits") for k in ("cpu", "memory")),
          "kubernetes: cpu and memory requests and limits")
    psc, csc = pod["securityContext"], c["securityContext"]
    check(psc.get("runAsNonRoot") is True and str(psc.get("runAsUser")) == IMAGE_UID
          and str(psc.get("fsGroup")) == IMAGE_UID, f"kubernetes: pod runs as non-root {IMAGE_UID}, fsGroup {IMAGE_UID}")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "kubernetes: seccomp RuntimeDefault")
    check(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
          and "ALL" in csc.get("capabilities", {}).get("drop", []),
          "kubernetes: read-only root file system, no privilege escalation, all capabilities dropped")
    (vct,) = spec["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    check(mounts.get(vct["metadata"]["name"]) == flag(args, "--root"),
          "kubernetes: the PVC template is mounted at the --root directory")
    check("storage" in vct["spec"]["resources"]["requests"] and vct["spec"]["accessModes"] == ["ReadWriteOnce"],
          "kubernetes: the PVC template asks for ReadWriteOnce storage")
    for np in by_kind.get("NetworkPolicy", []):
        check(np["spec"]["podSelector"]["matchLabels"].items() <= labels.items(), "kubernetes: NetworkPolicy selects the pod")
    run_server("kubernetes", args, probes, None)


# ---- ECS ----------------------------------------------------------------------------------------
def ecs():
    path = os.path.join(DEPLOY, "ecs", "task-definition.json")
    td = json.load(open(path))
    check_flags(path)
    (c,) = td["containerDefinitions"]
    args = c["command"]
    common_args_checks("ecs", args)
    check(isinstance(c.get("cpu"), int) and isinstance(c.get("memory"), int), "ecs: container cpu and memory")
    check(int(td["cpu"]) >= c["cpu"] and int(td["memory"]) >= c["memory"], "ecs: task cpu/memory cover the container's")
    cports = {p["containerPort"] for p in c["portMappings"]}
    check(cports == {port_of(flag(args, "--listen")), port_of(flag(args, "--admin-listen"))},
          "ecs: portMappings are the --listen and --admin-listen ports")
    if td.get("networkMode") == "awsvpc":
        check(all(p.get("hostPort", p["containerPort"]) == p["containerPort"] for p in c["portMappings"]),
              "ecs: awsvpc: hostPort = containerPort")
    hc = c["healthCheck"]
    check(hc["command"][0] == "CMD" and all(k in hc for k in ("interval", "timeout", "retries")),
          "ecs: healthCheck runs a command (no shell in the image: CMD, not CMD-SHELL)")
    vols = {v["name"] for v in td["volumes"]}
    check(all(m["sourceVolume"] in vols for m in c["mountPoints"]), "ecs: mountPoints use declared volumes")
    check(any(m["containerPath"] == flag(args, "--root") for m in c["mountPoints"]), "ecs: a volume at --root")
    check(c.get("readonlyRootFilesystem") is True and str(c.get("user", "")).split(":")[0] == IMAGE_UID,
          f"ecs: read-only root file system, user {IMAGE_UID}")
    m = re.search(r":(\d+)/", hc["command"][-1])
    run_server("ecs", args, [(int(m.group(1)), "/healthz")] if m else [], hc["command"][1:])


# ---- compose ------------------------------------------------------------------------------------
def compose():
    path = os.path.join(DEPLOY, "compose", "compose.yaml")
    doc = yaml.safe_load(open(path))
    check_flags(path)
    (svc,) = doc["services"].values()
    args = svc["command"]
    common_args_checks("compose", args)
    published = {}
    for p in svc["ports"]:
        parts = str(p).split(":")
        published[int(parts[-1])] = parts
    check(port_of(flag(args, "--listen")) in published and port_of(flag(args, "--admin-listen")) in published,
          "compose: the --listen and --admin-listen ports are published")
    adm = published.get(port_of(flag(args, "--admin-listen")), [])
    check(len(adm) == 3 and adm[0] == "127.0.0.1", "compose: the admin port is published on the host's loopback only")
    named = set((doc.get("volumes") or {}).keys())
    vols = [v.split(":") for v in svc["volumes"]]
    check(any(v[1] == flag(args, "--root") and v[0] in named for v in vols), "compose: a named volume at --root")
    check(svc.get("read_only") is True and str(svc.get("user", "")).split(":")[0] == IMAGE_UID
          and "ALL" in svc.get("cap_drop", []), f"compose: read-only, user {IMAGE_UID}, all capabilities dropped")
    hc = svc["healthcheck"]["test"]
    check(hc[0] == "CMD", "compose: healthcheck runs a command (CMD: no shell in the image)")
    m = re.search(r":(\d+)(/\w+)", hc[-1])
    run_server("compose", args, [(int(m.group(1)), m.group(2))] if m else [], hc[1:])


for part in (kubernetes, ecs, compose):
    try:
        part()
    except Exception as e:  # a missing key is a failed check, with the others still run
        check(False, f"{part.__name__}: {type(e).__name__}: {e}")

if FAILURES:
    log(f"{len(FAILURES)} failed: " + "; ".join(FAILURES))
    sys.exit(1)
log("all checks passed")
