#!/bin/sh
while read name; do
  echo "Hello $name!"
done
