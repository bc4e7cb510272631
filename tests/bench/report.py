#!/usr/bin/env python3
"""Turns Google Benchmark JSON into the README's performance table (figures and ratios to targets)."""
import json
import os
import sys


def load(paths):
    runs, context = {}, {}
    for path in paths:
        if not os.path.exists(path):  # e.g. rpc_bench.sh run alone: its rows only
            continue
        data = json.load(open(path))
        context = data.get("context", context)
        for run in data["benchmarks"]:
            if run.get("run_type", "iteration") == "iteration" and not run.get("error_occurred"):
                runs[run["name"]] = run
    return runs, context


def rate(runs, name):
    run = runs.get(name)
    return run["items_per_second"] if run and "items_per_second" in run else None


def seconds(runs, name):
    run = runs.get(name)
    if not run:
        return None
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[run["time_unit"]]
    return run["real_time"] * scale


def fmt_rate(value):
    if value is None:
        return "n/a"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= div:
            return f"{value / div:.2f}{unit}/s"
    return f"{value:.0f}/s"


def main():
    results = sys.argv[1]
    runs, context = load([os.path.join(results, f) for f in ("backend_bench.json",
                                                             "registry_bench.json",
                                                             "recovery_bench.json",
                                                             "store_bench.json")])
    threads = max([int(n.split("threads:")[1]) for n in runs if "BM_UseUnuse/distinct_groups" in n
                   and "threads:" in n] or [1])
    rows = []

    def row(what, value_text, ratio, target):
        rows.append((what, value_text, "n/a" if ratio is None else f"{ratio:.2f}", target))

    ad = rate(runs, "BM_AttachDetach/real_time/threads:1")
    row("core attach/detach, 1 thread (ops/s)", fmt_rate(ad), ad and ad / 1e6, ">= 1.00 (1M ops/s)")
    for backend in ("software", "emulated"):
        mu = rate(runs, f"BM_MapUnmap/{backend}_4K")
        row(f"{backend} backend 4K map+unmap (pages/s)", fmt_rate(mu),
            mu and mu / 5e6 if backend == "software" else None,
            ">= 1.00 (5M pages/s)" if backend == "software" else "(no target)")
    for backend in ("software", "emulated"):
        t = seconds(runs, f"BM_Map1GiBWith2MPages/{backend}")
        row(f"{backend} backend 1 GiB map with 2M pages", "n/a" if t is None else f"{t * 1e6:.0f} us",
            t and 1e-3 / t if backend == "software" else None,
            ">= 1.00 (< 1 ms)" if backend == "software" else "(no target)")
    rm = rate(runs, "BM_RegistryMapUnmap4K")
    row("registry 4K map+unmap incl. IOTLB invalidation (pages/s)", fmt_rate(rm), None, "(context)")
    pr = rate(runs, "BM_ProbeRelease")
    row("probe+release (ops/s)", fmt_rate(pr), None, "(context)")
    one = rate(runs, f"BM_UseUnuse/one_group/real_time/threads:{threads}")
    one_single = rate(runs, "BM_UseUnuse/one_group/real_time/threads:1")
    many = rate(runs, f"BM_UseUnuse/distinct_groups/real_time/threads:{threads}")
    single = rate(runs, "BM_UseUnuse/distinct_groups/real_time/threads:1")
    row(f"group isolation in-process: {threads} threads on distinct groups vs 1 thread",
        fmt_rate(many), many and single and many / single,
        f"scales with cores ({os.cpu_count()} here)")
    row(f"group isolation in-process: {threads} threads on one group vs 1 thread", fmt_rate(one),
        one and one_single and one / one_single, "serializes, does not collapse (>= 0.5)")
    for backend in ("software", "emulated"):
        hit = rate(runs, f"BM_Translate/{backend}_iotlb_hit")
        miss = rate(runs, f"BM_Translate/{backend}_iotlb_miss")
        row(f"{backend} translate: IOTLB miss vs hit", f"{fmt_rate(miss)} vs {fmt_rate(hit)}",
            miss and hit and miss / hit, "(context)")

    for how in ("fresh_hardware", "surviving_hardware"):
        t = seconds(runs, f"BM_Recover/{how}/10000/real_time")
        row(f"recovery of 10k devices / 1k domains / 10k mappings, {how.replace('_', ' ')}",
            "n/a" if t is None else f"{t * 1e3:.0f} ms", None, "(context)")
    plain = rate(runs, "BM_AttachDetachCommitted/no_store")
    committed = rate(runs, "BM_AttachDetachCommitted/memory_store")
    row("attach+detach committing every change (memory store) vs no store", fmt_rate(committed),
        committed and plain and committed / plain, "(context: the cost of building batches)")
    for kind, label in (("memory", "memory store"), ("sqlite_normal", "SQLite NORMAL, kill -9 safe"),
                        ("sqlite_full", "SQLite FULL, power-loss safe")):
        commits = rate(runs, f"BM_CommitAttachBatch/{kind}/real_time")
        ops = rate(runs, f"BM_AttachDetachDurable/{kind}/real_time")
        row(f"attach batch commits ({label}); registry attach+detach over it",
            f"{fmt_rate(commits)}; {fmt_rate(ops)}", None, "(context: store_bench)")

    memory_path = os.path.join(results, "memory.json")
    if os.path.exists(memory_path):
        memory = json.load(open(memory_path))
        row(f"memory per device ({memory['devices']} devices)",
            f"{memory['bytes_per_device']:.0f} B", None, "(context)")
        row(f"memory per 4K mapping ({memory['pages']} pages)",
            f"{memory['bytes_per_4k_mapping']:.1f} B", None, "(context)")
    rpc_path = os.path.join(results, "rpc.jsonl")
    if os.path.exists(rpc_path):
        rpc = {}
        for line in open(rpc_path):
            entry = json.loads(line)
            rpc[entry["run"]] = entry["result"]
        health, ad = rpc["health"]["ops_per_second"], rpc["attach_detach"]["ops_per_second"]
        row("RPC floor: attach+detach vs health Check (4 conns x 8 in flight)",
            f"{ad:.0f}/s vs {health:.0f}/s", ad / health, ">= 0.95")
        many, one = rpc["distinct_groups"]["ops_per_second"], rpc["one_group"]["ops_per_second"]
        row("over RPC: 64 distinct groups vs 1 group (4 conns x 16 in flight)",
            f"{many:.0f}/s vs {one:.0f}/s", many / one, "one group serializes, does not collapse")
        # Goals of issue #18: group commit shares one WAL commit (one fsync with sync=full)
        # among the changes of concurrent calls.
        for sync, goal in (("normal", ">= 0.90"), ("full", ">= 0.50")):
            durable = rpc.get(f"attach_detach_sqlite_{sync}", {}).get("ops_per_second")
            row(f"durable attach+detach RPC/s: sqlite sync={sync} vs --state=memory",
                "n/a" if durable is None else f"{durable:.0f}/s vs {ad:.0f}/s",
                durable and durable / ad, goal)
        plain = rpc.get("attach_detach_sqlite_normal", {}).get("ops_per_second")
        with_ids = rpc.get("attach_detach_sqlite_normal_ids", {}).get("ops_per_second")
        row("durable attach+detach RPC/s (sync=normal): every call with a request_id vs none",
            "n/a" if not (plain and with_ids) else f"{with_ids:.0f}/s vs {plain:.0f}/s",
            plain and with_ids and with_ids / plain, ">= 0.90")
        idle, loaded = rpc["light_idle"]["p99_us"], rpc["light_under_load"]["p99_us"]
        row("light client p99 on group A: under a heavy client on group B vs idle",
            f"{loaded:.0f} us vs {idle:.0f} us", loaded / idle if idle else None, "(context)")
        # Issue #18 item 4: what a heavy client mutating another group costs a light client beyond
        # what the same client's CPU load costs it (heavy health Checks at the same concurrency).
        for suffix, label in (("", "--state=memory"), ("_sqlite_normal", "sqlite sync=normal")):
            mutating = rpc.get(f"light_under_load{suffix}")
            checks = rpc.get(f"light_under_health{suffix}")
            for q in ("p50", "p99"):
                m = mutating and mutating[f"{q}_us"]
                c = checks and checks[f"{q}_us"]
                row(f"light client {q} ({label}): heavy client on group B mutating vs health Checks",
                    "n/a" if not (m and c) else f"{m:.0f} us vs {c:.0f} us",
                    m and c and m / c, "<= 1.20")

    print(f"Measured {context.get('date', '')} on {context.get('num_cpus', '?')} CPUs "
          f"at {context.get('mhz_per_cpu', '?')} MHz, iommud built in Release.\n")
    print("| figure | measured | ratio | target |")
    print("|---|---|---|---|")
    for what, value, ratio, target in rows:
        print(f"| {what} | {value} | {ratio} | {target} |")


if __name__ == "__main__":
    main()
