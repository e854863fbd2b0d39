"""The checkpoint stages, in the order ``on_new_checkpoint`` runs them: :mod:`.register` (checks
before anything is stored), :mod:`.fit` (KFAC covariances → projections), :mod:`.log` (one shard
of projected gradients + its partial Fisher), :mod:`.finalize` (merged Fisher, preconditioner,
self-influence, coverage check)."""
