"""HNeRV and NeRV: videos encoded as small neural networks (issue 3).

Rooms: :mod:`.model` (the networks and what decoding needs), :mod:`.train` (the fit loop and its
checkpoints; imported only by an encode, since encoding is training here), :mod:`.codec` (the
bitstream and rate control) and :mod:`.cli` (``neurocodec hnerv ...``, the torchrun entry point).
"""
