#!/bin/sh
ls /usr/bin >/dev/null 2>&1 && echo usr-visible || echo usr-hidden
