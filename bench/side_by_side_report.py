#!/usr/bin/env python3
"""Helper for bench/side-by-side.sh: parses h2load output, computes latency
percentiles from h2load --log-file output, and writes the JSON + Markdown
report.  Standard library only.

Subcommands (all called by the shell script):
  record    append one measurement (closed-loop or open-loop) as a JSON line
  median-rps  print the lowest per-proxy median closed-loop req/s
  report    aggregate the JSON lines into the final JSON and Markdown files
"""
import argparse
import json
import math
import re
import statistics
import sys


def parse_h2load(path):
    """Extract the summary figures from h2load's stdout."""
    text = open(path, encoding="utf-8", errors="replace").read()
    out = {}
    m = re.search(r"finished in ([0-9.]+)(m?s), ([0-9.]+) req/s", text)
    if not m:
        raise SystemExit(f"cannot parse h2load output in {path}:\n{text[-2000:]}")
    secs = float(m.group(1))
    if m.group(2) == "ms":
        secs /= 1000.0
    out["elapsed_s"] = secs
    out["h2load_rps"] = float(m.group(3))
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        text,
    )
    if not m:
        raise SystemExit(f"cannot parse h2load request counts in {path}")
    keys = ["total", "started", "done", "succeeded", "failed", "errored", "timeout"]
    out["requests"] = {k: int(v) for k, v in zip(keys, m.groups())}
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        out["status"] = {
            k: int(v) for k, v in zip(["2xx", "3xx", "4xx", "5xx"], m.groups())
        }
    m = re.search(
        r"traffic: \S+ \((\d+)\) total, \S+ \((\d+)\) headers .*?, \S+ \((\d+)\) data", text
    )
    if m:
        out["traffic_bytes"] = dict(zip(["total", "headers", "data"], map(int, m.groups())))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if m:
        out["h2load_time_for_request"] = dict(
            zip(["min", "max", "mean", "sd"], m.groups())
        )
    return out


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[rank - 1]


def latency_summary(path, accept_4xx=False):
    """Latency samples from h2load --log-file (start_us, status, duration_us).
    Only 2xx answers count, and 4xx ones too with accept_4xx (the refuse
    scenario, where a refusal is the answer being measured)."""
    vals = []
    bad = 0
    first_start = None
    last_start = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            try:
                start = int(parts[0])
                status = int(parts[1])
                dur = int(parts[2])
            except ValueError:
                continue
            if not (200 <= status < 300 or (accept_4xx and 400 <= status < 500)):
                bad += 1
                continue
            vals.append(dur)
            first_start = start if first_start is None else min(first_start, start)
            last_start = start if last_start is None else max(last_start, start)
    vals.sort()
    span = (last_start - first_start) / 1e6 if vals and last_start > first_start else 0
    return {
        "samples": len(vals),
        "non_2xx_or_failed": bad,
        "achieved_rps": (len(vals) / span) if span > 0 else None,
        "min_us": vals[0] if vals else None,
        "p50_us": percentile(vals, 50),
        "p90_us": percentile(vals, 90),
        "p99_us": percentile(vals, 99),
        "p999_us": percentile(vals, 99.9),
        "max_us": vals[-1] if vals else None,
        "mean_us": (sum(vals) / len(vals)) if vals else None,
    }


def read_procs():
    """pid -> (ppid, utime+stime+cutime+cstime ticks, is_kernel_thread)"""
    import os

    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", encoding="utf-8", errors="replace") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(")") + 2 :].split()
        # rest[0] is field 3 (state); ppid=4, flags=9, utime..cstime=14..17
        ppid = int(rest[1])
        flags = int(rest[6])
        ticks = sum(int(x) for x in rest[11:15])
        procs[int(d)] = (ppid, ticks, bool(flags & 0x00200000) or ppid == 2 or int(d) == 2)
    return procs


def cmd_foreign_cpu(a):
    """CPU ticks used so far by processes outside our own process tree (user-space
    processes only: kernel threads such as ksoftirqd do work for our traffic).
    Exited-and-reaped children are counted through their parent's cutime/cstime."""
    procs = read_procs()
    ours = {a.root}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in procs.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                changed = True
    total = sum(t for pid, (_, t, kt) in procs.items() if pid not in ours and not kt)
    # our own ancestors (the shell that started us, etc.) count our whole tree in
    # their cutime once we exit; they do not exit during a run, so this is stable
    print(total)


