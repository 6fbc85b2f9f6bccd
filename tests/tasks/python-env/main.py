import sys

print("python", sys.version_info[0], sys.stdin.read().strip())
