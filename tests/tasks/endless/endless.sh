#!/bin/sh
while true; do
  echo "all work and no play"
done
