import os

import pytest
from hypothesis import HealthCheck, settings

from student import TASKS, load_student, package_functions, student_path

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


def pytest_addoption(parser):
    parser.addoption(
        "--student",
        metavar="PATH",
        default=None,
        help="check the student track's functions in this module (see student/)",
    )


def pytest_configure(config):
    for marker in TASKS:
        config.addinivalue_line("markers", f"{marker}: the student track's task {marker[8:]}")


@pytest.fixture(scope="session")
def impl(request):
    """The functions the student tests check: the student's module, or the package's."""
    path = student_path(request.config)
    return package_functions() if path is None else load_student(path)
