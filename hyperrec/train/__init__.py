"""Training: the loop, model factory, Ray Train launcher, Ray Tune sweeps, tracking (wandb + run records), batch recommendation."""
