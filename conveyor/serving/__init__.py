"""The online inference service: the registry's champion (and a rollout's challenger) behind an HTTP API, with
features from the Feast online store, a prediction log on the object store and Prometheus metrics.
`conveyor serve` runs it; `conveyor stack up --api` starts it next to the local stack."""
