# Routing: pure functions over E.164 numbers and recipient patterns (no I/O).
"""Number normalisation and destination routing."""
