#!/usr/bin/env python3
"""Checks deploy/grafana/kvshuttle-dashboard.json against kvshuttled's metrics.

  - The JSON is a dashboard Grafana 9+ imports: schemaVersion >= 36, a uid, unique panel ids,
    grid positions inside the 24 columns without overlaps, rows, refIds unique per panel.
  - Every panel and query uses the datasource variable ${DS_PROMETHEUS} (no datasource uid
    of somebody's Grafana), and every $variable used is defined in the templating list.
  - Every metric a query names is one the daemon exports, and every metric the daemon exports
    has a panel. The daemon's metrics are the "kvshuttle_*" names registered in server/
    (histograms queried through their _bucket series; counters only inside rate()).
  - PromQL shape: balanced brackets and quotes; histogram_quantile() aggregates by `le`.
  - With --daemon BIN --cli BIN: starts the built kvshuttled (CPU executor, a temporary
    socket), puts traffic through it (`kvshuttle demo --memory host`, a pool) and reads its
    /metrics: every series a query names must be there, and every label a query groups by,
    matches on or prints must be a label of the metrics of that query (or job, instance,
    node, le).
It does not run the queries against a Prometheus or render the board in Grafana.
Standard library only.
"""
import argparse
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "kvshuttle-dashboard.json"
DATASOURCE_UID = "${DS_PROMETHEUS}"
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__interval_ms"}


def exported_metrics():
    """{name: kind} of the metrics registered in server/: histogram, counter or gauge."""
    metrics = {}
    for path in (REPO / "server").rglob("*.cc"):
        text = path.read_text()
        for call, name in re.findall(r"Add(Histogram|Counter|Gauge)\(\s*\"(kvshuttle_\w+)\"", text):
            metrics[name] = call.lower()
        for name in re.findall(r"gauge\(\s*\"(kvshuttle_\w+)\"", text):
            metrics.setdefault(name, "gauge")
    return metrics


def balanced(expr):
    pairs, stack, quote = {")": "(", "]": "[", "}": "{"}, [], None
    for ch in expr:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack and quote is None


def live_series(daemon, cli):
    """{series name: set of label names} from the /metrics of a freshly started daemon."""
    with tempfile.TemporaryDirectory(prefix="kvs-grafana-") as tmp:
        socket = os.path.join(tmp, "k.sock")
        log = open(os.path.join(tmp, "log"), "w+")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KVSHUTTLED_")}
        proc = subprocess.Popen([daemon, f"--listen=unix:{socket}", "--metrics_address=127.0.0.1:0",
                                 "--gpus=false", "--config="], stdout=log, stderr=log, env=env)
        try:
            url = None
            for _ in range(200):
                log.seek(0)
                found = re.search(r"metrics=(http://\S+)", log.read())
                if found:
                    url = found.group(1)
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
            if url is None:
                log.seek(0)
                raise RuntimeError(f"kvshuttled did not start: {log.read()}")
            target = ["--socket", socket]
            for args in (["demo", "--memory", "host"],
                         ["pool", "create", "grafana", "--layout", "universal", "--shape",
                          "2,2,16,8,64", "--blocks", "4", "--memory", "host"]):
                subprocess.run([cli, *target, *args], check=True, capture_output=True, timeout=120)
            text = urllib.request.urlopen(url, timeout=10).read().decode()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    series = {}
    for line in text.splitlines():
        match = re.match(r"(\w+)(?:\{(.*)\})?\s", line)
        if match and not line.startswith("#"):
            labels = set(re.findall(r"(\w+)=\"", match.group(2) or ""))
            series.setdefault(match.group(1), set()).update(labels)
    return series


def check_live(board, series):
    problems = []
    for panel in board.get("panels", []):
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            names = re.findall(r"\b(kvshuttle_\w+)", expr)
            allowed = {"job", "instance", "node", "le"}
            for name in names:
                if name not in series:
                    problems.append(f"panel '{panel['title']}': {name} is not in kvshuttled's /metrics")
                allowed |= series.get(name, set())
            used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            for group in re.findall(r"\bby \(([^)]*)\)", expr):
                used |= {label.strip() for label in group.split(",") if label.strip()}
            used |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
            for label in sorted(used - allowed):
                problems.append(f"panel '{panel['title']}': label {label} is not a label of "
                                f"{', '.join(sorted(set(names)))}")
    return problems


