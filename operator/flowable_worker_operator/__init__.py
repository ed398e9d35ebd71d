"""The flowable-worker-operator: scales Flowable external-worker Deployments to their backlog.

A pure core (`scaling`: HPA v2 semantics plus activation, cooldown, fallback and pause) inside an
imperative shell: `spec` reads a pool, `engines` its Secrets, `backlog`/`discovery` measure
Flowable, `targets` builds and scales the workload, `reconcile` runs one tick, `status` and
`metrics` report, `handlers` wires kopf, `leader` elects one acting replica, `serve`/`main` run it
(docs/operator.md). It may import kopf and kubernetes; the worker package never does.
"""
