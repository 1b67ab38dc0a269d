#!/usr/bin/env python3
"""What the Kubernetes schemas cannot see in deploy/kubernetes/ (docs/scaling.md#kubernetes):
the ServiceMonitor (a CRD, outside them) checked by its structure, and the manifests checked
against each other and against what pollhook needs. Exits 1 with every problem listed."""
import sys
from pathlib import Path

import yaml

here = Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/kubernetes")
docs = {}
for f in sorted(here.glob("*.yaml")):
    for d in yaml.safe_load_all(f.read_text()):
        docs[d["kind"]] = (f.name, d)
problems = []


def need(cond, what):
    if not cond:
        problems.append(what)


for kind in ["StatefulSet", "Service", "PodDisruptionBudget", "ServiceMonitor", "ConfigMap"]:
    need(kind in docs, f"no {kind} in {here}")
if problems:
    sys.exit("\n".join(problems))

sts, svc = docs["StatefulSet"][1], docs["Service"][1]
pdb, sm, cm = docs["PodDisruptionBudget"][1], docs["ServiceMonitor"][1], docs["ConfigMap"][1]
spec = sts["spec"]
pod = spec["template"]["spec"]
c = pod["containers"][0]
labels = spec["template"]["metadata"]["labels"]
env = {e["name"]: e.get("value") for e in c.get("env", [])}
args = c.get("args", [])

need(spec["serviceName"] == svc["metadata"]["name"], "statefulset: serviceName is not the Service")
need(spec.get("podManagementPolicy") in (None, "OrderedReady", "Parallel"), "statefulset: podManagementPolicy")
need(svc["spec"].get("clusterIP") == "None", "service: not headless (clusterIP: None)")
need(svc["spec"].get("publishNotReadyAddresses") is True, "service: shards starting must be reachable")
for name, sel in [("service", svc["spec"]["selector"]), ("statefulset", spec["selector"]["matchLabels"]),
                  ("poddisruptionbudget", pdb["spec"]["selector"]["matchLabels"])]:
    need(all(labels.get(k) == v for k, v in sel.items()), f"{name}: its selector does not pick the pods")
need(env.get("POLLHOOK_SHARDS") == str(spec["replicas"]), "statefulset: POLLHOOK_SHARDS is not spec.replicas")
need("--shard=auto" in args, "statefulset: pollhook does not run with --shard=auto")
need(any(a.startswith("--admin-token-file=") for a in args), "statefulset: no admin token file")
for probe in ["readinessProbe", "livenessProbe"]:
    need(c.get(probe, {}).get("httpGet", {}).get("path") == "/healthz", f"statefulset: {probe} is not /healthz")
need("preStop" in c.get("lifecycle", {}), "statefulset: no preStop")
need(pod.get("terminationGracePeriodSeconds", 30) > 20, "statefulset: grace period shorter than the drain")
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
volumes = {v["name"]: v for v in pod["volumes"]}
claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
need(any(a == f"--data={mounts.get(n)}" for n in claims for a in args), "statefulset: --data is not on a claim")
need(volumes.get("bridges", {}).get("configMap", {}).get("name") == cm["metadata"]["name"],
     "statefulset: the bridges volume is not the ConfigMap")
need("secret" in volumes.get("admin-token", {}), "statefulset: the admin token is not from a Secret")
ports = {p["name"] for p in svc["spec"]["ports"]}

need(sm.get("apiVersion") == "monitoring.coreos.com/v1", "servicemonitor: apiVersion")
need(sm["metadata"].get("name"), "servicemonitor: no name")
sel = sm["spec"]["selector"]["matchLabels"]
need(all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), "servicemonitor: does not pick the Service")
for e in sm["spec"]["endpoints"]:
    need(e.get("port") in ports, f"servicemonitor: no port {e.get('port')} on the Service")
    need(e.get("path", "/metrics") == "/metrics", "servicemonitor: not /metrics")
    need(set(e) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}, f"servicemonitor: unknown keys {set(e)}")

if problems:
    sys.exit("\n".join(problems))
print(f"ok: {here} fits together ({len(docs)} manifests)")