def check():
    problems = []
    board = json.loads(DASHBOARD.read_text())
    metrics = exported_metrics()
    if not metrics:
        return [f"no kvshuttle_* metric registered in {REPO / 'server'}"]

    if not isinstance(board.get("schemaVersion"), int) or board["schemaVersion"] < 36:
        problems.append(f"schemaVersion {board.get('schemaVersion')} < 36")
    for field in ("uid", "title"):
        if not board.get(field):
            problems.append(f"dashboard has no {field}")
    if len(board.get("uid", "")) > 40:
        problems.append("uid longer than 40 characters")

    variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
    ds = variables.get("DS_PROMETHEUS")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("templating needs DS_PROMETHEUS, a datasource variable of type prometheus")
    texts = []  # every string that may reference variables
    for variable in variables.values():
        if variable.get("type") == "query":
            if variable.get("datasource", {}).get("uid") != DATASOURCE_UID:
                problems.append(f"variable {variable['name']}: datasource must be {DATASOURCE_UID}")
            texts.append(variable.get("definition", ""))

    panels = []
    for panel in board.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append("panel ids must be present and unique")
    cells = {}
    used = set()
    for panel in panels:
        where = f"panel {panel.get('id')} '{panel.get('title')}'"
        pos = panel.get("gridPos", {})
        if not all(isinstance(pos.get(k), int) for k in "hwxy") or pos["x"] + pos["w"] > 24:
            problems.append(f"{where}: gridPos {pos} outside the 24 columns")
            continue
        for dx in range(pos["w"]):
            for dy in range(pos["h"]):
                cell = (pos["x"] + dx, pos["y"] + dy)
                if cell in cells:
                    problems.append(f"{where}: overlaps panel {cells[cell]}")
                    break
                cells[cell] = panel.get("id")
        if panel.get("type") == "row":
            continue
        if not panel.get("title"):
            problems.append(f"{where}: no title")
        if panel.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f"{where}: datasource must be {DATASOURCE_UID}")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{where}: no query")
        ref_ids = [t.get("refId") for t in targets]
        if len(ref_ids) != len(set(ref_ids)):
            problems.append(f"{where}: duplicate refIds")
        for target in targets:
            expr = target.get("expr", "")
            texts.append(expr)
            if target.get("datasource", {}).get("uid") != DATASOURCE_UID:
                problems.append(f"{where} {target.get('refId')}: datasource must be {DATASOURCE_UID}")
            if not balanced(expr):
                problems.append(f"{where}: unbalanced brackets or quotes in {expr}")
            for quantile in re.finditer(r"histogram_quantile\(([^,]+),\s*sum by \(([^)]*)\)", expr):
                if "le" not in [s.strip() for s in quantile.group(2).split(",")]:
                    problems.append(f"{where}: histogram_quantile must aggregate by le: {expr}")
            if "histogram_quantile" in expr and "sum by" not in expr:
                problems.append(f"{where}: histogram_quantile without sum by (le, ...): {expr}")
            for name in re.findall(r"\b(kvshuttle_\w+)", expr):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                kind = metrics.get(base) or metrics.get(name)
                if kind is None:
                    problems.append(f"{where}: {name} is not a metric kvshuttled exports")
                    continue
                used.add(base if base in metrics else name)
                if kind == "histogram" and name == base:
                    problems.append(f"{where}: histogram {name} must be queried via _bucket/_sum/_count")
                cumulative = kind == "counter" or (kind == "histogram" and name != base)
                if cumulative:
                    if not re.search(rf"(rate|increase)\(\s*{name}\b", expr):
                        problems.append(f"{where}: {name} is cumulative; query it inside rate()")
    for text in texts:
        for variable in re.findall(r"\$\{?(\w+)", text):
            if variable not in variables and variable not in BUILTIN_VARIABLES:
                problems.append(f"${variable} is used but not defined in templating")
    for name in sorted(set(metrics) - used):
        problems.append(f"{name} ({metrics[name]}) is exported but no panel shows it")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemon", help="built kvshuttled, to check the queries against its /metrics")
    parser.add_argument("--cli", help="built kvshuttle CLI (traffic for the live check)")
    args = parser.parse_args()
    problems = check()
    live = bool(args.daemon and args.cli)
    if live:
        problems += check_live(json.loads(DASHBOARD.read_text()), live_series(args.daemon, args.cli))
    for problem in problems:
        print(f"FAIL: {problem}")
    if problems:
        return 1
    count = len(json.loads(DASHBOARD.read_text())["panels"])
    print(f"check_grafana: ok ({count} panels; every one of the {len(exported_metrics())} "
          "exported metrics is shown, and only those"
          + ("; queries match a live daemon's /metrics)" if live else ")"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
