"""``voxgate bench``: what the gateway adds, measured against the same load sent direct.

Modules: ``wsraw`` (a lean WebSocket client for the load generator), ``load`` (N
streams at real-time pace, round trips and set-up times), ``relay`` (the minimal
Python relay, the floor), ``procs`` (the processes measured, pinned, read from
/proc), ``stats`` (figures and targets, pure), ``runner`` (the run and its report).
"""
