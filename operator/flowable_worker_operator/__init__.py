"""The flowable-worker-operator: scales Flowable external-worker Deployments to their backlog.

So far it holds the pure scaling core (`scaling`: HPA v2 semantics plus activation, cooldown,
fallback and pause); the shell around it (spec, backlog probes, targets, status, kopf wiring)
comes in later issues (see ../shared/DESIGN.md). It may import kopf and kubernetes; the worker
package never does.
"""
