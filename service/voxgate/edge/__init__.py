"""The gateway's front door: what a stranger's connection may cost before any work."""
