"""Training engine shared by every method: state, optimisers, the host loop, checkpoints."""
