"""voxgate: an AssemblyAI Universal Streaming (v3) compatible gateway."""

__version__ = "0.1.0"
