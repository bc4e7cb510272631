#!/usr/bin/env python3
"""The job label Prometheus gives iommud's targets matches what the alerts and dashboard select.

Two ways to scrape iommud are shipped: the plain config (deploy/prometheus/prometheus.yml) and the
Prometheus Operator's PodMonitor (deploy/kubernetes/podmonitor.yaml), for the pods of the
DaemonSet (deploy/kubernetes/daemonset.yaml). This test
  1. computes the job label each produces: the plain config's job_name; for the PodMonitor the
     relabeling the operator generates (job = "<namespace>/<name>", replaced by the pod's label
     named by spec.jobLabel when the pod has it, then the endpoint's own relabelings);
  2. checks that every job="..." selector of the alert rules and of the dashboard names both;
  3. runs `promtool test rules` with `up` series carrying each produced job label: IommudDown must
     fire for a down target under either.
Usage: job_label_test.py [REPO_ROOT] (default: this file's ../..)
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parents[2]).resolve()
deploy = root / "deploy"
problems = []


def operator_job_label(podmonitor: dict, pod_labels: dict) -> str:
    """The job label of the PodMonitor's targets, as the Prometheus Operator's generated config sets it."""
    meta = podmonitor["metadata"]
    job = f'{meta["namespace"]}/{meta["name"]}'
    job_label = podmonitor["spec"].get("jobLabel", "")
    if job_label and pod_labels.get(job_label):
        job = pod_labels[job_label]
    for endpoint in podmonitor["spec"]["podMetricsEndpoints"]:
        for relabel in endpoint.get("relabelings", []):
            if relabel.get("targetLabel") != "job":
                continue
            action = relabel.get("action", "replace")
            if action != "replace" or relabel.get("sourceLabels"):
                problems.append(f"podmonitor: job relabeling this test cannot evaluate: {relabel}")
                continue
            job = relabel.get("replacement", "$1")
    return job


daemonset = next(d for d in yaml.safe_load_all(open(deploy / "kubernetes/daemonset.yaml"))
                 if d and d.get("kind") == "DaemonSet")
pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
podmonitor = yaml.safe_load(open(deploy / "kubernetes/podmonitor.yaml"))
selector = podmonitor["spec"]["selector"]["matchLabels"]
if any(pod_labels.get(k) != v for k, v in selector.items()):
    problems.append(f"podmonitor selector {selector} does not match the pods' labels {pod_labels}")
operator_job = operator_job_label(podmonitor, pod_labels)
plain_jobs = [c["job_name"] for c in yaml.safe_load(open(deploy / "prometheus/prometheus.yml"))["scrape_configs"]]
produced = {"podmonitor": operator_job, "prometheus.yml": plain_jobs[0] if plain_jobs else ""}
print(f"job labels: {produced}")

exprs = []
down_annotations = {}
for group in yaml.safe_load(open(deploy / "prometheus/alerts.yml"))["groups"]:
    exprs += [(f'alert {r["alert"]}', r["expr"]) for r in group["rules"]]
    for rule in group["rules"]:
        if rule["alert"] == "IommudDown":
            down_annotations = rule.get("annotations", {})
dashboard = json.load(open(deploy / "grafana/iommud-dashboard.json"))
exprs += [(f'panel {p.get("title")}', t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
exprs += [(f'variable {v["name"]}', v.get("query", "") if isinstance(v.get("query"), str)
           else v.get("query", {}).get("query", ""))
          for v in dashboard.get("templating", {}).get("list", [])]
selected = 0
for where, expr in exprs:
    for job in re.findall(r'job\s*=\s*"([^"]*)"', expr):
        selected += 1
        for source, label in produced.items():
            if job != label:
                problems.append(f'{where} selects job="{job}"; {source} produces job="{label}"')
if selected == 0:
    problems.append("no job selector found (the test parses nothing?)")

# promtool: IommudDown under each produced job label.
with tempfile.TemporaryDirectory() as tmp:
    tests = {"rule_files": [str(deploy / "prometheus/alerts.yml")], "evaluation_interval": "1m",
             "tests": []}
    for source, label in produced.items():
        tests["tests"].append({
            "name": f"IommudDown with the job label of {source}",
            "interval": "1m",
            "input_series": [{"series": f'up{{job="{label}", instance="10.0.0.7:9464"}}',
                              "values": "0 0 0 0 0"}],
            "alert_rule_test": [{
                "eval_time": "4m", "alertname": "IommudDown",
                "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "job": label,
                                   "instance": "10.0.0.7:9464"},
                    "exp_annotations": {
                        k: v.replace("{{ $labels.instance }}", "10.0.0.7:9464")
                        for k, v in down_annotations.items()}}]}],
        })
    path = pathlib.Path(tmp) / "job_label_test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        problems.append("promtool test rules with the produced job labels failed:\n" +
                        result.stdout + result.stderr)

for problem in problems:
    print(f"FAIL: {problem}")
print("PASS" if not problems else f"{len(problems)} problem(s)")
sys.exit(1 if problems else 0)
