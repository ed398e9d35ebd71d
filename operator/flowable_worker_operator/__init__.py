"""The flowable-worker-operator: scales Flowable external-worker Deployments to their backlog.

Imports run one way, in three layers:

* wiring: `main` (the command), `config` (its options), `serve` (builds the parts and runs kopf),
  `handlers` (kopf events in, ticks out);
* shell, the I/O: `reconcile` runs one tick, `backlog`/`discovery`/`responses` measure Flowable
  (`shared_answers` lets pools share a question, `overlap` sees pools counting the same jobs),
  `engines` reads a pool's Secrets, `targets` and `kube` act on the cluster, `leader` elects one
  acting replica, `metrics` reports;
* pure core: `scaling` (HPA v2 semantics plus activation, cooldown, fallback and pause), `spec`
  reads a pool, `status` its conditions, `manifests` builds the worker Deployment, `conflicts`,
  `podsecurity`, `secrethash` and `template_checks` decide what they name.

See docs/operator.md. It may import kopf and kubernetes; the worker package never does.
"""