def cmd_record(a):
    rec = {
        "kind": a.kind,
        "proxy": a.proxy,
        "scenario": a.scenario,
        "round": a.round,
        "order_in_round": a.order,
    }
    h = parse_h2load(a.h2load_out)
    rec.update(h)
    st = h.get("status", {})
    refusing = a.scenario == "refuse"
    # the requests a figure is per: answered ones (h2load counts only 2xx and
    # 3xx as succeeded); in the refuse scenario a 4xx refusal is an answer
    if refusing:
        ok = st.get("2xx", 0) + st.get("3xx", 0) + st.get("4xx", 0)
    else:
        ok = h["requests"]["succeeded"]
    rec["answered"] = ok
    answers = sum(st.values())
    rec["refused_share"] = (st.get("4xx", 0) / answers) if answers else None
    ticks = a.cpu_after - a.cpu_before
    cpu_s = ticks / a.clk_tck
    rec["proxy_cpu_s"] = cpu_s
    rec["proxy_cpu_util"] = cpu_s / h["elapsed_s"] if h["elapsed_s"] > 0 else None
    rec["cpu_us_per_req"] = (cpu_s * 1e6 / ok) if ok else None
    # whole-CPU accounting from /proc/stat (includes softirq work of loopback
    # networking, which is not always charged to the process)
    busy1 = (a.cpu1_busy_after - a.cpu1_busy_before) / a.clk_tck
    busy0 = (a.cpu0_busy_after - a.cpu0_busy_before) / a.clk_tck
    rec["proxy_cpu_busy_s"] = busy1
    rec["proxy_cpu_busy_util"] = busy1 / h["elapsed_s"] if h["elapsed_s"] > 0 else None
    rec["proxy_cpu_busy_us_per_req"] = (busy1 * 1e6 / ok) if ok else None
    # CPU time on the proxy's CPU that the proxy process itself did not use:
    # softirq plus anything else that ran there (interference)
    rec["proxy_cpu_other_util"] = (
        (busy1 - cpu_s) / h["elapsed_s"] if h["elapsed_s"] > 0 else None
    )
    rec["load_cpu_busy_util"] = busy0 / h["elapsed_s"] if h["elapsed_s"] > 0 else None
    foreign = (a.foreign_after - a.foreign_before) / a.clk_tck
    rec["foreign_cpu_s"] = foreign
    rec["foreign_cpu_util"] = foreign / h["elapsed_s"] if h["elapsed_s"] > 0 else None
    rec["attempt"] = a.attempt
    # hypervisor steal time on both CPUs (0 where the kernel does not report it)
    rec["steal_s"] = (a.steal_after - a.steal_before) / a.clk_tck
    rec["steal_util"] = rec["steal_s"] / h["elapsed_s"] if h["elapsed_s"] > 0 else None
    reasons = []
    if rec["foreign_cpu_util"] is not None and rec["foreign_cpu_util"] > a.max_foreign:
        reasons.append(
            f"other processes used {100 * rec['foreign_cpu_util']:.0f}% of a CPU"
        )
    if rec["steal_util"] is not None and rec["steal_util"] > a.max_steal:
        reasons.append(
            f"the hypervisor took {100 * rec['steal_util']:.0f}% of a CPU (steal time)"
        )
    rec["disturbed"] = bool(reasons)
    rec["disturbed_by"] = reasons
    if a.kind == "closed":
        rec["rps"] = ok / h["elapsed_s"] if h["elapsed_s"] > 0 else 0.0
    else:
        rec["target_rps_total"] = a.target_rps
        rec["lat_mode"] = a.lat_mode
        rec["latency"] = latency_summary(a.log_file, accept_4xx=refusing)
    with open(a.jsonl, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    # one line for the console
    if a.kind == "closed":
        print(
            f"    {a.proxy:20s} {rec['rps']:10.0f} req/s  "
            f"{rec['cpu_us_per_req'] or 0:7.2f} CPU us/req  "
            f"proxy CPU {100 * (rec['proxy_cpu_util'] or 0):5.1f}%  "
            f"failed={h['requests']['failed'] + h['requests']['errored']}"
            + (f"  2xx={st.get('2xx', 0)} 4xx={st.get('4xx', 0)}" if a.scenario != "plain" else "")
        )
    else:
        lat = rec["latency"]
        print(
            f"    {a.proxy:20s} p50={fmt_us(lat['p50_us'])} p90={fmt_us(lat['p90_us'])} "
            f"p99={fmt_us(lat['p99_us'])} samples={lat['samples']} "
            f"achieved={lat['achieved_rps'] or 0:.0f} req/s"
        )
    if rec["disturbed"]:
        print(f"    ({a.proxy}: during this run {'; '.join(reasons)})", file=sys.stderr)
    if refusing:
        bad = h["requests"]["errored"] + h["requests"]["timeout"]
        refused = st.get("4xx", 0)
        if bad or st.get("5xx", 0) or ok == 0 or refused < 0.9 * ok:
            print(
                f"    WARNING: {a.proxy}: {bad} errored/timed-out, {st.get('5xx', 0)} 5xx, "
                f"{refused} of {ok} answers refused (expected almost all)",
                file=sys.stderr,
            )
    else:
        bad = h["requests"]["failed"] + h["requests"]["errored"] + h["requests"]["timeout"]
        non2xx = st.get("3xx", 0) + st.get("4xx", 0) + st.get("5xx", 0)
        if bad or non2xx or ok == 0:
            print(
                f"    WARNING: {a.proxy}: {bad} failed/errored/timed-out, "
                f"{non2xx} non-2xx, {ok} succeeded",
                file=sys.stderr,
            )
    if rec["disturbed"]:
        sys.exit(3)


def load(jsonl):
    """All samples, each marked "used": for every (kind, proxy, round) the last
    undisturbed attempt, or the last attempt if all were disturbed."""
    with open(jsonl, encoding="utf-8") as f:
        recs = [json.loads(l) for l in f if l.strip()]
    chosen = {}
    for i, r in enumerate(recs):
        key = (r["kind"], r["proxy"], r["round"])
        prev = chosen.get(key)
        if prev is None or not r.get("disturbed") or recs[prev].get("disturbed"):
            chosen[key] = i
    for i, r in enumerate(recs):
        r["used"] = chosen[(r["kind"], r["proxy"], r["round"])] == i
    return recs


def used(recs):
    return [r for r in recs if r["used"]]


def closed_by_proxy(recs):
    out = {}
    for r in recs:
        if r["kind"] == "closed":
            out.setdefault(r["proxy"], []).append(r)
    return out


def cmd_median_rps(a):
    by = closed_by_proxy(used(load(a.jsonl)))
    meds = [statistics.median(x["rps"] for x in v) for v in by.values()]
    print(f"{min(meds):.0f}")


def fmt_us(v):
    if v is None:
        return "n/a"
    if v >= 1000:
        return f"{v / 1000:.2f} ms"
    return f"{v:.0f} µs"


def fmt_num(v, nd=0):
    return "n/a" if v is None else f"{v:,.{nd}f}"


def limits_line(c, scenarios):
    """The Markdown bullet that says what the limit scenarios configure."""
    alg = c.get("limit_algorithm", "gcra")
    rampart = f"Rampart `rate_limits` `algorithm: {alg}`" + (
        ", `nodelay: true`" if alg == "leaky_bucket" else ""
    ) + ", `key: [ip]`" + (
        " (RateLimit fields on admitted responses, its default)"
        if c.get("limit_headers", True)
        else ", `headers: false`"
    )
    parts = []
    if "limit" in scenarios:
        parts.append(
            f"the limit scenario allows {c['limit_rate']:,} req/s per client, burst "
            f"{c['limit_burst']:,}, so nothing is refused (the cost of the check)"
        )
    if "refuse" in scenarios:
        parts.append(
            f"the refuse scenario allows {c['refuse_rate']:,} req/s per client, burst "
            f"{c['refuse_burst']:,}, so almost every request is refused with a 429 "
            f"(the cost of a refusal)"
        )
    return (
        f"- Limits on the route, keyed by client address: {'; '.join(parts)}. {rampart}; "
        f"nginx `limit_req_zone $binary_remote_addr ... rate=Nr/s` + `limit_req burst=B "
        f"nodelay`, `limit_req_status 429`; HAProxy `stick-table type ip ... store "
        f"http_req_rate(1s)`, `http-request track-sc0 src`, `http-request deny deny_status 429 "
        f"if {{ sc_http_req_rate(0) gt N }}`. h2load sends from 127.0.0.1 only, so each "
        f"limit sees one client (one hot key); no proxy logs refusals"
    )


def fmt_range(sp, nd=2, suffix=""):
    if sp["median"] is None:
        return "n/a"
    return (
        f"{sp['median']:+.{nd}f}{suffix} ({sp['min']:+.{nd}f} to {sp['max']:+.{nd}f})"
        if suffix == " µs"
        else f"{sp['median']:.{nd}f}{suffix} ({sp['min']:.{nd}f}–{sp['max']:.{nd}f})"
    )


def ratio_tables(ratios, limit_cost, nrounds):
    """Markdown: per-round throughput ratios, and what each limit costs its proxy."""
    lines = []
    cols = " | ".join(f"round {i}" for i in range(1, nrounds + 1))
    lines.append("Per-round throughput ratios (closed loop):")
    lines.append("")
    lines.append(f"| ratio | {cols} | median |")
    lines.append("|---|" + "---|" * (nrounds + 1))
    rows = [(name, dict(zip(r["rounds"], r["per_round"])), r["median"]) for name, r in ratios.items()]
    rows += [
        (
            name.replace(" vs ", "/"),
            dict(zip(c["rounds"], c["throughput_ratio_per_round"])),
            c["throughput_ratio"]["median"],
        )
        for name, c in limit_cost.items()
    ]
    for name, per, med in rows:
        lines.append(
            f"| {name} | "
            + " | ".join("n/a" if per.get(i) is None else f"{per[i]:.2f}" for i in range(1, nrounds + 1))
            + f" | **{'n/a' if med is None else f'{med:.2f}'}** |"
        )
    lines.append("")
    if limit_cost:
        lines.append(
            "What the limit costs each proxy (the limited variant against the same proxy "
            "without a limit, round by round; median and range over rounds):"
        )
        lines.append("")
        lines.append(
            "| variant | vs | extra CPU µs/req (process) | per round "
            "| extra CPU µs/req (whole proxy CPU) | throughput ratio |"
        )
        lines.append("|---|---|---|---|---|---|")
        for name, c in limit_cost.items():
            per = ", ".join(
                "n/a" if x is None else f"{x:+.2f}" for x in c["extra_cpu_us_per_req_per_round"]
            )
            lines.append(
                f"| {c['variant']} | {c['plain']} | {fmt_range(c['extra_cpu_us_per_req'], 2, ' µs')} "
                f"| {per} | {fmt_range(c['extra_cpu_busy_us_per_req'], 2, ' µs')} "
                f"| {fmt_range(c['throughput_ratio'], 2, '×')} |"
            )
        lines.append("")
    return lines


def cmd_report(a):
    all_recs = load(a.jsonl)
    recs = used(all_recs)
    meta = json.load(open(a.meta, encoding="utf-8"))
    proxies = meta["proxies"]
    variants = meta.get("variants") or {p: {"proxy": p, "scenario": "plain"} for p in proxies}
    by = closed_by_proxy(recs)
    summary = {}
    for p in proxies:
        refusing = variants[p]["scenario"] == "refuse"
        runs = sorted(by.get(p, []), key=lambda r: r["round"])
        rps = [r["rps"] for r in runs]
        cpu = [r["cpu_us_per_req"] for r in runs if r["cpu_us_per_req"] is not None]
        cpub = [
            r["proxy_cpu_busy_us_per_req"]
            for r in runs
            if r["proxy_cpu_busy_us_per_req"] is not None
        ]
        util = [r["proxy_cpu_util"] for r in runs if r["proxy_cpu_util"] is not None]
        lutil = [r["load_cpu_busy_util"] for r in runs if r["load_cpu_busy_util"] is not None]
        other = [
            r["proxy_cpu_other_util"]
            for r in runs
            if r["proxy_cpu_other_util"] is not None
        ]
        lat_runs = [r for r in recs if r["kind"] == "open" and r["proxy"] == p]
        s = {
            "rounds": len(runs),
            "rps_median": statistics.median(rps) if rps else None,
            "rps_min": min(rps) if rps else None,
            "rps_max": max(rps) if rps else None,
            "cpu_us_per_req_median": statistics.median(cpu) if cpu else None,
            "cpu_busy_us_per_req_median": statistics.median(cpub) if cpub else None,
            "proxy_cpu_util_median": statistics.median(util) if util else None,
            "load_cpu_util_median": statistics.median(lutil) if lutil else None,
            "proxy_cpu_other_util_median": statistics.median(other) if other else None,
            # in the refuse scenario h2load counts the expected 4xx as failed
            "failed_requests": sum(
                (0 if refusing else r["requests"]["failed"])
                + r["requests"]["errored"]
                + r["requests"]["timeout"]
                for r in runs + lat_runs
            ),
            "proxy": variants[p]["proxy"],
            "scenario": variants[p]["scenario"],
        }
        shares = [r["refused_share"] for r in runs if r.get("refused_share") is not None]
        # response bytes per answer, as h2load counts them (head and body)
        for part in ("headers", "data"):
            per = [
                r["traffic_bytes"][part] / r["requests"]["done"]
                for r in runs
                if r.get("traffic_bytes") and r["requests"]["done"]
            ]
            s[f"response_{part}_bytes_median"] = statistics.median(per) if per else None
        s["refused_share_median"] = statistics.median(shares) if shares else None
        # open-loop latency: median over latency rounds of each percentile
        if lat_runs:
            for key in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us"):
                vals = [r["latency"][key] for r in lat_runs if r["latency"][key] is not None]
                s[f"open_{key}_median"] = statistics.median(vals) if vals else None
            ach = [r["latency"]["achieved_rps"] for r in lat_runs if r["latency"]["achieved_rps"]]
            s["open_achieved_rps_median"] = statistics.median(ach) if ach else None
            s["open_samples"] = sum(r["latency"]["samples"] for r in lat_runs)
        summary[p] = s

    def per_round(num, den, fn):
        """fn(num record, den record) for every round both have, in round order."""
        nn = {r["round"]: r for r in by.get(num, [])}
        dd = {r["round"]: r for r in by.get(den, [])}
        return {k: fn(nn[k], dd[k]) for k in sorted(nn) if k in dd}

    def spread(vals):
        vals = [v for v in vals if v is not None]
        return {
            "median": statistics.median(vals) if vals else None,
            "min": min(vals) if vals else None,
            "max": max(vals) if vals else None,
        }

    def rps_ratio(n, d):
        return n["rps"] / d["rps"] if d["rps"] > 0 else None

    def diff(key):
        def f(n, d):
            return n[key] - d[key] if n[key] is not None and d[key] is not None else None

        return f

    variant_of = {(d["proxy"], d["scenario"]): v for v, d in variants.items() if v in proxies}
    scenarios = []
    for p in proxies:
        if variants[p]["scenario"] not in scenarios:
            scenarios.append(variants[p]["scenario"])

    # Rampart against each peer in the same scenario: throughput per round
    ratios = {}
    for sc in scenarios:
        rv = variant_of.get(("rampart", sc))
        for other in ("nginx", "haproxy"):
            ov = variant_of.get((other, sc))
            if rv is None or ov is None:
                continue
            pr = per_round(rv, ov, rps_ratio)
            vals = [v for v in pr.values() if v is not None]
            ratios[f"{rv}/{ov}"] = dict(
                {"per_round": vals, "rounds": [k for k, v in pr.items() if v is not None],
                 "scenario": sc},
                **spread(vals),
            )

    # What a limit costs each proxy: the limited variant against the same proxy
    # without a limit, round by round
    limit_cost = {}
    for v in proxies:
        d = variants[v]
        plain = variant_of.get((d["proxy"], "plain"))
        if d["scenario"] == "plain" or plain is None:
            continue
        thr = per_round(v, plain, rps_ratio)
        cpu = per_round(v, plain, diff("cpu_us_per_req"))
        cpub = per_round(v, plain, diff("proxy_cpu_busy_us_per_req"))
        limit_cost[f"{v} vs {plain}"] = {
            "variant": v,
            "plain": plain,
            "proxy": d["proxy"],
            "scenario": d["scenario"],
            "rounds": list(thr),
            "throughput_ratio_per_round": list(thr.values()),
            "throughput_ratio": spread(thr.values()),
            "extra_cpu_us_per_req_per_round": list(cpu.values()),
            "extra_cpu_us_per_req": spread(cpu.values()),
            "extra_cpu_busy_us_per_req_per_round": list(cpub.values()),
            "extra_cpu_busy_us_per_req": spread(cpub.values()),
        }

    result = {
        "meta": meta,
        "summary": summary,
        "throughput_ratios": ratios,
        "limit_cost": limit_cost,
        "samples": all_recs,
    }
    with open(a.out_json, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    m = meta
    lines = []
    lines.append(f"### Side-by-side run {m['timestamp']}")
    lines.append("")
    lines.append(
        f"- Machine: {m['machine']['nproc']} CPUs, {m['machine']['cpu_model']}, "
        f"kernel {m['machine']['kernel']}"
    )
    lines.append(
        f"- Versions: {m['versions'].get('nginx', 'n/a')}, "
        f"{m['versions'].get('haproxy', 'n/a')}, {m['versions'].get('h2load', 'n/a')}"
        + (f", {m['versions']['rampart']}" if m["versions"].get("rampart") else "")
    )
    c = m["config"]
    lines.append(
        f"- Setup: each proxy 1 worker pinned to CPU {c['proxy_cpu']}; upstream nginx "
        f"(1 worker, {c['body_bytes']}-byte JSON file) and h2load on CPU {c['load_cpu']}; "
        f"HTTP/1.1 keep-alive on both sides; access logs off"
    )
    lines.append(
        f"- Closed loop: {c['rounds']} interleaved rounds (order rotated each round), "
        f"`h2load --h1 -c {c['conns']} -t 1 -D {c['duration']}` after a "
        f"{c['warmup']} s unmeasured warm-up"
    )
    if c.get("lat_target_total_rps"):
        if c.get("lat_mode") == "staggered":
            cmd = (
                f"h2load --h1 -c {c['lat_conns']} -t 1 -r 1 --rate-period 1ms "
                f"--rps {c['lat_rps_per_client']} -n {c['lat_requests']}"
            )
            how = "clients started 1 ms apart so their request timers are out of phase"
        else:
            cmd = (
                f"h2load --h1 -c {c['lat_conns']} -t 1 --rps {c['lat_rps_per_client']} "
                f"-D {c['lat_duration']}"
            )
            how = "all clients fire together, so requests arrive in bursts"
        lines.append(
            f"- Open loop: {c['lat_rounds']} round(s) per proxy, `{cmd}` "
            f"= {c['lat_target_total_rps']:,} req/s total "
            f"({c['lat_fraction'] * 100:.0f}% of the lowest median closed-loop throughput, "
            f"the same rate for every proxy; {how}); latency percentiles are "
            f"computed from h2load's per-request log, median over rounds"
        )
        if "refuse" in scenarios:
            lines.append(
                "- Open loop in the refuse scenario: latency of every answer, refusals included"
            )
        modes = {r.get("lat_mode") for r in recs if r["kind"] == "open"}
        if len(modes) > 1:
            lines.append(
                f"- NOTE: open-loop modes differed between runs ({', '.join(sorted(map(str, modes)))}): "
                f"a staggered run failed and was repeated in burst mode; see the JSON"
            )
    if any(sc != "plain" for sc in scenarios):
        lines.append(limits_line(c, scenarios))
    lines.append("")
    for name, r in ratios.items():
        if r["median"] is not None:
            lines.append(
                f"**Throughput ratio {name}** (median of per-round ratios): "
                f"**{r['median']:.2f}×** (range {r['min']:.2f}–{r['max']:.2f} over "
                f"{len(r['per_round'])} rounds)  "
            )
    if ratios:
        lines.append("")
    lines.append(
        "| proxy | median req/s (min–max) | median CPU µs/req (process) "
        "| median CPU µs/req (whole proxy CPU) | proxy CPU use | load-gen CPU use "
        "| open-loop p50 | p90 | p99 | p99.9 |"
    )
    limited = any(sc != "plain" for sc in scenarios)
    if limited:
        lines[-1] += " refused |"
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    else:
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for p in proxies:
        s = summary[p]
        refused = ""
        if limited:
            sh = s.get("refused_share_median")
            refused = f" {'n/a' if sh is None else f'{100 * sh:.1f}%'} |"
        lines.append(
            f"| {p} | {fmt_num(s['rps_median'])} ({fmt_num(s['rps_min'])}–{fmt_num(s['rps_max'])}) "
            f"| {fmt_num(s['cpu_us_per_req_median'], 2)} "
            f"| {fmt_num(s['cpu_busy_us_per_req_median'], 2)} "
            f"| {fmt_num(100 * s['proxy_cpu_util_median'] if s['proxy_cpu_util_median'] is not None else None, 0)}% "
            f"| {fmt_num(100 * s['load_cpu_util_median'] if s['load_cpu_util_median'] is not None else None, 0)}% "
            f"| {fmt_us(s.get('open_p50_us_median'))} | {fmt_us(s.get('open_p90_us_median'))} "
            f"| {fmt_us(s.get('open_p99_us_median'))} | {fmt_us(s.get('open_p999_us_median'))} |"
            + refused
        )
    lines.append("")
    nrounds = max((summary[p]["rounds"] for p in proxies), default=0)
    if nrounds:
        lines.append("Closed-loop req/s per round (order rotated each round):")
        lines.append("")
        lines.append("| proxy | " + " | ".join(f"round {i}" for i in range(1, nrounds + 1)) + " |")
        lines.append("|---|" + "---|" * nrounds)
        for p in proxies:
            per = {r["round"]: r["rps"] for r in by.get(p, [])}
            lines.append(
                f"| {p} | "
                + " | ".join(fmt_num(per.get(i)) for i in range(1, nrounds + 1))
                + " |"
            )
        lines.append("")
    if nrounds and limited:
        lines.append("Closed-loop CPU µs/req (process) per round:")
        lines.append("")
        lines.append("| proxy | " + " | ".join(f"round {i}" for i in range(1, nrounds + 1)) + " |")
        lines.append("|---|" + "---|" * nrounds)
        for p in proxies:
            per = {r["round"]: r["cpu_us_per_req"] for r in by.get(p, [])}
            lines.append(
                f"| {p} | "
                + " | ".join(fmt_num(per.get(i), 2) for i in range(1, nrounds + 1))
                + " |"
            )
        lines.append("")
    if nrounds and (limit_cost or (limited and ratios)):
        lines.extend(ratio_tables(ratios, limit_cost, nrounds))
    refuse_note = (
        " In the refuse scenario every per-request figure is per answer, refusals included."
        if "refuse" in scenarios
        else ""
    )
    lines.append(
        "CPU µs/req (process) = utime+stime of the proxy's processes (all threads, all "
        "workers) / successful requests. \"Whole proxy CPU\" = all busy time on the "
        "proxy's CPU (includes loopback softirq work not charged to the process) / "
        "successful requests. \"Proxy CPU use\" = process CPU time / wall time; below "
        "~95% the proxy was not the only bottleneck. \"Load-gen CPU use\" = busy time of "
        "the CPU shared by h2load and the upstream / wall time; near 100% the load side "
        "limited the throughput, so that proxy's req/s is a lower bound and CPU µs/req "
        "is the fairer comparison." + refuse_note
    )
    warn = []
    for p in proxies:
        s = summary[p]
        sh = s.get("refused_share_median")
        if s["scenario"] == "limit" and sh:
            warn.append(f"{p}: {100 * sh:.2f}% of requests refused below the limit")
        if s["scenario"] == "refuse" and sh is not None and sh < 0.9:
            warn.append(f"{p}: only {100 * sh:.0f}% of requests refused (expected almost all)")
        if variants[p].get("closes_on_refusal"):
            warn.append(
                f"{p}: closes the connection after a refusal, so each refused request "
                f"also pays for a new connection"
            )
        if s["failed_requests"]:
            warn.append(f"{p}: {s['failed_requests']} failed/errored/timed-out requests")
        if s["proxy_cpu_util_median"] is not None and s["proxy_cpu_util_median"] < 0.9:
            warn.append(
                f"{p}: proxy process used only {100 * s['proxy_cpu_util_median']:.0f}% "
                f"of its CPU in the closed-loop runs (not saturated: the load generator, "
                f"upstream or the proxy's own design limited it)"
            )
    repeated = sum(1 for r in all_recs if not r["used"])
    if repeated:
        lines.append("")
        lines.append(
            f"{repeated} measurement(s) were repeated because other processes used more "
            f"than {100 * m['config']['max_foreign']:.0f}% of a CPU, or the hypervisor's "
            f"steal time exceeded {100 * m['config']['max_steal']:.0f}% of a CPU, during "
            f"them; the JSON keeps them with \"used\": false."
        )
    still = [r for r in recs if r.get("disturbed")]
    if still:
        warn.append(
            f"{len(still)} measurement(s) in the table were disturbed in every attempt: "
            + ", ".join(
                f"{r['kind']}/{r['proxy']}/round {r['round']} ({'; '.join(r.get('disturbed_by', []))})"
                for r in still
            )
        )
    if m.get("preflight_busy_pct") is not None and m["preflight_busy_pct"] > 10:
        warn.append(
            f"the machine was {m['preflight_busy_pct']:.0f}% busy before the run started "
            f"(other work may have disturbed the figures)"
        )
    if warn:
        lines.append("")
        lines.append("Warnings:")
        for w in warn:
            lines.append(f"- {w}")
    md = "\n".join(lines) + "\n"
    with open(a.out_md, "w", encoding="utf-8") as f:
        f.write(md)
    sys.stdout.write(md)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--jsonl", required=True)
    r.add_argument("--kind", choices=["closed", "open"], required=True)
    r.add_argument("--proxy", required=True)
    r.add_argument("--scenario", choices=["plain", "limit", "refuse"], default="plain")
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--order", type=int, required=True)
    r.add_argument("--h2load-out", required=True)
    r.add_argument("--log-file")
    r.add_argument("--target-rps", type=int)
    r.add_argument("--lat-mode")
    r.add_argument("--clk-tck", type=int, required=True)
    r.add_argument("--cpu-before", type=int, required=True)
    r.add_argument("--cpu-after", type=int, required=True)
    r.add_argument("--cpu1-busy-before", type=int, required=True)
    r.add_argument("--cpu1-busy-after", type=int, required=True)
    r.add_argument("--cpu0-busy-before", type=int, required=True)
    r.add_argument("--cpu0-busy-after", type=int, required=True)
    r.add_argument("--foreign-before", type=int, required=True)
    r.add_argument("--foreign-after", type=int, required=True)
    r.add_argument("--max-foreign", type=float, required=True)
    r.add_argument("--attempt", type=int, default=1)
    r.add_argument("--max-steal", type=float, required=True)
    r.add_argument("--steal-before", type=int, default=0)
    r.add_argument("--steal-after", type=int, default=0)
    r.set_defaults(fn=cmd_record)
    fc = sub.add_parser("foreign-cpu")
    fc.add_argument("--root", type=int, required=True)
    fc.set_defaults(fn=cmd_foreign_cpu)
    m = sub.add_parser("median-rps")
    m.add_argument("--jsonl", required=True)
    m.set_defaults(fn=cmd_median_rps)
    rp = sub.add_parser("report")
    rp.add_argument("--jsonl", required=True)
    rp.add_argument("--meta", required=True)
    rp.add_argument("--out-json", required=True)
    rp.add_argument("--out-md", required=True)
    rp.set_defaults(fn=cmd_report)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
