"""The fast path's masking keys, read from the OS in blocks: fresh in a forked child
(the test forks a process)."""

from __future__ import annotations

import os

from voxgate.ws.frames import mask_key


def test_mask_keys_are_fresh_across_blocks_and_after_a_fork() -> None:
    """Keys come from the OS in blocks of 1024: across several blocks they are 4 bytes
    and almost all distinct; a forked child does not repeat its parent's."""
    keys = [mask_key() for _ in range(3000)]
    assert {len(k) for k in keys} == {4}
    assert len(set(keys)) > 2990  # a repeat among 3000 random 32-bit keys is rare
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next key, to the parent
        os.write(write, mask_key())
        os._exit(0)
    os.waitpid(pid, 0)
    child_key = os.read(read, 4)
    os.close(read)
    os.close(write)
    assert child_key != mask_key()
