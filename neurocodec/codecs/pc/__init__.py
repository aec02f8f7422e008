"""Lossless image compression with probabilistic circuits (Liu, Mandt, Van den Broeck, ICLR 2022).

Decoding path (never imports a ``train*`` module):

* :mod:`.model`: the :class:`~.model.HCLT` circuit and :class:`~.model.PCModel` (parameters +
  structure), stored as a ``pc`` model file through :mod:`neurocodec.weights`; shipped digests.
* :mod:`.structure`: the compiled tree (parent array -> flat arrays the kernels walk).
* :mod:`.kernels`: Numba kernels: likelihood, exact pixel conditionals (efficient and naive
  reference) turned into integer frequency tables.
* :mod:`.coding`: patching and batched arithmetic coding through :mod:`neurocodec.entropy`.
* :mod:`.codec`: the ``pc`` codec (``.ncx`` bitstream).
* :mod:`.legacy`: the old ``.ncpc`` model format (read, to convert) and the v1 bitstream's model hash.

Training: :mod:`.train` (``fit_model``), :mod:`.train_em` (EM), :mod:`.train_structure` (Chow-Liu
structure learning), :mod:`.train_default` (the shipped models). Also :mod:`.cli` (``neurocodec pc``)
and :mod:`.torch_eval` (likelihoods with PyTorch, CUDA when present).
"""
