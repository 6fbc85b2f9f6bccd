#!/bin/sh
# fill the disk, then carry on
cat /dev/zero > /tmp/flood
ls -l /tmp/flood >&2
