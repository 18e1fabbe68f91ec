"""Stand-ins for the outside world, shipped for `qrtracker up --simulate`, tests and benchmarks:
the QuickRouter simulator and a recording webhook receiver."""
