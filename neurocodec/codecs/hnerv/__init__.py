"""HNeRV and NeRV: videos encoded as small neural networks (issue 3)."""
