#!/usr/bin/env python3
"""Turns the raw figures of run.sh into the table of medians and the JSON document.

usage: report.py RAW.jsonl OUT.json  (run metadata as JSON on stdin)
"""
import json
import statistics
import sys

HIGHER, LOWER = "higher", "lower"

# (metric, label, unit, better, bound): bound names the machine limit that caps the figure
ROWS = [
    ("upload_MBps", "raw upload, POST+PATCH+PUT of 1 blob", "MB/s", HIGHER, "min(sha256, disk)"),
    ("upload_patch_s", "  of which the PATCH (the data)", "s", LOWER, None),
    ("upload_put_s", "  of which the PUT ?digest= (commit)", "s", LOWER, None),
    ("push_MBps", "skopeo copy oci: -> registry, 4 layers", "MB/s", HIGHER, "min(sha256, disk)"),
    ("get_MBps", "curl GET of the 4 layers", "MB/s", HIGHER, "tcp"),
    ("getraw_MBps", "GET of the 4 layers, 1 MiB reads", "MB/s", HIGHER, "tcp"),
    ("pull_MBps", "skopeo copy registry -> oci:, 4 layers", "MB/s", HIGHER, "sha256"),
    ("get_manifest_rps", "GET manifest, 64 conns (wrk)", "req/s", HIGHER, None),
    ("get_manifest_p99_ms", "GET manifest p99", "ms", LOWER, None),
    ("head_manifest_rps", "HEAD manifest, 64 conns (hey)", "req/s", HIGHER, None),
    ("head_manifest_p99_ms", "HEAD manifest p99", "ms", LOWER, None),
    ("get_blob4k_rps", "GET 4 KiB blob, 64 conns (wrk)", "req/s", HIGHER, None),
    ("get_blob4k_p99_ms", "GET 4 KiB blob p99", "ms", LOWER, None),
    ("push16_wall_s", "16 concurrent skopeo pushes, wall", "s", LOWER, None),
    ("cpu_s_upload", "server CPU: raw upload", "s", LOWER, None),
    ("cpu_s_push", "server CPU: skopeo push", "s", LOWER, None),
    ("cpu_s_get", "server CPU: curl GET layers", "s", LOWER, None),
    ("cpu_s_getraw", "server CPU: GET layers, 1 MiB reads", "s", LOWER, None),
    ("cpu_s_pull", "server CPU: skopeo pull", "s", LOWER, None),
    ("cpu_us_per_req_get_manifest", "server CPU per GET manifest", "us", LOWER, None),
    ("cpu_us_per_req_head_manifest", "server CPU per HEAD manifest", "us", LOWER, None),
    ("cpu_us_per_req_get_blob4k", "server CPU per GET 4 KiB blob", "us", LOWER, None),
    ("cpu_s_push16", "server CPU: 16 concurrent pushes", "s", LOWER, None),
    ("client_cpu_s_push", "client CPU: skopeo push", "s", LOWER, None),
    ("client_cpu_s_get", "client CPU: curl GET layers", "s", LOWER, None),
    ("client_cpu_s_pull", "client CPU: skopeo pull", "s", LOWER, None),
    ("client_cpu_s_push16", "client CPU: 16 concurrent pushes", "s", LOWER, None),
    ("idle_rss_mib", "RSS right after start", "MiB", LOWER, None),
    ("peak_rss_mib_upload", "peak RSS (VmHWM): upload", "MiB", LOWER, None),
    ("peak_rss_mib_pushpull", "peak RSS: push + GET + pull", "MiB", LOWER, None),
    ("peak_rss_mib_small", "peak RSS: small requests", "MiB", LOWER, None),
    ("peak_rss_mib_push16", "peak RSS: 16 concurrent pushes", "MiB", LOWER, None),
]
SERVERS = ("ocireg", "distribution")


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}" if v else "0"


