"""Training one cell: the loop, optimisers and schedules, loss priors, FLOPs."""
