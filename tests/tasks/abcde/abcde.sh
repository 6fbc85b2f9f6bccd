#!/bin/sh
printf abcde
