"""``voxgate sandbox``: an AssemblyAI Universal Streaming (v3) compatible upstream simulator.

It stands in for AssemblyAI in tests, demos and for anyone without a paid account:
``behaviours`` says how each key fails (pure), ``engine`` turns audio into scripted
turns (pure), ``session`` runs one upstream session, ``server`` answers the upgrade,
``/v3/token`` and the inspection routes, ``cli`` reads the command line.
"""
