"""Lossless image compression with probabilistic circuits (Liu, Mandt, Van den Broeck, ICLR 2022).

* :mod:`.structure`: Hidden Chow-Liu Tree structure learning (mutual information, spanning tree,
  balanced rooting) compiled to flat index arrays.
* :mod:`.kernels`: Numba kernels: likelihood, EM flows, exact pixel conditionals (efficient and
  naive reference) turned into integer frequency tables.
* :mod:`.circuit`: the :class:`~.circuit.HCLT` model (parameters + structure), save/load, hashing.
* :mod:`.em`: mini-batch EM training.
* :mod:`.coding`: patching and batched arithmetic coding through :mod:`neurocodec.entropy`.
* :mod:`.codec`: the ``pc`` codec (``.ncx`` container).
"""
