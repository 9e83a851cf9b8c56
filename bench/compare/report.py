#!/usr/bin/env python3
"""Aggregates the records of bench/compare.sh (one JSON object per line) into OUT.json
and OUT.md: every figure as the median over the rounds, with its in-run reference and
the ratios, each ratio taken within a round (the machine is shared, so absolute
figures drift between rounds more than ratios do) and then the median.

  report.py RESULTS.jsonl OUT
"""

import json
import re
import statistics
import sys
from collections import defaultdict

TESTS = {"tcp": "TCP", "udp1400": "UDP 1400 B", "udp64": "UDP 64 B"}
NAMES = {"vpnd": "vpnd (raw ESP)", "vpnd-udp": "vpnd (ESP in UDP)", "strongswan": "strongSwan (kernel-libipsec)", "boringtun": "boringtun", "bare": "bare link"}
# The targets.
TCP_VS_STRONGSWAN, TCP_VS_BORINGTUN, SETUPS_VS_CHARON, FAILOVER_P99_MS = 5.0, 2.0, 3.0, 500.0


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def fmt_runs(xs, digits=0):
    """Median, and every round's figure in parentheses when there are several."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt(xs[0], digits)
    return f"{fmt(median(xs), digits)} ({', '.join(fmt(x, digits) for x in xs)})"


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}"


def metric(rec):
    """The headline figure of a dataplane record: Mbit/s for TCP, pps for UDP."""
    return rec.get("mbps") if rec["test"] == "tcp" else rec.get("pps")


def per_gbit(rec, key):
    g = rec.get("gbits")
    return rec[key] / g if g and key in rec else None


def per_packet(rec):
    """Gateway CPU microseconds per UDP datagram delivered."""
    if rec["test"] == "tcp" or not rec.get("gbits"):
        return None
    packets = rec["gbits"] * 1e9 / 8 / int(rec["test"][3:])
    return rec["gw_cpu_s"] / packets * 1e6


def dataplane(records):
    by = defaultdict(dict)  # (system, proposal, test) -> rep -> record
    for r in records:
        if "error" not in r:
            by[(r["system"], r["proposal"], r["test"])][r["rep"]] = r
    rows = []
    order = list(NAMES)
    for (system, proposal, test), reps in sorted(by.items(), key=lambda kv: (list(TESTS).index(kv[0][2]), order.index(kv[0][0]), kv[0][1])):
        bare = by.get(("bare", "none", test), {})
        swan = by.get(("strongswan", proposal, test), {})
        bt = next((v for (s, _, t), v in by.items() if s == "boringtun" and t == test), {})
        ratios = defaultdict(list)
        for rep, rec in reps.items():
            m = metric(rec)
            ratios["vs_bare"].append(ratio(m, metric(bare[rep])) if rep in bare else None)
            if system.startswith("vpnd"):
                ratios["vs_strongswan"].append(ratio(m, metric(swan[rep])) if rep in swan else None)
                ratios["vs_boringtun"].append(ratio(m, metric(bt[rep])) if rep in bt else None)
        recs = [reps[k] for k in sorted(reps)]
        rows.append({
            "test": test,
            "system": system,
            "proposal": proposal,
            "runs": [metric(r) for r in recs],
            "unit": "Mbit/s" if test == "tcp" else "pps received",
            "median": median(metric(r) for r in recs),
            "loss_pct": median(r.get("loss_pct") for r in recs),
            "path_loss_pct": median(max(0.0, 100 * (1 - r["pps"] / r["sent_pps"])) if r.get("sent_pps") else None for r in recs),
            "gw_cpu_s_per_gbit": median(per_gbit(r, "gw_cpu_s") for r in recs),
            "machine_cpu_s_per_gbit": median(per_gbit(r, "sys_cpu_s") for r in recs),
            "gw_cpu_us_per_packet": median(per_packet(r) for r in recs),
            "vs_bare": median(ratios["vs_bare"]),
            "vpnd_vs_strongswan": median(ratios["vs_strongswan"]),
            "vpnd_vs_boringtun": median(ratios["vs_boringtun"]),
        })
    return rows


def control(records):
    by = defaultdict(list)
    for r in records:
        by[(r["test"], r["auth"], r["responder"])].append(r)
    rows = []
    for test in ("seq", "fan"):
        for auth in dict.fromkeys(a for (t, a, _) in by if t == test):
            v, s = by.get((test, auth, "vpnd"), []), by.get((test, auth, "strongswan"), [])
            row = {"test": test, "auth": auth}
            for name, recs in (("vpnd", v), ("strongswan", s)):
                row[name] = {
                    "setups_per_s": median(r.get("setups_per_s") for r in recs),
                    "median_ms": median(r.get("median_ms") for r in recs),
                    "established": median(r.get("established") for r in recs),
                    "k": median(r.get("k") for r in recs),
                    "fails": median(r.get("fails") for r in recs),
                    "kib_per_sa": median(r.get("kib_per_sa") for r in recs),
                    "rsp_cpu_ms_per_setup": median(r.get("rsp_cpu_ms_per_setup") for r in recs),
                    "rss_before_kib": median(r.get("rss_before_kib") for r in recs),
                    "ini_cpu_ms_per_setup": median(r.get("ini_cpu_ms_per_setup") for r in recs),
                }
            row["setups_ratio"] = ratio(row["vpnd"]["setups_per_s"], row["strongswan"]["setups_per_s"])
            row["memory_ratio"] = ratio(row["vpnd"]["kib_per_sa"], row["strongswan"]["kib_per_sa"])
            # Setups one responder CPU second pays for: the capacity the responder would
            # have with an initiator that does not saturate first.
            row["cpu_capacity_ratio"] = ratio(row["strongswan"]["rsp_cpu_ms_per_setup"], row["vpnd"]["rsp_cpu_ms_per_setup"])
            rows.append(row)
    return rows


def scale_rows(records):
    """Issue 4's scale test: one row per tunnel count, vpnd beside charon."""
    by = defaultdict(dict)
    for r in records:
        by[int(r["test"])][r["responder"]] = r
    rows = []
    for n in sorted(by):
        v, s = by[n].get("vpnd", {}), by[n].get("strongswan", {})
        rows.append({"tunnels": n, "vpnd": v, "strongswan": s,
                     "setups_ratio": ratio(v.get("setups_per_s"), s.get("setups_per_s")),
                     "memory_ratio": ratio(v.get("kib_per_sa"), s.get("kib_per_sa")),
                     "cpu_ratio": ratio(v.get("rsp_cpu_s"), s.get("rsp_cpu_s"))})
    return rows


