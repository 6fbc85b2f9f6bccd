"""The computation client (``twistd worker``): request, run a slice in the sandbox, check in."""
