"""``voxgate sandbox``: an AssemblyAI Universal Streaming (v3) compatible upstream simulator.

It stands in for AssemblyAI in tests, demos and for anyone without a paid account:
``behaviours`` says how each key fails (pure), ``engine`` turns audio into scripted
turns (pure), ``server`` speaks the protocol on a socket, ``cli`` reads the command line.
"""