def table(md, header, rows, left=1):
    """A Markdown table: the first `left` columns left-aligned, the rest right-aligned."""
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "---|" * left + "---:|" * (len(header) - left))
    for row in rows:
        md.append("| " + " | ".join(str(c) for c in row) + " |")


def main():
    path, out = sys.argv[1], sys.argv[2]
    records = [json.loads(line) for line in open(path) if line.strip()]
    meta = next((r for r in records if r["section"] == "meta"), {})
    dp = dataplane([r for r in records if r["section"] == "dataplane"])
    cp = control([r for r in records if r["section"] == "control"])
    scale = scale_rows([r for r in records if r["section"] == "scale"])
    failover = [r for r in records if r["section"] == "cluster" and r["test"] == "failover"]
    commit = [r for r in records if r["section"] == "cluster" and r["test"] == "commit"]

    targets = []
    for row in dp:
        if row["test"] == "tcp" and row["system"].startswith("vpnd"):
            for key, goal, who in (("vpnd_vs_strongswan", TCP_VS_STRONGSWAN, "strongSwan"), ("vpnd_vs_boringtun", TCP_VS_BORINGTUN, "boringtun")):
                if row[key] is not None:
                    targets.append({"target": f"TCP >= {goal:g}x {who} ({NAMES[row['system']]}, {row['proposal']})", "measured": round(row[key], 2), "met": row[key] >= goal})
    for row in cp:
        if row["setups_ratio"] is not None:
            targets.append({"target": f"setups/s >= {SETUPS_VS_CHARON:g}x charon ({row['auth']}, {row['test']})", "measured": round(row["setups_ratio"], 2), "met": row["setups_ratio"] >= SETUPS_VS_CHARON})
        if row["cpu_capacity_ratio"] is not None:
            targets.append({"target": f"(setups per responder CPU second >= {SETUPS_VS_CHARON:g}x charon ({row['auth']}, {row['test']}))", "measured": round(row["cpu_capacity_ratio"], 2), "met": row["cpu_capacity_ratio"] >= SETUPS_VS_CHARON})
    for r in failover:
        targets.append({"target": f"failover gap p99 < {FAILOVER_P99_MS / 1000:g} s (heartbeat {r['heartbeat']})", "measured": r["p99_ms"], "met": r["p99_ms"] < FAILOVER_P99_MS})

    json.dump({"meta": meta, "dataplane": dp, "control": cp, "scale": scale, "failover": failover, "commit": commit, "targets": targets, "records": records}, open(out + ".json", "w"), indent=1)

    md = []
    md.append(f"# vpnd vs strongSwan vs boringtun ({meta.get('date', '?')})\n")
    md.append(f"Machine: {meta.get('cpus', '?')} x {meta.get('cpu', '?')}, kernel {meta.get('kernel', '?')}, load average at start {meta.get('loadavg', '?')}; "
              f"vpnd {meta.get('commit', '?')} with {meta.get('vpnd_workers', '?')} SPU worker(s), strongSwan {meta.get('strongswan', '?')}, {meta.get('boringtun', '?')}, {meta.get('iperf3', '?')}. "
              f"Dataplane: {meta.get('dp_repeat', '?')} round(s) of {meta.get('dp_seconds', '?')} s per test, the bare link measured in every round; "
              "figures are medians, rounds in parentheses, ratios taken within a round.\n")
    for test, title in TESTS.items():
        rows = [r for r in dp if r["test"] == test]
        if not rows:
            continue
        udp = test != "tcp"
        md.append(f"\n## Dataplane: {title}\n")
        header = ["system", "ESP / cipher", "pps delivered" if udp else "Mbit/s"]
        header += ["lost on the way % (iperf3's loss %)"] if udp else []
        header += ["x / bare", "vpnd / strongSwan", "vpnd / boringtun", "gateways CPU s/Gbit", "machine CPU s/Gbit"]
        header += ["gateways CPU µs/packet"] if udp else []
        cells = []
        for r in rows:
            row = [NAMES.get(r["system"], r["system"]), r["proposal"], fmt_runs(r["runs"])]
            row += [f"{fmt(r['path_loss_pct'], 1)} ({fmt(r['loss_pct'], 1)})"] if udp else []
            row += [fmt_ratio(r["vs_bare"]), fmt_ratio(r["vpnd_vs_strongswan"]), fmt_ratio(r["vpnd_vs_boringtun"]),
                    fmt(r["gw_cpu_s_per_gbit"], 2), fmt(r["machine_cpu_s_per_gbit"], 2)]
            row += [fmt(r["gw_cpu_us_per_packet"], 2)] if udp else []
            cells.append(row)
        table(md, header, cells, left=2)
    if cp:
        md.append("\n## Control plane: IKE SA + child SA setups, tools/ikeload against each responder\n")
        md.append("Every setup from its own peer address. `seq`: one at a time, median latency. "
                  "`fan`: that many setups, `CP_INFLIGHT` at once; memory = responder RSS growth / IKE SAs up. "
                  "Initiator CPU: ikeload's.\n")
        cells = []
        for r in cp:
            v, s = r["vpnd"], r["strongswan"]
            test = f"{r['test']} ({fmt(v['established'])}/{fmt(v['k'])} and {fmt(s['established'])}/{fmt(s['k'])} up)"
            cells.append([r["auth"], test, fmt(v["setups_per_s"], 1), fmt(s["setups_per_s"], 1), fmt_ratio(r["setups_ratio"]),
                          fmt(v["median_ms"], 2), fmt(s["median_ms"], 2), fmt(v["kib_per_sa"], 1), fmt(s["kib_per_sa"], 1), fmt_ratio(r["memory_ratio"]),
                          f"{fmt(v['rsp_cpu_ms_per_setup'], 2)} / {fmt(s['rsp_cpu_ms_per_setup'], 2)}",
                          f"{fmt(v['ini_cpu_ms_per_setup'], 2)} / {fmt(s['ini_cpu_ms_per_setup'], 2)}"])
        table(md, ["auth", "test", "vpnd setups/s", "charon setups/s", "vpnd / charon", "vpnd median ms", "charon median ms",
                   "vpnd KiB per IKE SA", "charon KiB per IKE SA", "vpnd / charon memory", "responder CPU ms per setup (vpnd / charon)",
                   "initiator CPU ms per setup (against vpnd / charon)"], cells, left=2)
    if scale:
        md.append("\n## Scale (issue 4): tunnels brought up and held, PSK/ECP-256, tools/ikeload against each responder\n")
        md.append("Memory per tunnel = responder RSS growth / tunnels up; idle RSS is the responder's with every peer configured before the first setup (vpnd: one dial-up gateway for every peer, as charon's one connection with remote_addrs = %any; with CP_SCALE_DIALUP=0 one gateway, vpn and st0 unit per peer).\n")
        cells = []
        for r in scale:
            v, s = r["vpnd"], r["strongswan"]
            cells.append([fmt(r["tunnels"]), f"{fmt(v.get('established'))} / {fmt(s.get('established'))}",
                          fmt(v.get("setups_per_s"), 1), fmt(s.get("setups_per_s"), 1), fmt_ratio(r["setups_ratio"]),
                          f"{fmt(v.get('median_ms'), 1)} / {fmt(s.get('median_ms'), 1)}", f"{fmt(v.get('p99_ms'), 1)} / {fmt(s.get('p99_ms'), 1)}",
                          fmt(v.get("kib_per_sa"), 1), fmt(s.get("kib_per_sa"), 1), fmt_ratio(r["memory_ratio"]),
                          f"{fmt(v.get('rsp_cpu_s'), 2)} / {fmt(s.get('rsp_cpu_s'), 2)}", fmt_ratio(r["cpu_ratio"]),
                          f"{fmt((v.get('rss_before_kib') or 0) / 1024, 1)} / {fmt((s.get('rss_before_kib') or 0) / 1024, 1)}"])
        table(md, ["tunnels", "up (vpnd / charon)", "vpnd setups/s", "charon setups/s", "vpnd / charon", "p50 ms (vpnd / charon)",
                   "p99 ms (vpnd / charon)", "vpnd KiB per tunnel", "charon KiB per tunnel", "vpnd / charon memory",
                   "responder CPU s (vpnd / charon)", "vpnd / charon CPU", "idle RSS MiB (vpnd / charon)"], cells)
    if failover or commit:
        md.append("\n## Cluster\n")
        if failover:
            md.append("Traffic gap of kill -9 of the primary under 1/ms UDP probes (`bench/cluster-failover.sh`), against the configured lease; p99 by nearest rank, so with few kills it is the largest gap.\n")
            table(md, ["heartbeat (ms x n)", "kills", "median gap ms", "p99 gap ms", "lease ms", "gap / lease (median / p99)"],
                  [[r["heartbeat"], r["kills"], r["median_ms"], r["p99_ms"], r["lease_ms"], f"{r['median_ratio']} / {r['p99_ratio']}"] for r in failover])
        if commit:
            md.append("\nRaft commit latency (`cargo bench -p sa-sync --bench commit`: 3 members on loopback, mTLS, durable log) and what a commit is made of:\n")
            cells, rest = [], []
            for r in commit:
                m = re.search(r"p50 ([0-9.]+) ms p99 ([0-9.]+) ms mean ([0-9.]+) ms", r["line"])
                if m:
                    cells.append([r["line"][:m.start()].strip(), m[1], m[2], m[3]])
                else:
                    rest.append(f"\n{r['line']}")
            table(md, ["what", "p50 ms", "p99 ms", "mean ms"], cells)
            md.extend(rest)
    if targets:
        md.append("\n## Targets of issue 7\n")
        table(md, ["target", "measured", "met"], [[t["target"], t["measured"], "yes" if t["met"] else "no"] for t in targets])
    open(out + ".md", "w").write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
