"""cxreport: radiology reports from chest X-rays."""

__version__ = "0.1.0"
