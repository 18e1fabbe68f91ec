"""quickrouter-tracker: QuickRouter video tasks in, signed webhooks out."""

__version__ = "0.1.0"
