"""Profiling: MACs/params (``macs``, ``report``: torch, host side) and the on-device
benchmark harness (``bench``, ``sysinfo``, ``memory``, ``bench_report``,
``bench_plot``: torch-free).

This package file imports nothing: ``python -m edgeconv.profiling.memory`` (the
memory-measurement child) and ``edgeconv bench`` must stay torch-free and light.
"""
