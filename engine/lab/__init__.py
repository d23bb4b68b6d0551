"""The pure functions the dashboard calls: views of one image, comparison, run-log readers."""
