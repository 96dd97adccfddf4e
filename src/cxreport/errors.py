"""Errors users see: each names the file (or input) at fault and what to do about it."""


class CXReportError(Exception):
    """Base class; the CLI prints these as one line and exits with status 2."""


class InputError(CXReportError):
    """Bad user input: wrong columns, missing files, empty reports, bad arguments."""


class ImageError(InputError):
    """An image that cannot be read safely (corrupt, truncated, too large, too small)."""

    def __init__(self, path, problem: str, fix: str = ""):
        self.path = str(path)
        self.problem = problem
        msg = f"{self.path}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


class MissingDependencyError(CXReportError, ImportError):
    pass


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional dependency lazily, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        what = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"'{module}' is needed{what}: install it with  pip install 'cxreport[{extra}]'"
        ) from exc
