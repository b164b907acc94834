"""REACT data: the on-disk layout, the shard format, and the streaming reader."""
