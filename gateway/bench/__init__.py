"""Benchmarks behind ``stopgate bench ...``: library code, one module per benchmark."""
