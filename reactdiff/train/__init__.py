"""DeepSpeed training: the loop, its DeepSpeed config, EMA, checkpoints, logging and exports."""
