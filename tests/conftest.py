import os

from hypothesis import HealthCheck, settings

# CI: reproducible examples, no per-example deadline (the machine is shared and
# the first call of a Numba function compiles), bounded example counts.
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
