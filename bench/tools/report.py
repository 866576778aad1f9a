#!/usr/bin/env python3
"""Summarise the raw per-run CSV written by run.sh into one table per concurrency.

Usage: report.py RAW_CSV
Each cell is the median over the rounds. The last two columns compare
otpgate-required against the row's target:
  rps x  = otpgate-required req/s     / this target's req/s  (>1: otpgate is faster)
  cpu x  = otpgate-required CPU µs/req / this target's CPU µs/req (<1: otpgate is cheaper)
"""
import csv
import statistics
import sys
from collections import defaultdict

# Display order: from "no proxy" to "proxy + JWT check" to otpgate.
ORDER = [
    "upstream",
    "nginx",
    "haproxy",
    "haproxy-jwt",
    "nginx-authreq",
    "otpgate-public",
    "otpgate-required",
]
REF = "otpgate-required"


def fmt(v, spec):
    # spec is like "9.3f": a missing value is a right-aligned "-" of the same width.
    return format("-", ">" + spec.split(".")[0]) if v is None else format(v, spec)


def main() -> None:
    rows = list(csv.DictReader(open(sys.argv[1], newline="")))
    runs = defaultdict(list)
    for r in rows:
        runs[(int(r["conns"]), r["target"])].append(r)

    def med(key, conns, target):
        vals = [float(r[key]) for r in runs.get((conns, target), []) if r.get(key, "") != ""]
        return statistics.median(vals) if vals else None

    for conns in sorted({c for c, _ in runs}):
        targets = [t for t in ORDER if (conns, t) in runs]
        targets += sorted(t for c, t in runs if c == conns and t not in ORDER)
        ref_rps, ref_cpu = med("rps", conns, REF), med("cpu_us_per_req", conns, REF)
        nrounds = max(len(runs[(conns, t)]) for t in targets)
        print(f"\nconnections={conns}  (medians over {nrounds} round(s))")
        head = (f"{'target':<18}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
                f"{'CPU µs/req':>12}{'core %':>8}{'sys %':>7}{'errors':>8}   {'rps x':>6}{'cpu x':>7}")
        print(head)
        print("-" * len(head))
        for t in targets:
            rps, cpu = med("rps", conns, t), med("cpu_us_per_req", conns, t)
            p50, p99 = med("p50_us", conns, t), med("p99_us", conns, t)
            core, sys_pct = med("core_pct", conns, t), med("sys_pct", conns, t)
            errors = sum(int(r["non2xx"]) + int(r["sock_errors"]) for r in runs[(conns, t)])
            rps_x = ref_rps / rps if ref_rps and rps else None
            cpu_x = ref_cpu / cpu if ref_cpu and cpu else None
            print(f"{t:<18}{fmt(rps, '10.0f')}{fmt(p50 and p50 / 1000, '9.3f')}"
                  f"{fmt(p99 and p99 / 1000, '9.3f')}{fmt(cpu, '12.1f')}{fmt(core, '8.0f')}{fmt(sys_pct, '7.0f')}"
                  f"{errors:>8}   {fmt(rps_x, '6.2f')}{fmt(cpu_x, '7.2f')}")
        if ref_rps is None:
            print(f"({REF} was not measured: ratio columns are empty)")
    print("\nrps x = otpgate-required req/s / row req/s (>1: otpgate faster);"
          " cpu x = otpgate-required CPU/req / row CPU/req (<1: otpgate cheaper).")
    print("CPU is the proxy's own utime+stime (nginx: master+workers; nginx-authreq:"
          " nginx + its validator; upstream: the upstream nginx, which shares a core with wrk).")


if __name__ == "__main__":
    main()
