"""The checks of ``benchmarks/gpu_check.py``, one family of kernels per module.

- :mod:`.common`: sizes, timing, error measures, poisoned buffers, the kernel
  record, PyTorch, table cells;
- :mod:`.layers`: every layer kernel at every layer's input shape (``kernels``);
- :mod:`.offset`: offset pooling and interleaving (``offset``);
- :mod:`.sgd`: the momentum SGD update (``sgd``);
- :mod:`.forward`: the whole forward pass (``forward``), and our layers as PyTorch
  functions, which :mod:`.dense` reuses;
- :mod:`.dense`: dense multi-scale evaluation (``dense``);
- :mod:`.train_step`: one training step of ``mini`` (``train``);
- :mod:`.merge`: the greedy merge of boxes (``merge``);
- :mod:`.nms`: non-maximum suppression (``nms``);
- :mod:`.estimate`: the run-time estimate printed first.

Each check module has ``run(args, rng, torch, results, save)``, which prints its
progress and adds its records to ``results``, and ``table(results)``, its lines of the
final tables (if it has any); those whose records can fail on their own also have
``failures(results)``, one line per failed record.

They import ``bench_merge`` and one another as the driver puts them on ``sys.path``:
run them through ``benchmarks/gpu_check.py``.
"""
