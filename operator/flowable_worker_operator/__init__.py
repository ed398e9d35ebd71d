"""The flowable-worker-operator: scales Flowable external-worker Deployments to their backlog.

Only the package exists so far; the operator is built on top of the foundation in later issues
(see ../shared/DESIGN.md). It may import kopf and kubernetes; the worker package never does.
"""
