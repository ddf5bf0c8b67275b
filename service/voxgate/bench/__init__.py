"""``voxgate bench``: what the gateway adds, measured against the same load sent direct.

Modules: ``wsraw`` (a lean WebSocket client for the load generator), ``load`` (N
streams at real-time pace, round trips and set-up times), ``relay`` (the minimal
Python relay, the floor), ``variant`` (the gateway under another uvicorn set-up),
``stub`` (a lean echo upstream for the scale-out run), ``procs`` (the processes
measured, pinned, read from /proc), ``stats`` (figures and targets, pure),
``report`` (the text), ``runner`` (one run, its phases and its JSON).
"""