def main():
    raw_path, out_path = sys.argv[1], sys.argv[2]
    meta = json.load(sys.stdin)
    raw = [json.loads(line) for line in open(raw_path) if line.strip()]
    by = {}
    for r in raw:
        by.setdefault((r["metric"], r["server"]), []).append(r["value"])

    def med(metric, server):
        v = by.get((metric, server))
        return statistics.median(v) if v else None

    def best(metric):
        v = by.get((metric, "machine"))
        return max(v) if v else None

    # best of the rounds: other load on the machine only ever lowers these
    limits = {
        "sha256_MBps": best("sha256_MBps"),
        "disk_fdatasync_MBps": best("disk_fdatasync_MBps"),
        "loopback_tcp_GBps": best("loopback_tcp_GBps"),
    }
    load = by.get(("loadavg_1m", "machine"), [])
    bound_value = {
        "sha256": limits["sha256_MBps"],
        "tcp": (limits["loopback_tcp_GBps"] or 0) * 1000 or None,
        "min(sha256, disk)": min(x for x in (limits["sha256_MBps"], limits["disk_fdatasync_MBps"])
                                 if x is not None) if limits["sha256_MBps"] else None,
    }

    table = []
    for metric, label, unit, better, bound in ROWS:
        o, d = med(metric, "ocireg"), med(metric, "distribution")
        if o is None and d is None:
            continue
        ratio = o / d if o is not None and d else None
        verdict = ""
        if ratio is not None:
            if abs(ratio - 1) < 0.05:
                verdict = "~ same"
            elif (ratio > 1) == (better == HIGHER):
                verdict = "ocireg better"
            else:
                verdict = "ocireg WORSE"
        bv = bound_value.get(bound) if bound else None
        table.append({"metric": metric, "label": label, "unit": unit, "better": better,
                      "ocireg": o, "distribution": d, "ratio_ocireg_over_distribution": ratio,
                      "verdict": verdict, "bound": bound, "bound_value": bv,
                      "ocireg_pct_of_bound": 100 * o / bv if bv and o is not None else None,
                      "ocireg_values": by.get((metric, "ocireg"), []),
                      "distribution_values": by.get((metric, "distribution"), [])})

    scale = []
    for c in (1, 4, 16, 64):
        rps, p99 = med(f"scale_c{c}_rps", "ocireg"), med(f"scale_c{c}_p99_ms", "ocireg")
        if rps is not None:
            scale.append({"connections": c, "rps": rps, "p99_ms": p99,
                          "rps_values": by.get((f"scale_c{c}_rps", "ocireg"), []),
                          "p99_ms_values": by.get((f"scale_c{c}_p99_ms", "ocireg"), [])})
    errors = [r for r in raw if r["metric"].startswith("errors_")]

    doc = {"meta": meta, "machine_limits": limits,
           "machine_limits_per_round": {k: by.get((k, "machine"), []) for k in limits},
           "loadavg_1m": load, "medians": table, "scaling_ocireg": scale,
           "request_errors": errors, "raw": raw}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=2)

    sz = meta["sizes"]
    print()
    print(f"ocireg vs CNCF Distribution — medians of {meta['rounds']} round(s)"
          f"{' (QUICK smoke run)' if meta['quick'] else ''}; "
          f"upload blob {sz['upload_blob'] >> 20} MiB, image 4 x {sz['layer'] >> 20} MiB, "
          f"16 x {sz['small_image'] >> 20} MiB images, {meta['small_request_seconds']} s per "
          f"small-request run; MB = 10^6 bytes")
    print(f"machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
          f"kernel {meta['machine']['kernel']}")
    print()
    hdr = (f"{'workload':<42} {'unit':<6} {'better':<7} {'ocireg':>10} {'distrib.':>10} "
           f"{'ratio o/d':>9}  {'verdict':<14} {'limit':>10} {'%limit':>6}")
    print(hdr)
    print("-" * len(hdr))
    for row in table:
        ratio = f"{row['ratio_ocireg_over_distribution']:.2f}x" \
            if row["ratio_ocireg_over_distribution"] is not None else "-"
        pct = f"{row['ocireg_pct_of_bound']:.0f}%" if row["ocireg_pct_of_bound"] is not None else ""
        lim = fmt(row["bound_value"]) if row["bound_value"] else ""
        print(f"{row['label']:<42} {row['unit']:<6} {row['better']:<7} {fmt(row['ocireg']):>10} "
              f"{fmt(row['distribution']):>10} {ratio:>9}  {row['verdict']:<14} {lim:>10} {pct:>6}")
    print()
    print("machine limits, best of the rounds (upper bounds for the throughput rows; 'limit' "
          "column above):")
    print(f"  sha256, one core, 16 KiB blocks (openssl speed -evp sha256): "
          f"{fmt(limits['sha256_MBps'])} MB/s")
    print(f"  sequential write + fdatasync (dd bs=1M):                       "
          f"{fmt(limits['disk_fdatasync_MBps'])} MB/s")
    print(f"  loopback TCP, one stream (iperf3):                             "
          f"{fmt(limits['loopback_tcp_GBps'])} GB/s")
    cores = meta["machine"]["cores"]
    if load:
        print(f"  1-minute load average at the start of each workload: median "
              f"{statistics.median(load):.1f}, max {max(load):.1f} ({cores} cores)")
        if max(load) > cores:
            print("  WARNING: other processes competed for the CPU during the run; throughput "
                  "and latency figures are noisy (CPU and RSS rows are not affected much)")
    if scale:
        print()
        print("ocireg, GET manifest (wrk), scaling with connections:")
        print(f"  {'conns':>5} {'req/s':>10} {'p99 ms':>8}")
        for s in scale:
            print(f"  {s['connections']:>5} {fmt(s['rps']):>10} {fmt(s['p99_ms']):>8}")
    if errors:
        print()
        print("WARNING: some small-request runs had failed or non-2xx requests:")
        for e in errors:
            print(f"  {e['server']} {e['metric'][7:]} round {e['round']}: {e['value']:.0f}")
    print()


if __name__ == "__main__":
    main()
