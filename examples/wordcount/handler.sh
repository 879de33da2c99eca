#!/bin/sh
# An OpenFaaS classic-watchdog style function: the event on stdin, the
# answer on stdout.
wc -w | tr -d ' '
