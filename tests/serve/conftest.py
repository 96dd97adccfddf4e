# The inference tests' fixtures; the trained checkpoint is built once on disk and reused.
from tests.inference.conftest import pipeline, tiny_run, xrays  # noqa: F401
