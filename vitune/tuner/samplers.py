"""Names of the search's samplers (`vitune tune --sampler`), without importing Optuna: the
CLI's other commands (bench, show, validate) build their parser without it."""

SAMPLERS = ("tpe", "gp", "cmaes", "random", "grid")
