"""The operations, written out in NumPy: each forward pass, its backward pass, and the
checks of its arguments.

- :mod:`.conv`, :mod:`.pool`, :mod:`.offset_pool`, :mod:`.activations`,
  :mod:`.linear`, :mod:`.losses`, :mod:`.optim`: the layers' arithmetic;
- :mod:`.boxes`, :mod:`.merge`, :mod:`.nms`: box geometry, the paper's greedy merge
  and non-maximum suppression;
- :mod:`.image`: resizing, flips, blur and scene normalisation;
- :mod:`.gradcheck`: numerical gradients that the backward passes are tested against;
- :mod:`.parallel`: the pool of worker threads that the fast paths share their tiles
  among.

Each has a CUDA twin of the same name in :mod:`overfeat_scratch.cuda`; the backends in
:mod:`overfeat_scratch.nn` choose between them. Nothing here imports a layer above.
"""
